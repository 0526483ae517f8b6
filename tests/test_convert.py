"""Tests for export/convert.py: Hugging Face safetensors folders to Google checkpoints."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from real_data import read_mrpc_dev, read_sst2_dev
from reference_bert import bert_forward
from safetensors.numpy import load_file, save_file
from tiny import TINY_CONFIG, TINY_VOCAB, random_weights

from bert_layer.export.checkpoint import load_checkpoint
from bert_layer.export.config import BertConfig, ConfigKeyWarning
from bert_layer.export.convert import convert_hf_to_google
from bert_layer.export.names import variable_specs
from bert_layer.outputs import OutputError

INTERMEDIATE_KERNEL = "bert/encoder/layer_2/intermediate/dense/kernel"
INTERMEDIATE_WEIGHT = "encoder.layer.2.intermediate.dense.weight"


def hf_tensors(weights: dict[str, np.ndarray], config: BertConfig,
               prefix: str = "") -> dict[str, np.ndarray]:
    """Google-named weights under Hugging Face names, kernels as [out, in]."""
    tensors = {prefix + spec.hf_name: np.ascontiguousarray(
                   weights[spec.name].T if spec.transpose else weights[spec.name])
               for spec in variable_specs(config)}
    # Real Hugging Face files also carry this buffer; conversion must ignore it.
    tensors[prefix + "embeddings.position_ids"] = np.arange(
        config.max_position_embeddings, dtype=np.int64)[None]
    return tensors


def write_hf_folder(directory: str, tensors: dict[str, np.ndarray],
                    config: BertConfig = TINY_CONFIG, vocab: list[str] = TINY_VOCAB,
                    **config_changes) -> str:
    """A Hugging Face BERT folder: config.json, vocab.txt and model.safetensors."""
    os.makedirs(directory, exist_ok=True)
    hf_config = {**config.to_dict(), "model_type": "bert", "architectures": ["BertModel"],
                 "pad_token_id": 0, "position_embedding_type": "absolute",
                 "transformers_version": "4.8.2", "use_cache": True, **config_changes}
    with open(os.path.join(directory, "config.json"), "w", encoding="utf-8") as f:
        json.dump(hf_config, f)
    with open(os.path.join(directory, "vocab.txt"), "w", encoding="utf-8") as f:
        f.writelines(token + "\n" for token in vocab)
    save_file(tensors, os.path.join(directory, "model.safetensors"))
    return directory


@pytest.fixture
def tiny_weights() -> dict[str, np.ndarray]:
    return random_weights(TINY_CONFIG, seed=7)


@pytest.fixture
def hf_dir(tmp_path, tiny_weights) -> str:
    return write_hf_folder(str(tmp_path / "hf"), hf_tensors(tiny_weights, TINY_CONFIG))


def test_conversion_renames_and_transposes_exactly(hf_dir, tiny_weights, tmp_path):
    out_dir = str(tmp_path / "google")
    assert convert_hf_to_google(hf_dir, out_dir) == out_dir
    checkpoint = load_checkpoint(out_dir)
    assert checkpoint.config == TINY_CONFIG
    assert list(checkpoint.weights) == list(tiny_weights)
    for name, value in tiny_weights.items():
        np.testing.assert_array_equal(checkpoint.weights[name], value, err_msg=name)
    # The non-square kernel shows the transpose: Hugging Face [37, 32], Google [32, 37].
    stored = load_file(os.path.join(hf_dir, "model.safetensors"))[INTERMEDIATE_WEIGHT]
    assert stored.shape == (37, 32)
    np.testing.assert_array_equal(checkpoint.weights[INTERMEDIATE_KERNEL], stored.T)
    with open(checkpoint.vocab_file, encoding="utf-8") as f:
        assert f.read().splitlines() == TINY_VOCAB


def test_conversion_keeps_the_layer_norm_epsilon(tmp_path, tiny_weights):
    hf_dir = write_hf_folder(str(tmp_path / "hf"), hf_tensors(tiny_weights, TINY_CONFIG),
                             layer_norm_eps=1e-7)
    convert_hf_to_google(hf_dir, str(tmp_path / "google"))
    assert load_checkpoint(tmp_path / "google").config.layer_norm_eps == 1e-7


def test_task_model_prefix_and_heads_are_dropped(tmp_path, tiny_weights):
    # BertForSequenceClassification stores the body under "bert." plus a classifier.
    tensors = hf_tensors(tiny_weights, TINY_CONFIG, prefix="bert.")
    tensors["classifier.weight"] = np.zeros((2, 32), np.float32)
    hf_dir = write_hf_folder(str(tmp_path / "hf"), tensors)
    convert_hf_to_google(hf_dir, str(tmp_path / "google"))
    converted = load_checkpoint(tmp_path / "google").weights
    np.testing.assert_array_equal(converted[INTERMEDIATE_KERNEL], tiny_weights[INTERMEDIATE_KERNEL])


@pytest.mark.parametrize("file_name, message", [
    ("config.json", "Hugging Face config not found: .*config.json"),
    ("vocab.txt", r"Vocabulary file not found: .*vocab.txt \(nor tokenizer.json beside it"),
    ("model.safetensors", r"Hugging Face weights not found in .*hf: expected model.safetensors"
                          r", model.safetensors.index.json or pytorch_model.bin \(found "),
])
def test_missing_files_are_named(hf_dir, tmp_path, file_name, message):
    os.remove(os.path.join(hf_dir, file_name))
    with pytest.raises(FileNotFoundError, match=message):
        convert_hf_to_google(hf_dir, str(tmp_path / "google"))
    assert sorted(os.listdir(tmp_path)) == ["hf"]


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="Hugging Face model folder not found: .*absent"):
        convert_hf_to_google(str(tmp_path / "absent"), str(tmp_path / "google"))


def test_shape_mismatch_names_the_tensor_and_both_shapes(tmp_path, tiny_weights):
    tensors = hf_tensors(tiny_weights, TINY_CONFIG)
    tensors[INTERMEDIATE_WEIGHT] = np.zeros((36, 32), np.float32)
    hf_dir = write_hf_folder(str(tmp_path / "hf"), tensors)
    with pytest.raises(ValueError, match=rf"tensor {INTERMEDIATE_WEIGHT} has shape \[32, 36\] "
                                         rf"after conversion but {INTERMEDIATE_KERNEL} needs "
                                         r"\[32, 37\]"):
        convert_hf_to_google(hf_dir, str(tmp_path / "google"))
    assert sorted(os.listdir(tmp_path)) == ["hf"]


def test_missing_tensor_is_named(tmp_path, tiny_weights):
    tensors = hf_tensors(tiny_weights, TINY_CONFIG)
    del tensors["pooler.dense.bias"]
    hf_dir = write_hf_folder(str(tmp_path / "hf"), tensors)
    with pytest.raises(ValueError, match=r"tensor pooler.dense.bias \(for "
                                         r"bert/pooler/dense/bias\) is missing"):
        convert_hf_to_google(hf_dir, str(tmp_path / "google"))


def test_vocab_mismatch_is_named(tmp_path, tiny_weights):
    hf_dir = write_hf_folder(str(tmp_path / "hf"), hf_tensors(tiny_weights, TINY_CONFIG),
                             vocab=TINY_VOCAB[:-2])
    with pytest.raises(ValueError, match=r"vocab.txt has 97 tokens but .*config.json says "
                                         r"vocab_size=99"):
        convert_hf_to_google(hf_dir, str(tmp_path / "google"))
    assert sorted(os.listdir(tmp_path)) == ["hf"]


@pytest.mark.parametrize("changes, message", [
    ({"model_type": "roberta"},
     r"config.json: model_type must be one of \['bert', 'distilbert', 'electra', 'albert', "
     r"'mpnet'\]. "
     r"Received: 'roberta'"),
    ({"position_embedding_type": "relative_key"},
     r"config.json: `position_embedding_type` must be 'absolute' \(.*\). "
     r"Received: 'relative_key'"),
])
def test_unsupported_configs_are_named(tmp_path, tiny_weights, changes, message):
    hf_dir = write_hf_folder(str(tmp_path / "hf"), hf_tensors(tiny_weights, TINY_CONFIG),
                             **changes)
    with pytest.raises(ValueError, match=message):
        convert_hf_to_google(hf_dir, str(tmp_path / "google"))


def test_unknown_config_key_is_a_warning_naming_file_and_key(tmp_path, tiny_weights):
    hf_dir = write_hf_folder(str(tmp_path / "hf"), hf_tensors(tiny_weights, TINY_CONFIG),
                             num_hidden_layer=3)
    with pytest.warns(ConfigKeyWarning, match=r"hf/config.json: unknown key `num_hidden_layer` "
                                              r"ignored"):
        convert_hf_to_google(hf_dir, str(tmp_path / "google"))
    assert load_checkpoint(tmp_path / "google").config == TINY_CONFIG


def test_config_that_is_not_an_object_is_rejected(hf_dir, tmp_path):
    with open(os.path.join(hf_dir, "config.json"), "w", encoding="utf-8") as f:
        f.write("[]")
    with pytest.raises(ValueError, match="config.json: expected a JSON object, found list"):
        convert_hf_to_google(hf_dir, str(tmp_path / "google"))


def test_unreadable_weights_are_reported(hf_dir, tmp_path):
    with open(os.path.join(hf_dir, "model.safetensors"), "wb") as f:
        f.write(b"not safetensors")
    with pytest.raises(ValueError, match="model.safetensors: not a readable safetensors file"):
        convert_hf_to_google(hf_dir, str(tmp_path / "google"))


def test_existing_output_is_kept_without_overwrite(hf_dir, tmp_path):
    out_dir = tmp_path / "google"
    out_dir.mkdir()
    (out_dir / "keep.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(FileExistsError, match="Output path already exists: .*google.*overwrite"):
        convert_hf_to_google(hf_dir, str(out_dir))
    assert os.listdir(out_dir) == ["keep.txt"]
    assert sorted(os.listdir(tmp_path)) == ["google", "hf"]  # No temporary folder left.


def test_overwrite_replaces_the_output_but_not_files_others_put_there(hf_dir, tiny_weights,
                                                                       tmp_path):
    out_dir = tmp_path / "google"
    convert_hf_to_google(hf_dir, str(out_dir))  # A folder bert-layer wrote (it has the marker).
    (out_dir / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(OutputError, match=r"1 entries .* \(notes.txt\)"):
        convert_hf_to_google(hf_dir, str(out_dir), overwrite=True)
    assert (out_dir / "notes.txt").read_text(encoding="utf-8") == "mine"
    os.remove(out_dir / "notes.txt")
    convert_hf_to_google(hf_dir, str(out_dir), overwrite=True)
    np.testing.assert_array_equal(load_checkpoint(out_dir).weights[INTERMEDIATE_KERNEL],
                                  tiny_weights[INTERMEDIATE_KERNEL])
    assert sorted(os.listdir(tmp_path)) == ["google", "hf"]


def pack_batch(token_lists: list[list[str]], tokenizer, max_seq_length: int,
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[CLS] a [SEP] (b [SEP]) as ids, mask and segment ids, padded to the longest row.

    `token_lists` holds one or two token lists per row, already short enough.
    """
    rows = []
    for parts in token_lists:
        tokens, segments = ["[CLS]"], [0]
        for segment, part in enumerate(parts):
            tokens += part + ["[SEP]"]
            segments += [segment] * (len(part) + 1)
        assert len(tokens) <= max_seq_length, "test data: trim before packing"
        rows.append((tokenizer.convert_tokens_to_ids(tokens), segments))
    length = max(len(ids) for ids, _ in rows)
    input_ids = np.zeros((len(rows), length), np.int32)
    input_mask = np.zeros((len(rows), length), np.int32)
    segment_ids = np.zeros((len(rows), length), np.int32)
    for i, (ids, segments) in enumerate(rows):
        input_ids[i, :len(ids)] = ids
        input_mask[i, :len(ids)] = 1
        segment_ids[i, :len(ids)] = segments
    return input_ids, input_mask, segment_ids


