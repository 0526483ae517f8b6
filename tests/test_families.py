"""ELECTRA and ALBERT through convert, export and BertLayer, against transformers.

Tiny random models (tests/tiny_families.py) in Hugging Face's layout (save_pretrained) and in
Google's (their variable names, the generator and heads beside them, Google's config files or
none); Google's TF1 Hub modules of both families written as tests/google_hub_module.py
writes BERT's. The reference is transformers' ElectraModel / AlbertModel on the same ids.
"""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest
import tensorflow as tf
from tiny import TINY_VOCAB
from tiny_families import (
    ELECTRA_CONFIG,
    albert_config,
    google_weights,
    hf_model,
    save_hf_folder,
    train_sp_model,
    write_google_checkpoint,
)

from bert_layer.export.checkpoint import load_checkpoint
from bert_layer.export.convert import convert_folder
from bert_layer.export.writer import export_checkpoint

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

IDS = np.array([[2, 16, 19, 23, 37, 5, 3, 41, 3], [2, 26, 20, 24, 38, 3, 0, 0, 0]], np.int32)
MASK = (np.arange(9)[None] < np.array([[9], [6]])).astype(np.int32)
SEGMENTS = np.array([[0] * 7 + [1] * 2, [0] * 9], np.int32)


def transformers_outputs(model, ids=IDS, mask=MASK, segments=SEGMENTS) -> dict:
    with torch.no_grad():
        out = model(input_ids=torch.tensor(ids, dtype=torch.long),
                    attention_mask=torch.tensor(mask, dtype=torch.long),
                    token_type_ids=torch.tensor(segments, dtype=torch.long))
    pooled = getattr(out, "pooler_output", None)
    return {"sequence_output": out.last_hidden_state.numpy() * mask[..., None],
            "pooled_output": (out.last_hidden_state[:, 0] if pooled is None else pooled).numpy()}


def module_outputs(module_dir: str, ids=IDS, mask=MASK, segments=SEGMENTS, **kwargs) -> dict:
    """BertLayer on ids: the module's pooled_output ("cls") and its masked sequence_output."""
    from bert_layer.layers.layer import BertLayer
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ELECTRA has no pooler: "cls" warns.
        layer = BertLayer(module_dir, do_preprocessing=False, pooling="cls", as_dict=True,
                          n_fine_tune_layers=0, **kwargs)
    out = layer((ids, mask, segments))
    return {k: np.asarray(out[k]) for k in ("pooled_output", "sequence_output")}


def assert_outputs_match(module_dir: str, model, atol: float = 1e-5) -> None:
    got, expected = module_outputs(module_dir), transformers_outputs(model)
    for key in ("sequence_output", "pooled_output"):
        np.testing.assert_allclose(got[key], expected[key], atol=atol, rtol=0, err_msg=key)


@pytest.fixture(scope="session")
def sp_model_file(tmp_path_factory) -> str:
    return train_sp_model(str(tmp_path_factory.mktemp("sentencepiece")))


@pytest.fixture(scope="session")
def electra(tmp_path_factory):
    model = hf_model("electra", ELECTRA_CONFIG, seed=3)
    folder = save_hf_folder(str(tmp_path_factory.mktemp("electra") / "hf"), model,
                            vocab=TINY_VOCAB)
    return model, folder


@pytest.fixture(scope="session")
def albert(tmp_path_factory, sp_model_file):
    import sentencepiece as spm
    size = spm.SentencePieceProcessor(model_file=sp_model_file).GetPieceSize()
    config = albert_config(size)
    model = hf_model("albert", config, seed=4)
    folder = save_hf_folder(str(tmp_path_factory.mktemp("albert") / "hf"), model,
                            sp_model_file=sp_model_file)
    return model, folder, config


def _export(checkpoint_dir: str, tmp_path_factory, name: str, **kwargs):
    out = str(tmp_path_factory.mktemp(name) / "module")
    return export_checkpoint(checkpoint_dir, out, max_seq_length=32, **kwargs)


@pytest.fixture(scope="session")
def electra_module(electra, tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("electra_google") / "checkpoint")
    convert_folder(electra[1], out)
    return _export(out, tmp_path_factory, "electra_module").module_dir


