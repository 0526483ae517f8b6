"""The module reader on both kinds of TF1 Hub module: ours (resource variables) and Google's
(TF 1.x reference variables, `VariableV2` read through `<name>/read`)."""

from __future__ import annotations

import os

import pytest
from google_hub_module import INFERENCE_ONLY
from tiny import TINY_VOCAB

from bert_layer.contract import INFERENCE_TAGS, TOKENS_SIGNATURE, TRAIN_TAGS
from bert_layer.export.checkpoint import load_checkpoint
from bert_layer.layers.hub_module import HubModule

TRAIN_ONLY = ((TRAIN_TAGS, True),)


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint_dir):
    return load_checkpoint(tiny_checkpoint_dir)




def _graph_ops(module: HubModule, tags) -> dict[str, str]:
    return {n.name: n.op for n in module.meta_graph(tags).graph_def.node}


@pytest.mark.parametrize("tags", [INFERENCE_TAGS, TRAIN_TAGS], ids=["inference", "train"])
def test_google_module_variables_are_ref_variables_read_through_read(google_module_dir, tags):
    ops = _graph_ops(HubModule(google_module_dir), tags)
    assert "VarHandleOp" not in ops.values()
    assert ops["bert/encoder/layer_2/output/dense/kernel"] == "VariableV2"
    assert ops["bert/encoder/layer_2/output/dense/kernel/read"] == "Identity"


@pytest.mark.parametrize("tags", [INFERENCE_TAGS, TRAIN_TAGS], ids=["inference", "train"])
def test_ref_variables_are_fed_through_their_read_tensor(google_module_dir, checkpoint, tags):
    nodes = HubModule(google_module_dir).variable_nodes(tags)
    assert nodes == {name: f"{name}/read:0" for name in checkpoint.weights}


def test_resource_variables_are_fed_through_their_handle(tiny_module_dir, checkpoint):
    nodes = HubModule(tiny_module_dir).variable_nodes(INFERENCE_TAGS)
    bert_nodes = {k: v for k, v in nodes.items() if k.startswith("bert/")}
    assert bert_nodes == {name: f"{name}:0" for name in checkpoint.weights}


def test_variable_shapes_and_values_are_the_checkpoints(google_module_dir, checkpoint):
    module = HubModule(google_module_dir)
    assert module.variable_shapes() == {k: v.shape for k, v in checkpoint.weights.items()}
    values = module.variable_values()
    assert sorted(values) == sorted(checkpoint.weights)
    for name, value in checkpoint.weights.items():
        assert (values[name] == value).all(), name


def test_tokens_graph_holds_the_variables_and_no_saver(google_module_dir, checkpoint):
    graph_def, inputs, outputs = HubModule(google_module_dir).signature_graph(
        INFERENCE_TAGS, TOKENS_SIGNATURE)
    names = {n.name for n in graph_def.node}
    assert set(checkpoint.weights) <= names
    assert not any(n.startswith("save/") for n in names)
    assert inputs == {k: f"{k}:0" for k in ("input_ids", "input_mask", "segment_ids")}
    assert sorted(outputs) == ["pooled_output", "sequence_output"]


@pytest.mark.parametrize("do_lower_case", [True, False])
def test_tokenization_info_resolves_the_vocab_inside_the_module(make_google_module,
                                                                do_lower_case):
    module_dir = make_google_module(do_lower_case=do_lower_case)
    info = HubModule(module_dir).tokenization_info()
    assert info.vocab_file == os.path.join(module_dir, "assets", "vocab.txt")
    with open(info.vocab_file, encoding="utf-8") as f:
        assert f.read().split("\n")[:-1] == TINY_VOCAB
    assert info.do_lower_case is do_lower_case


def test_module_with_only_the_inference_graph_serves_training_with_it(make_google_module):
    module = HubModule(make_google_module(tag_sets=INFERENCE_ONLY))
    assert list(module.meta_graphs) == [INFERENCE_TAGS]
    assert module.meta_graph(TRAIN_TAGS) is module.meta_graph(INFERENCE_TAGS)


def test_module_without_the_inference_graph_is_named(make_google_module):
    module_dir = make_google_module(tag_sets=TRAIN_ONLY)
    module = HubModule(module_dir)
    assert module.meta_graph(TRAIN_TAGS) is module.meta_graphs[TRAIN_TAGS]
    with pytest.raises(ValueError, match=r"has no meta graph tagged \{\} \(available: "
                                         r"\[\{'train'\}\]\)"):
        module.meta_graph(INFERENCE_TAGS)