def transformers_forward(hf_dir: str, input_ids: np.ndarray, input_mask: np.ndarray,
                         segment_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hugging Face `BertModel` (torch, eval mode, float64 like the reference) on one batch."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    # In float64 the two agree to ~1e-7; in float32 Hugging Face's rounding alone reaches
    # ~1e-4 at padded positions of all-MiniLM-L6-v2, too close to any tolerance worth having.
    model = transformers.BertModel.from_pretrained(hf_dir).double().eval()
    with torch.no_grad():
        outputs = model(input_ids=torch.from_numpy(input_ids.astype(np.int64)),
                        attention_mask=torch.from_numpy(input_mask.astype(np.int64)),
                        token_type_ids=torch.from_numpy(segment_ids.astype(np.int64)))
    return (outputs.last_hidden_state.numpy().astype(np.float32),
            outputs.pooler_output.numpy().astype(np.float32))


def assert_reference_matches_transformers(weights, config, hf_dir, batch, atol):
    sequence, pooled = bert_forward(weights, config, *batch)
    hf_sequence, hf_pooled = transformers_forward(hf_dir, *batch)
    assert sequence.shape == hf_sequence.shape
    np.testing.assert_allclose(sequence, hf_sequence, rtol=0, atol=atol)
    np.testing.assert_allclose(pooled, hf_pooled, rtol=0, atol=atol)


def test_reference_matches_transformers_on_tiny_weights(hf_dir, tiny_weights):
    # 3 rows of different lengths: padding, and segment 1 in the last row.
    rng = np.random.default_rng(0)
    input_ids = rng.integers(5, TINY_CONFIG.vocab_size, size=(3, 7), dtype=np.int32)
    input_mask = np.array([[1] * 7, [1] * 4 + [0] * 3, [1] * 6 + [0]], np.int32)
    segment_ids = np.array([[0] * 7, [0] * 7, [0] * 3 + [1] * 3 + [0]], np.int32)
    batch = (input_ids, input_mask, segment_ids)
    assert_reference_matches_transformers(tiny_weights, TINY_CONFIG, hf_dir, batch, atol=1e-5)


@pytest.fixture(scope="module")
def default_tokenizer(default_model_dir):
    from absl import flags
    from bert import tokenization
    flags.FLAGS.mark_as_parsed()  # FullTokenizer reads an absl flag.
    return tokenization.FullTokenizer(os.path.join(default_model_dir, "vocab.txt"),
                                      do_lower_case=True)


@pytest.mark.integration
def test_default_model_converts_to_every_variable(default_model_dir, tmp_path):
    out_dir = convert_hf_to_google(default_model_dir, str(tmp_path / "google"))
    checkpoint = load_checkpoint(out_dir)
    specs = variable_specs(checkpoint.config)
    # 5 embedding variables + 6 layers * 16 + 2 pooler variables.
    assert len(specs) == len(checkpoint.weights) == 103
    tensors = load_file(os.path.join(default_model_dir, "model.safetensors"))
    for spec in specs:
        expected = tensors[spec.hf_name].T if spec.transpose else tensors[spec.hf_name]
        np.testing.assert_array_equal(checkpoint.weights[spec.name], expected,
                                      err_msg=spec.name)


@pytest.mark.integration
def test_reference_matches_transformers_on_sst2(default_model_dir, default_checkpoint_dir,
                                                default_tokenizer):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    sentences = read_sst2_dev()[:20]
    token_lists = [[default_tokenizer.tokenize(s)[:126]] for s in sentences]
    batch = pack_batch(token_lists, default_tokenizer, max_seq_length=128)
    checkpoint = load_checkpoint(default_checkpoint_dir)
    assert_reference_matches_transformers(checkpoint.weights, checkpoint.config,
                                          default_model_dir, batch, atol=1e-5)


@pytest.mark.integration
def test_reference_matches_transformers_on_mrpc_pairs(default_model_dir, default_checkpoint_dir,
                                                      default_tokenizer):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pairs = read_mrpc_dev()[:8]
    token_lists = [[default_tokenizer.tokenize(a)[:62], default_tokenizer.tokenize(b)[:62]]
                   for a, b, _ in pairs]
    batch = pack_batch(token_lists, default_tokenizer, max_seq_length=128)
    assert batch[2].max() == 1  # The pairs do exercise segment 1.
    checkpoint = load_checkpoint(default_checkpoint_dir)
    assert_reference_matches_transformers(checkpoint.weights, checkpoint.config,
                                          default_model_dir, batch, atol=1e-5)