@pytest.fixture(scope="session")
def albert_module(albert, tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("albert_google") / "checkpoint")
    convert_folder(albert[1], out)
    return _export(out, tmp_path_factory, "albert_module").module_dir


# === ELECTRA ===

@pytest.mark.large
def test_electra_folder_converts_and_exports_to_transformers_outputs(electra, electra_module):
    assert_outputs_match(electra_module, electra[0])
    with open(os.path.join(electra_module, "assets", "bert_config.json")) as f:
        module_config = json.load(f)
    assert module_config["model_type"] == "electra" and module_config["has_pooler"] is False
    assert module_config["embedding_size"] == 24 != module_config["hidden_size"]


@pytest.mark.large
def test_google_electra_checkpoint_without_config_infers_sizes(electra, tmp_path_factory):
    model = electra[0]
    weights = google_weights("electra", model, ELECTRA_CONFIG)
    assert "electra/embeddings_project/kernel" in weights
    rng = np.random.default_rng(0)
    extra = {"generator/encoder/layer_0/output/dense/kernel": rng.normal(size=(4, 4)),
             "generator_predictions/output_bias": rng.normal(size=(99,)),
             "discriminator_predictions/dense/kernel": rng.normal(size=(64, 64)),
             "global_step": np.array(100, np.int64)}
    folder = write_google_checkpoint(
        str(tmp_path_factory.mktemp("electra_release") / "electra_tiny"), weights,
        extra={k: np.asarray(v, v.dtype if v.dtype == np.int64 else np.float32)
               for k, v in extra.items()})
    with open(os.path.join(folder, "vocab.txt"), "w", encoding="utf-8") as f:
        f.writelines(token + "\n" for token in TINY_VOCAB)
    result = _export(folder, tmp_path_factory, "electra_release_module")
    assert result.family == "electra" and not result.has_pooler
    (note,) = result.notes
    assert "num_attention_heads=1 as hidden_size/64" in note and "embedding_size=24" in note
    assert result.left_out == (
        "Left out 4 variables that are not BERT's encoder: discriminator_predictions/* (1); "
        "generator/* (1); generator_predictions/* (1); global_step (1).")
    assert_outputs_match(result.module_dir, model)


def test_google_electra_config_beside_the_checkpoint_is_read(electra, tmp_path_factory):
    """With bert_config.json's keys plus embedding_size, nothing is inferred (4 heads here,
    which hidden_size / 64 would not give)."""
    import dataclasses
    config = dataclasses.replace(ELECTRA_CONFIG, num_attention_heads=4)
    model = hf_model("electra", config, seed=5)
    folder = write_google_checkpoint(
        str(tmp_path_factory.mktemp("electra_config") / "ckpt"),
        google_weights("electra", model, config), extra={})
    config.to_json_file(os.path.join(folder, "bert_config.json"))
    with open(os.path.join(folder, "vocab.txt"), "w", encoding="utf-8") as f:
        f.writelines(token + "\n" for token in TINY_VOCAB)
    checkpoint = load_checkpoint(folder)
    assert checkpoint.config == config and checkpoint.notes == ()


# === ALBERT ===

@pytest.mark.large
def test_albert_folder_converts_and_exports_to_transformers_outputs(albert, albert_module):
    assert_outputs_match(albert_module, albert[0])
    from bert_layer.layers.hub_module import HubModule
    info = HubModule(albert_module).tokenization_info()
    assert info.sentencepiece and info.vocab_file.endswith("spiece.model")
    assert info.do_lower_case is True and info.keep_accents is False
    shapes = HubModule(albert_module).variable_shapes()
    shared = [n for n in shapes if "/transformer/group_0/inner_group_0/" in n]
    assert len(shared) == 16 and not any("layer_" in n for n in shapes)  # One layer, once.


@pytest.mark.large
def test_google_albert_checkpoint_reads_albert_config_and_30k_clean(albert, tmp_path_factory,
                                                                   sp_model_file):
    """Google's folder: albert_config.json ("gelu" is Google's tanh approximation there),
    30k-clean.model, model.ckpt-best, the MLM and sentence-order heads left out."""
    model, _, config = albert
    folder = str(tmp_path_factory.mktemp("albert_release") / "albert_tiny")
    rng = np.random.default_rng(1)
    write_google_checkpoint(
        folder, google_weights("albert", model, config), prefix="model.ckpt-best",
        extra={"cls/predictions/output_bias": rng.normal(size=(7,)).astype(np.float32),
               "cls/seq_relationship/output_weights": rng.normal(size=(2, 32)).astype(
                   np.float32)},
        files={"30k-clean.model": sp_model_file})
    values = {**config.to_dict(), "hidden_act": "gelu", "num_hidden_groups": 1,
              "inner_group_num": 1, "net_structure_type": 0, "gap_size": 0,
              "num_memory_blocks": 0, "down_scale_factor": 1}
    with open(os.path.join(folder, "albert_config.json"), "w") as f:
        json.dump(values, f)
    result = _export(folder, tmp_path_factory, "albert_release_module")
    assert result.family == "albert" and result.has_pooler
    assert any("gelu_new" in note for note in result.notes)
    assert "cls/predictions/* (1)" in result.left_out
    assert_outputs_match(result.module_dir, model)


def test_albert_refuses_other_layer_layouts(albert, tmp_path):
    import shutil
    folder = str(tmp_path / "hf")
    shutil.copytree(albert[1], folder)
    path = os.path.join(folder, "config.json")
    with open(path) as f:
        values = json.load(f)
    with open(path, "w") as f:
        json.dump({**values, "num_hidden_groups": 2}, f)
    with pytest.raises(ValueError, match="`num_hidden_groups` must be 1"):
        convert_folder(folder, str(tmp_path / "out"))


@pytest.mark.large
def test_core_tokenizer_refuses_albert_in_one_line(albert_module, albert, tmp_path):
    out = str(tmp_path / "checkpoint")
    convert_folder(albert[1], out)
    with pytest.raises(ValueError, match="core tokenizer has no SentencePiece") as error:
        export_checkpoint(out, str(tmp_path / "module"), tokenizer="core")
    assert "\n" not in str(error.value) and not os.path.exists(tmp_path / "module")


# === Google's TF1 Hub modules ===

def _write_google_family_module(directory: str, model_type: str, config, weights,
                                vocab_file: str, vocab_output: str, pooler: bool) -> str:
    from google_hub_module import write_google_module

    from bert_layer.export import families
    return write_google_module(directory, config, weights, vocab_file, pooler=pooler,
                               architecture=families.family(model_type).architecture,
                               vocab_output=vocab_output)


def test_google_electra_hub_module_loads_into_bert_layer(electra, tmp_path):
    from google_hub_module import copy_vocab
    weights = google_weights("electra", electra[0], ELECTRA_CONFIG)
    vocab = str(tmp_path / "vocab.txt")
    with open(vocab, "w", encoding="utf-8") as f:
        f.writelines(token + "\n" for token in TINY_VOCAB)
    module = _write_google_family_module(str(tmp_path / "module"), "electra", ELECTRA_CONFIG,
                                         weights, copy_vocab(vocab, str(tmp_path / "machine")),
                                         "vocab_file", pooler=False)
    assert_outputs_match(module, electra[0])


def test_google_albert_hub_module_loads_into_bert_layer(albert, tmp_path, sp_model_file):
    model, _, config = albert
    module = _write_google_family_module(str(tmp_path / "module"), "albert", config,
                                         google_weights("albert", model, config),
                                         sp_model_file, "sp_model_file", pooler=True)
    assert_outputs_match(module, model)
    from bert_layer.layers.layer import BertLayer
    layer = BertLayer(module, max_seq_length=32)
    assert layer.preprocessor.tokenizer.vocab_file.endswith(".model")


# === Every path on the ALBERT module: text, training, freeze, serving, embed, bf16, inspect ===

TEXTS = ["the movie was great .", "a bad film ||| the plot was fun", "",
         "``Quoted'' Café, in 1990, 12,000 people", " ".join(["good"] * 50),
         "\u03a3\u0391\u03a3 \u4e2d ||| "]
CLASSES = ("neg", "pos", "meh")


@pytest.fixture(scope="module")
def albert_classifier(albert_module):
    """A classifier on the ALBERT module (the shared layer trained) and its probabilities."""
    from bert_layer.training.classifier import ClassifierSpec, build_classifier
    spec = ClassifierSpec(module=albert_module, class_names=CLASSES, fine_tune_layers=1,
                          max_seq_length=32)
    model = build_classifier(spec)
    dense = model.get_layer("probabilities")  # Larger weights: texts' probabilities differ.
    dense.kernel.assign(np.random.default_rng(0).normal(size=dense.kernel.shape)
                        .astype(np.float32))
    return model, model(tf.constant(TEXTS), training=False).numpy()


@pytest.mark.large
def test_albert_text_is_tokenized_as_the_slow_albert_tokenizer(albert_module, sp_model_file):
    from reference_albert import SlowAlbertTokenizer

    from bert_layer.layers.layer import BertLayer
    slow = SlowAlbertTokenizer(sp_model_file)
    layer = BertLayer(albert_module, max_seq_length=32, n_fine_tune_layers=0, as_dict=True)
    features = layer.preprocess(TEXTS[:4])
    cls, sep = layer.preprocessor.tokenizer.cls_id, layer.preprocessor.tokenizer.sep_id
    for row, mask, text in zip(features["input_ids"].numpy(), features["input_mask"].numpy(),
                               TEXTS[:4]):
        parts = [slow.encode(p) for p in text.split(" ||| ")]
        expected = [cls, *parts[0], sep] + ([*parts[1], sep] if len(parts) > 1 else [])
        assert list(row[mask == 1]) == expected
    from_text = layer(tf.constant(TEXTS[:4]))
    from_ids = layer.encode(features)
    np.testing.assert_allclose(from_text["sequence_output"], from_ids["sequence_output"],
                               atol=1e-6)
    # The module's own `text` signature tokenizes the same (SentencePiece in its graph).
    import tensorflow_text  # noqa: F401  (the SentencePiece op)
    text = tf.compat.v1.saved_model.load_v2(albert_module, tags=[]).signatures["text"]
    out = text(text=tf.constant(TEXTS[:4]))
    np.testing.assert_array_equal(out["input_ids"].numpy(), features["input_ids"].numpy())
    np.testing.assert_allclose(out["sequence_output"].numpy() * out["input_mask"].numpy()[
        ..., None], from_ids["sequence_output"], atol=1e-5)


@pytest.mark.large
def test_albert_fine_tuning_trains_the_shared_layer_only(albert_module):
    """n_fine_tune_layers=1 (or any N >= 1) trains ALBERT's one shared layer; embeddings and
    their projection stay, as do all weights with 0."""
    import keras

    from bert_layer.layers.layer import BertLayer
    layer = BertLayer(albert_module, max_seq_length=32, n_fine_tune_layers=2)
    inputs = keras.Input(shape=(), dtype="string")
    model = keras.Model(inputs, keras.layers.Dense(2)(layer(inputs)))
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = {w.path: w.numpy().copy() for w in layer.weights}
    model.fit(np.array(TEXTS[:4], dtype=object), np.array([0, 1, 0, 1]), epochs=2,
              batch_size=4, verbose=0)
    changed = {layer.module_variable_names[w.path] for w in layer.weights
               if not np.array_equal(before[w.path], w.numpy())}
    trainable = {layer.module_variable_names[w.path] for w in layer.trainable_weights}
    assert changed == trainable
    assert {n.split("/")[-2] for n in trainable} >= {"query", "dense", "LayerNorm_1"}
    assert all("/transformer/group_0/" in n or n.startswith("bert/pooler/") for n in trainable)
    frozen = BertLayer(albert_module, max_seq_length=32, n_fine_tune_layers=0)
    frozen.build()
    assert not frozen.trainable_weights


@pytest.mark.large
def test_albert_classifier_freezes_to_its_keras_probabilities(albert_classifier, tmp_path):
    from bert_layer.inference.freeze import freeze_model
    from bert_layer.inference.runtimes import FrozenClassifier
    model, expected = albert_classifier
    path = str(tmp_path / "albert.pb")
    freeze_model(model, path, class_names=list(CLASSES))
    np.testing.assert_allclose(FrozenClassifier(path)(TEXTS), expected, atol=1e-5, rtol=0)
    assert np.ptp(expected, axis=0).max() > 0.1


@pytest.mark.large
def test_albert_classifier_serves_as_a_saved_model(albert_classifier, tmp_path):
    from bert_layer.inference.runtimes import SavedModelClassifier
    from bert_layer.inference.serving import write_serving_model
    model, expected = albert_classifier
    out = str(tmp_path / "served")
    write_serving_model(model, out, class_names=list(CLASSES))
    np.testing.assert_allclose(SavedModelClassifier(out)(TEXTS), expected, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="core tokenizer has no SentencePiece"):
        write_serving_model(model, str(tmp_path / "core"), class_names=list(CLASSES),
                            tokenizer="core")
    assert not os.path.exists(tmp_path / "core")


@pytest.mark.large
def test_albert_embeddings_and_bf16(albert_module, albert, sp_model_file):
    """embed's mean pooling equals transformers' masked mean; bf16 stays close to it."""
    from reference_albert import SlowAlbertTokenizer

    from bert_layer.inference.embed import embed_texts, make_embedder
    texts = TEXTS[:4]
    slow = SlowAlbertTokenizer(sp_model_file)
    embeddings = embed_texts(make_embedder(albert_module, pooling="mean", max_seq_length=32),
                             texts, batch_size=2)
    for text, got in zip(texts, embeddings):
        parts = [slow.encode(p) for p in text.split(" ||| ")]
        ids = [2, *parts[0], 3] + ([*parts[1], 3] if len(parts) > 1 else [])
        segments = [0] * (len(parts[0]) + 2) + [1] * (len(ids) - len(parts[0]) - 2)
        out = transformers_outputs(albert[0], np.array([ids]), np.ones((1, len(ids)), np.int32),
                                   np.array([segments]))
        np.testing.assert_allclose(got, out["sequence_output"][0].mean(0), atol=1e-5)
    from bert_layer.layers.layer import BertLayer
    bf16 = BertLayer(albert_module, max_seq_length=32, pooling="mean", n_fine_tune_layers=0,
                     dtype="mixed_bfloat16")
    got = np.asarray(bf16(tf.constant(texts)))
    np.testing.assert_allclose(got, embeddings, atol=0.1 * np.abs(embeddings).max())


@pytest.mark.large
def test_inspect_says_albert_modules_need_tensorflow_text(albert_module):
    from bert_layer.inference.inspect import inspect_path
    inspection = inspect_path(albert_module)
    ops = {op for op, package in inspection.non_core_ops.items() if package == "tensorflow-text"}
    assert any(op.startswith("Sentencepiece") for op in ops), inspection.non_core_ops


@pytest.mark.large
def test_electra_module_tokenizes_with_both_wordpiece_tokenizers(electra_module, tmp_path,
                                                                 electra):
    """ELECTRA's vocabulary is BERT's WordPiece: the core tokenizer works too."""
    from bert_layer.layers.layer import BertLayer
    graph = BertLayer(electra_module, max_seq_length=32, pooling="first", n_fine_tune_layers=0)
    core = BertLayer(electra_module, max_seq_length=32, pooling="first", n_fine_tune_layers=0,
                     tokenizer="core")
    np.testing.assert_allclose(np.asarray(graph(tf.constant(TEXTS))),
                               np.asarray(core(tf.constant(TEXTS))), atol=1e-6)
    out = str(tmp_path / "core_module")
    checkpoint = str(tmp_path / "checkpoint")
    convert_folder(electra[1], checkpoint)
    assert export_checkpoint(checkpoint, out, max_seq_length=32, tokenizer="core").family == (
        "electra")


# === The command line ===

@pytest.mark.large
def test_cli_converts_exports_and_inspects_albert(albert, tmp_path):
    from harness import assert_one_line_error, run_cli, tree_hashes
    checkpoint, module = str(tmp_path / "checkpoint"), str(tmp_path / "module")
    hashes = tree_hashes(albert[1])
    code, out, err = run_cli(["convert", albert[1], "--out", checkpoint])
    assert code == 0, err
    assert "albert; vocabulary from spiece.model; casing lower-case" in out
    code, out, err = run_cli(["export", "--checkpoint", checkpoint, "--out", module,
                              "--max-seq-length", "32", "--tokenizer", "core"])
    assert code == 2 and not os.path.exists(module)
    assert_one_line_error(err, "export", "core tokenizer has no SentencePiece")
    code, out, err = run_cli(["export", "--checkpoint", checkpoint, "--out", module,
                              "--max-seq-length", "32"])
    assert code == 0, err
    assert "Model family: albert." in out
    code, out, err = run_cli(["inspect", module])
    assert code == 0 and "SentencepieceOp (tensorflow-text)" in out
    assert "out sp_model_file" in out
    assert tree_hashes(albert[1]) == hashes


@pytest.mark.large
@pytest.mark.parametrize("family", ["electra", "albert"])
def test_cli_trains_freezes_predicts_and_embeds(family, request, tmp_path):
    """A user's path through the command line for each family: train a classifier on the
    module, freeze it to a graph and to a serving SavedModel (ELECTRA's with the core
    tokenizer: WordPiece; ALBERT's SentencePiece needs tensorflow-text), predict with all
    three (the same probabilities), and embed (BertLayer's mean pooling on the module). The
    module, read by every step, stays as it was."""
    from harness import run_cli, tree_hashes
    from test_train import sentiment_rows, write_tsv

    from bert_layer.layers.layer import BertLayer
    module = request.getfixturevalue(f"{family}_module")
    module_hashes = tree_hashes(module)
    train = write_tsv(tmp_path / "train.tsv", sentiment_rows(16, seed=1))
    run_dir = str(tmp_path / "run")
    code, _, err = run_cli(["train", "--module", module, "--train", train, "--out", run_dir,
                            "--epochs", "1", "--batch-size", "8", "--max-seq-length", "16",
                            "--fine-tune-layers", "1", "--quiet"])
    assert code == 0, err
    keras_file = os.path.join(run_dir, "model.keras")
    frozen, serving = str(tmp_path / "frozen.pb"), str(tmp_path / "serving")
    core = ["--tokenizer", "core"] if family == "electra" else []
    for out, extra in ((frozen, []), (serving, ["--format", "saved_model", *core])):
        code, _, err = run_cli(["freeze", "--model", keras_file, "--out", out, "--quiet",
                                *extra])
        assert code == 0, err
    texts = tmp_path / "texts.txt"
    texts.write_text("".join(t + "\n" for t in TEXTS), encoding="utf-8")
    predicted = {}
    for name, model in (("keras", keras_file), ("frozen", frozen), ("serving", serving)):
        output = tmp_path / f"{name}.jsonl"
        code, _, err = run_cli(["predict", "--model", model, "--input", str(texts),
                                "--output", str(output)])
        assert code == 0, err
        records = [json.loads(line) for line in output.read_text("utf-8").splitlines()]
        assert [r["text"] for r in records] == TEXTS
        predicted[name] = np.array([list(r["probabilities"].values()) for r in records])
    assert np.ptp(predicted["keras"][:, 0]) > 1e-4  # The texts get different probabilities.
    for name in ("frozen", "serving"):
        np.testing.assert_allclose(predicted[name], predicted["keras"], atol=1e-5)

    npy = str(tmp_path / "embeddings.npy")
    code, _, err = run_cli(["embed", "--module", module, "--input", str(texts), "--pooling",
                            "mean", "--max-seq-length", "32", "--output", npy])
    assert code == 0, err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        layer = BertLayer(module, max_seq_length=32, pooling="mean", n_fine_tune_layers=0)
    np.testing.assert_allclose(np.load(npy), np.asarray(layer(tf.constant(TEXTS))), atol=1e-5)
    assert tree_hashes(module) == module_hashes
