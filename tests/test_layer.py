"""BertLayer: weights, graphs, preprocessing, pooling, training, saving, bad input.

The references are independent of bert_layer: the weights come from the Google checkpoint
the module was exported from, the ids from Google's FullTokenizer (reference_packing), the
numbers from the numpy BERT (reference_bert).
"""

from __future__ import annotations

import json
import os
import re
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf
from paths import assert_paths_agree
from reference_bert import bert_forward, mean_pool
from reference_packing import full_tokenizer, reference_features
from tensorflow.core.protobuf import saved_model_pb2
from tiny import TINY_CONFIG

from bert_layer.export.checkpoint import load_checkpoint
from bert_layer.layers.layer import BertLayer

MAX_LEN = 40  # Below the tiny module's 64 positions.
TEXTS = ["the movie was great .", "a bad film ||| the plot was fun", "unwanted running !"]
# Empty, whitespace-only, control and format characters (dropped), accents (stripped),
# CJK (split per character), emoji ([UNK]), an empty pair half, upper case.
ODD_TEXTS = ["", "  \t\n  ", "the\x00 movie\x07 was\u200b great", "Caf\u00e9 \u00c9LITE na\u00efve",
             "\u6211\u4e2d\u6587", "the movie \U0001F600 was fun \U0001F44D\U0001F3FD",
             "the film ||| ", " ||| ", "THE MOVIE , unwanted running !"]
LONG_TEXT = " ".join(["the movie was very good and the plot was great ."] * 4)  # 45 tokens
TRAIN_TEXTS = ["the movie was great .", "a bad film ||| the plot was fun", "boring",
               "i love this film"]
TRAIN_LABELS = np.array([1, 0, 0, 1])
NUM_LAYERS = TINY_CONFIG.num_hidden_layers  # 3
# Google's names of the tiny model's weights, by part.
EMBEDDINGS = {f"bert/embeddings/{n}" for n in (
    "word_embeddings", "token_type_embeddings", "position_embeddings", "LayerNorm/gamma",
    "LayerNorm/beta")}
POOLER = {"bert/pooler/dense/kernel", "bert/pooler/dense/bias"}


def encoder_layer(index: int) -> set[str]:
    """The 16 weights of encoder layer `index`, written out from Google's modeling.py."""
    prefix = f"bert/encoder/layer_{index}/"
    dense = ["attention/self/query", "attention/self/key", "attention/self/value",
             "attention/output/dense", "intermediate/dense", "output/dense"]
    norms = ["attention/output/LayerNorm", "output/LayerNorm"]
    return ({prefix + d + "/kernel" for d in dense} | {prefix + d + "/bias" for d in dense}
            | {prefix + n + "/gamma" for n in norms} | {prefix + n + "/beta" for n in norms})


def last_layers(n: int) -> set[str]:
    return set().union(*(encoder_layer(i) for i in range(NUM_LAYERS - n, NUM_LAYERS)))


ALL_WEIGHTS = EMBEDDINGS | POOLER | last_layers(NUM_LAYERS)


def keras_names(google_names: set[str]) -> set[str]:
    return {n.replace("/", ".") for n in google_names}


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint_dir):
    return load_checkpoint(tiny_checkpoint_dir)


@pytest.fixture(scope="module")
def vocab_file(tiny_module_dir) -> str:
    return os.path.join(tiny_module_dir, "assets", "vocab.txt")


@pytest.fixture(scope="module")
def make_layer(tiny_module_dir):
    """BertLayer(tiny module, max_seq_length=MAX_LEN, **kwargs), built once per kwargs."""
    layers = {}

    def make(**kwargs) -> BertLayer:
        key = tuple(sorted(kwargs.items(), key=str))
        if key not in layers:
            layers[key] = BertLayer(tiny_module_dir, **{"max_seq_length": MAX_LEN, **kwargs})
        return layers[key]

    return make


def _reference(checkpoint, vocab_file, texts, max_seq_length=MAX_LEN):
    """FullTokenizer features and the numpy BERT's (sequence, pooled) outputs for `texts`."""
    features = reference_features(full_tokenizer(vocab_file, True), texts, max_seq_length)
    sequence, pooled = bert_forward(checkpoint.weights, checkpoint.config, **features)
    return features, sequence, pooled


def _masked_max(sequence, mask):
    return np.where(mask[:, :, None] > 0, sequence, -np.inf).max(axis=1)


# === Weights ===


def test_weights_are_the_modules_named_with_dots(make_layer, checkpoint):
    layer = make_layer()
    layer(tf.constant(TEXTS[:1]))
    assert checkpoint.weights.keys() == ALL_WEIGHTS
    assert {w.name for w in layer.weights} == keras_names(ALL_WEIGHTS)
    assert len(layer.weights) == 3 * 16 + 2 + 5
    for weight in layer.weights:
        name = layer.module_variable_names[weight.path]
        assert weight.name == name.replace("/", ".")
        np.testing.assert_array_equal(weight.numpy(), checkpoint.weights[name], err_msg=name)


@pytest.mark.parametrize("kwargs, expected", [
    ({}, last_layers(3) | POOLER),
    ({"pooling": "mean"}, last_layers(3)),
    ({"n_fine_tune_layers": 1}, last_layers(1) | POOLER),
    ({"n_fine_tune_layers": 2, "pooling": "max", "tune_embeddings": True},
     last_layers(2) | EMBEDDINGS),
    ({"n_fine_tune_layers": 0}, set()),
    ({"n_fine_tune_layers": 0, "pooling": None}, set()),
    ({"n_fine_tune_layers": 0, "tune_embeddings": True}, EMBEDDINGS),
    ({"n_fine_tune_layers": -1, "pooling": "mean"}, ALL_WEIGHTS),
], ids=["default", "mean", "last1", "last2_embeddings", "none", "none_sequence",
        "embeddings_only", "all"])
def test_only_the_selected_weights_are_trainable(make_layer, kwargs, expected):
    layer = make_layer(**kwargs)
    layer(tf.constant(TEXTS[:1]))
    assert {w.name for w in layer.trainable_weights} == keras_names(expected)
    assert {w.name for w in layer.non_trainable_weights} == keras_names(ALL_WEIGHTS - expected)


@pytest.mark.large
def test_trainable_weight_counts(make_layer):
    counts = {}
    for kwargs in ({"n_fine_tune_layers": 3, "pooling": "mean"}, {"n_fine_tune_layers": 3},
                   {"n_fine_tune_layers": 0, "tune_embeddings": True},
                   {"n_fine_tune_layers": -1, "pooling": "mean"}):
        layer = make_layer(**kwargs)
        layer(tf.constant(TEXTS[:1]))
        counts[str(kwargs)] = len(layer.trainable_weights)
    assert list(counts.values()) == [3 * 16, 3 * 16 + 2, 5, 3 * 16 + 2 + 5]


# === Graphs: {"train"} with dropout, {} deterministic; parity with the numpy BERT ===


def test_training_runs_dropout_and_inference_is_deterministic(make_layer):
    layer = make_layer(pooling="mean")
    texts = tf.constant(TEXTS)
    first, second = layer(texts, training=False), layer(texts, training=False)
    np.testing.assert_array_equal(first.numpy(), second.numpy())
    np.testing.assert_array_equal(layer(texts).numpy(), first.numpy())  # default: inference
    train_a, train_b = layer(texts, training=True), layer(texts, training=True)
    assert np.abs(train_a.numpy() - train_b.numpy()).max() > 1e-2
    assert np.abs(train_a.numpy() - first.numpy()).max() > 1e-2


@pytest.mark.parametrize("pooling", ["cls", "first", "mean", "max", None])
def test_outputs_match_the_numpy_reference(make_layer, checkpoint, vocab_file, pooling):
    texts = TEXTS + [LONG_TEXT]
    outputs = make_layer(pooling=pooling, as_dict=True)(tf.constant(texts))
    features, sequence, pooled = _reference(checkpoint, vocab_file, texts)
    mask = features["input_mask"]
    masked = sequence * mask[:, :, None]
    expected = {"cls": pooled, "first": sequence[:, 0], "mean": mean_pool(sequence, mask),
                "max": _masked_max(sequence, mask), None: masked}[pooling]
    assert sorted(outputs) == ["input_mask", "pooled_output", "sequence_output"]
    np.testing.assert_array_equal(outputs["input_mask"].numpy(), mask)
    np.testing.assert_allclose(outputs["pooled_output"].numpy(), expected, atol=1e-4)
    np.testing.assert_allclose(outputs["sequence_output"].numpy(), masked, atol=1e-4)
    padding = outputs["sequence_output"].numpy()[mask == 0]
    assert padding.size > 0 and not padding.any()  # exactly zero, not just close


@pytest.mark.large
def test_not_as_dict_returns_the_pooled_tensor(make_layer):
    texts = tf.constant(TEXTS)
    for pooling, shape in (("cls", (3, 32)), ("max", (3, 32)), (None, (3, 10, 32))):
        pooled = make_layer(pooling=pooling)(texts)
        as_dict = make_layer(pooling=pooling, as_dict=True)(texts)
        assert pooled.shape == shape
        np.testing.assert_array_equal(pooled.numpy(), as_dict["pooled_output"].numpy())


# === Preprocessing ===


@pytest.mark.large
@pytest.mark.parametrize("texts", [TEXTS, ODD_TEXTS], ids=["plain", "odd"])
def test_every_tokenizer_gives_the_reference_ids(make_layer, vocab_file, texts):
    expected = reference_features(full_tokenizer(vocab_file, True), texts, MAX_LEN)
    for tokenizer in ("graph", "core", "numpy"):
        features = make_layer(tokenizer=tokenizer).preprocess(tf.constant(texts))
        for name, value in expected.items():
            np.testing.assert_array_equal(features[name].numpy(), value,
                                          err_msg=f"{tokenizer}: {name}")


def test_odd_texts_go_through_the_layer(make_layer, checkpoint, vocab_file):
    outputs = make_layer(pooling="mean")(tf.constant(ODD_TEXTS)).numpy()
    features, sequence, _ = _reference(checkpoint, vocab_file, ODD_TEXTS)
    np.testing.assert_allclose(outputs, mean_pool(sequence, features["input_mask"]), atol=1e-4)


def test_the_tokenizers_give_equal_outputs(make_layer):
    texts = tf.constant(TEXTS + ODD_TEXTS)
    graph = make_layer(tokenizer="graph")(texts).numpy()
    for tokenizer in ("core", "numpy"):
        np.testing.assert_array_equal(make_layer(tokenizer=tokenizer)(texts).numpy(), graph)


def test_preprocess_golden_ids(make_layer):
    # TINY_VOCAB: [CLS]=2 [SEP]=3 the=16 movie=19 was=23 great=37 .=5 a=17 bad=38 film=20
    # plot=22 fun=39 un=80 ##want=88 ##ed=89 runn=83 ##ing=90 !=7
    features = make_layer().preprocess(tf.constant(TEXTS))
    np.testing.assert_array_equal(features["input_ids"].numpy(), [
        [2, 16, 19, 23, 37, 5, 3, 0, 0, 0],
        [2, 17, 38, 20, 3, 16, 22, 23, 39, 3],
        [2, 80, 88, 89, 83, 90, 7, 3, 0, 0]])
    np.testing.assert_array_equal(features["segment_ids"].numpy()[1],
                                  [0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(features["input_mask"].numpy().sum(axis=1), [7, 10, 8])


@pytest.mark.large
def test_each_batch_is_padded_to_its_own_longest(make_layer):
    layer = make_layer(as_dict=True)
    assert layer(tf.constant(["good", "a good film"]))["input_mask"].shape == (2, 5)
    assert layer(tf.constant(["good"]))["input_mask"].shape == (1, 3)
    assert layer(tf.constant(TEXTS))["sequence_output"].shape == (3, 10, 32)
    # Truncated to max_seq_length, never padded to it.
    assert layer(tf.constant([LONG_TEXT, "good"]))["input_mask"].shape == (2, MAX_LEN)
    short = make_layer(as_dict=True, max_seq_length=16)
    assert short(tf.constant([LONG_TEXT]))["input_mask"].shape == (1, 16)


def test_vocabulary_is_read_from_the_module_folder_itself(tiny_module_dir, tmp_path):
    # A moved copy reads its own assets/vocab.txt, not the path the module was exported from;
    # a copy whose vocab.txt swaps "movie" (19) and "film" (20) is refused (the sha256 recorded
    # at export), since its embedding rows still follow the original order.
    moved = str(tmp_path / "moved")
    shutil.copytree(tiny_module_dir, moved)
    layer = BertLayer(moved, max_seq_length=MAX_LEN)
    features = layer.preprocess(tf.constant(["movie film"]))
    np.testing.assert_array_equal(features["input_ids"].numpy(), [[2, 19, 20, 3]])
    assert layer.preprocessor.tokenizer.vocab_file.startswith(moved)
    vocab_file = os.path.join(moved, "assets", "vocab.txt")
    with open(vocab_file, encoding="utf-8") as f:
        tokens = f.read().split("\n")
    tokens[19], tokens[20] = tokens[20], tokens[19]
    with open(vocab_file, "w", encoding="utf-8") as f:
        f.write("\n".join(tokens))
    with pytest.raises(ValueError, match="was changed after export"):
        BertLayer(moved, max_seq_length=MAX_LEN).preprocess(tf.constant(["movie film"]))


def test_string_column_input_of_shape_batch_by_one(make_layer):
    layer = make_layer()
    np.testing.assert_array_equal(layer(tf.constant([[t] for t in TEXTS])).numpy(),
                                  layer(tf.constant(TEXTS)).numpy())


def test_without_preprocessing_the_layer_takes_ids(make_layer):
    with_text = make_layer(pooling="mean")
    with_ids = make_layer(pooling="mean", do_preprocessing=False)
    features = with_text.preprocess(tf.constant(TEXTS))
    expected = with_text(tf.constant(TEXTS)).numpy()
    ids = (features["input_ids"], features["input_mask"], features["segment_ids"])
    np.testing.assert_array_equal(with_ids(ids).numpy(), expected)
    np.testing.assert_array_equal(with_ids(dict(features)).numpy(), expected)
    # In a functional model, from three int32 inputs.
    inputs = [keras.Input(shape=(None,), dtype="int32", name=n)
              for n in ("input_ids", "input_mask", "segment_ids")]
    model = keras.Model(inputs, with_ids(inputs))
    assert model.output.shape == (None, 32)
    np.testing.assert_allclose(model.predict(list(ids), verbose=0), expected, atol=1e-6)


# === A sentence's vector does not depend on its batch ===


@pytest.mark.parametrize("pooling", ["cls", "mean", "max", None])
def test_vector_alone_equals_vector_in_a_batch_of_longer_sentences(make_layer, pooling):
    layer = make_layer(pooling=pooling, as_dict=True)
    sentence = "the movie was great ."  # 7 positions; the batch is padded to 40.
    alone = layer(tf.constant([sentence]))
    batch = layer(tf.constant([LONG_TEXT, sentence, "a bad film ||| " + LONG_TEXT]))
    length = alone["input_mask"].shape[1]
    assert (length, batch["input_mask"].shape[1]) == (7, MAX_LEN)
    if pooling is None:
        np.testing.assert_allclose(batch["pooled_output"][1, :length], alone["pooled_output"][0],
                                   atol=1e-5)
        assert not batch["pooled_output"].numpy()[1, length:].any()
    else:
        np.testing.assert_allclose(batch["pooled_output"][1], alone["pooled_output"][0],
                                   atol=1e-5)


# === Execution paths ===


@pytest.mark.large
@pytest.mark.parametrize("pooling", ["mean", None])
def test_every_execution_path_gives_the_eager_outputs(make_layer, pooling):
    layer = make_layer(pooling=pooling)
    expected = layer(tf.constant(TEXTS)).numpy()
    assert_paths_agree(layer, TEXTS, expected, paths=("tf_function", "tf_data",
                                                      "tf_data_rebatched", "frozen"), atol=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "mixed_bfloat16"])
def test_layer_norms_run_as_one_op_each_in_a_keras_function(tiny_module_dir, dtype):
    """On a oneDNN build, Grappler fuses every LayerNorm of the module into one op in a
    tf.function too, where gamma and beta are variables (not only in frozen graphs, where
    they are constants). Before the module wrote its LayerNorms for that pattern, none fused
    here: the module in Keras ran at 0.69-0.83x the frozen graph's rate in bf16."""
    import collections

    from tensorflow.python.eager import context
    from tensorflow.python.util import _pywrap_util_port

    if not _pywrap_util_port.IsMklEnabled():
        pytest.skip("this TensorFlow build has no oneDNN fusions")
    layer = BertLayer(tiny_module_dir, max_seq_length=MAX_LEN, n_fine_tune_layers=-1,
                      pooling=None, dtype=dtype)
    forward = tf.function(lambda texts: layer(texts, training=False))
    ctx = context.context()
    ctx.enable_run_metadata()  # Before the first call: the graphs are optimized there.
    try:
        forward(tf.constant(TEXTS))
        metadata = ctx.export_run_metadata()
    finally:
        ctx.disable_run_metadata()
    ran = collections.Counter(node.op for function in metadata.function_graphs
                              for graph in function.partition_graphs for node in graph.node)
    assert ran["_MklLayerNorm"] == 1 + 2 * NUM_LAYERS, ran


def test_the_module_scales_no_weight_matrix_at_run_time_but_the_querys(tiny_module_dir):
    """In Keras the weights are variables, so a Mul on a kernel runs over the whole matrix
    at every call (LayerNorm's input scale used to be folded into six kernels a layer: 13%
    of the traced bf16 op time). Only the attention's 1/sqrt(D) is folded into the query's
    kernel."""
    from bert_layer.layers.hub_module import HubModule

    graph_def, _, _ = HubModule(tiny_module_dir).signature_graph(frozenset(), "tokens")
    nodes = {node.name: node for node in graph_def.node}

    def variable(tensor: str):
        node = nodes[tensor.split(":")[0]]
        while node.op == "Identity":
            node = nodes[node.input[0].split(":")[0]]
        return nodes[node.input[0].split(":")[0]] if node.op == "ReadVariableOp" else None

    scaled = {v.attr["shared_name"].s.decode() or v.name
              for node in graph_def.node if node.op == "Mul"
              for v in map(variable, node.input)
              if v is not None and len(v.attr["shape"].shape.dim) == 2}
    assert scaled and all(name.endswith("self/query/kernel") for name in scaled), scaled


# === The real default model ===


@pytest.mark.integration
def test_default_module_mean_embeddings_match_reference_on_sst2(
        default_module_dir, default_checkpoint_dir, sst2_dev):
    checkpoint = load_checkpoint(default_checkpoint_dir)
    texts = sst2_dev[:32]
    layer = BertLayer(default_module_dir, pooling="mean")
    embeddings = layer(tf.constant(texts)).numpy()
    features = reference_features(full_tokenizer(checkpoint.vocab_file, True), texts, 128)
    sequence, _ = bert_forward(checkpoint.weights, checkpoint.config, **features)
    expected = mean_pool(sequence, features["input_mask"])
    assert embeddings.shape == (32, checkpoint.config.hidden_size)
    assert np.abs(embeddings - expected).max() < 1e-4


# === Training: exactly the selected variables move ===


def _classifier(module: str, seed: int = 0, **kwargs) -> tuple[keras.Model, BertLayer]:
    """strings [batch] -> BertLayer -> Dense(2) logits."""
    text = keras.Input(shape=(), dtype="string", name="text")
    bert = BertLayer(module, **{"max_seq_length": MAX_LEN, **kwargs})
    head = keras.layers.Dense(2, name="logits",
                              kernel_initializer=keras.initializers.GlorotUniform(seed))
    return keras.Model(text, head(bert(text))), bert


def _compile(model: keras.Model, learning_rate: float = 1e-2) -> None:
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))


def _fit(model: keras.Model, epochs: int = 1) -> dict:
    return model.fit(tf.constant(TRAIN_TEXTS), TRAIN_LABELS, batch_size=2, epochs=epochs,
                     shuffle=False, verbose=0).history


def _values(model: keras.Model) -> dict[str, np.ndarray]:
    return {w.path: w.numpy().copy() for w in model.weights}


@pytest.mark.large
@pytest.mark.parametrize("kwargs, expected", [
    ({"n_fine_tune_layers": 1}, last_layers(1) | POOLER),
    ({"n_fine_tune_layers": 0, "tune_embeddings": True}, EMBEDDINGS),
    ({"n_fine_tune_layers": -1}, ALL_WEIGHTS),
], ids=["last1", "embeddings_only", "all"])
def test_fit_moves_exactly_the_selected_variables(tiny_module_dir, kwargs, expected):
    model, bert = _classifier(tiny_module_dir, **kwargs)
    _compile(model)
    before = _values(model)
    _fit(model)
    after = _values(model)
    changed = {path for path in before if not np.array_equal(before[path], after[path])}
    head = {"logits/kernel", "logits/bias"}
    assert changed == {f"{bert.name}/{n}" for n in keras_names(expected)} | head


@pytest.mark.large
def test_fit_is_stochastic_and_predict_deterministic(tiny_module_dir):
    model, _ = _classifier(tiny_module_dir, pooling="mean")
    _compile(model, learning_rate=0.0)  # The weights stay: only dropout can vary the loss.
    before = _values(model)
    losses = _fit(model, epochs=3)["loss"]
    assert len(set(losses)) == 3
    first, second = (model.predict(tf.constant(TRAIN_TEXTS), verbose=0) for _ in range(2))
    np.testing.assert_array_equal(first, second)
    assert all(np.array_equal(v, w.numpy()) for v, w in zip(before.values(), model.weights))


@pytest.mark.large
def test_two_bert_layers_train_independent_weights(tiny_module_dir, tmp_path):
    text = keras.Input(shape=(), dtype="string")
    first = BertLayer(tiny_module_dir, max_seq_length=MAX_LEN, n_fine_tune_layers=1)
    second = BertLayer(tiny_module_dir, max_seq_length=MAX_LEN, n_fine_tune_layers=1)
    joined = keras.layers.Concatenate()([first(text), second(text)])
    model = keras.Model(text, keras.layers.Dense(2, name="logits")(joined))
    paths = [w.path for w in model.weights]
    assert len(paths) == len(set(paths)) == 2 * 55 + 2
    assert first.name != second.name
    _compile(model)
    before = _values(model)
    _fit(model)
    for bert in (first, second):
        moved = {w.name for w in bert.weights
                 if not np.array_equal(before[w.path], w.numpy())}
        assert moved == keras_names(last_layers(1) | POOLER), bert.name
    # Same start, different gradients (each feeds its own half of the head): they differ.
    for a, b in zip(first.trainable_weights, second.trainable_weights):
        assert a.name == b.name and a is not b
        assert not np.array_equal(a.numpy(), b.numpy()), a.name
    path = str(tmp_path / "two.keras")
    model.save(path)
    texts = tf.constant(TEXTS)
    np.testing.assert_array_equal(keras.models.load_model(path)(texts).numpy(),
                                  model(texts).numpy())


# === Saving and restoring ===

# Every argument differs from its default; with do_preprocessing both ways.
CONFIGS = [
    dict(max_seq_length=16, pooling="max", normalize=True, n_fine_tune_layers=1,
         tune_embeddings=True, do_preprocessing=True, tokenizer="numpy", as_dict=True,
         name="encoder", trainable=False),
    dict(max_seq_length=20, pooling=None, n_fine_tune_layers=-1, tune_embeddings=True,
         do_preprocessing=False, tokenizer="numpy", as_dict=True, name="encoder_ids"),
]


@pytest.mark.parametrize("kwargs", CONFIGS, ids=["text", "ids"])
def test_config_round_trip_through_json(tiny_module_dir, make_layer, monkeypatch, kwargs):
    monkeypatch.chdir(os.path.dirname(tiny_module_dir))
    layer = BertLayer("module", **kwargs)
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(layer)))
    assert config["registered_name"] == "bert_layer>BertLayer"
    assert config["config"]["module"] == "module"  # as given, not made absolute
    for name, value in kwargs.items():
        assert config["config"][name] == value, name
    restored = keras.saving.deserialize_keras_object(config)
    assert type(restored) is BertLayer
    assert restored.get_config() == layer.get_config()
    inputs = tf.constant([LONG_TEXT, "good"])
    if not kwargs["do_preprocessing"]:
        features = make_layer().preprocess(inputs)
        inputs = tuple(features[n] for n in ("input_ids", "input_mask", "segment_ids"))
    expected, actual = layer(inputs), restored(inputs)
    for key in expected:
        np.testing.assert_array_equal(actual[key].numpy(), expected[key].numpy(), err_msg=key)
    assert ([w.name for w in restored.trainable_weights]
            == [w.name for w in layer.trainable_weights])


def test_relative_module_path_resolves_against_the_working_directory(tiny_module_dir,
                                                                   monkeypatch, tmp_path):
    monkeypatch.chdir(os.path.dirname(tiny_module_dir))
    config = BertLayer("module", max_seq_length=MAX_LEN).get_config()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="Hub module folder not found: module"):
        BertLayer(**config)


@pytest.fixture(scope="module")
def trained(tiny_module_dir):
    """A classifier on the relative path "module", trained until its weights moved."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(os.path.dirname(tiny_module_dir))
        model, _ = _classifier("module", pooling="mean", n_fine_tune_layers=2,
                               tune_embeddings=True)
    untrained = _predict(model)
    _compile(model)
    _fit(model, epochs=2)
    predictions = _predict(model)
    assert np.abs(predictions - untrained).max() > 1e-3
    return model, predictions


def _predict(model: keras.Model) -> np.ndarray:
    """Inference outputs for TEXTS, eagerly (`predict` would trace the tokenizer again)."""
    return model(tf.constant(TEXTS), training=False).numpy()


def _fresh_model() -> keras.Model:
    return _classifier("module", seed=1, pooling="mean", n_fine_tune_layers=2,
                       tune_embeddings=True)[0]


@pytest.mark.large
def test_save_weights_and_load_weights(trained, tiny_module_dir, monkeypatch, tmp_path):
    model, predictions = trained
    path = str(tmp_path / "model.weights.h5")
    model.save_weights(path)
    monkeypatch.chdir(os.path.dirname(tiny_module_dir))
    fresh = _fresh_model()
    assert not np.array_equal(_predict(fresh), predictions)
    fresh.load_weights(path)
    np.testing.assert_array_equal(_predict(fresh), predictions)


@pytest.mark.large
def test_to_json_then_load_weights(trained, tiny_module_dir, monkeypatch, tmp_path):
    model, predictions = trained
    path = str(tmp_path / "model.weights.h5")
    model.save_weights(path)
    monkeypatch.chdir(os.path.dirname(tiny_module_dir))
    restored = keras.models.model_from_json(model.to_json())
    restored.load_weights(path)
    np.testing.assert_array_equal(_predict(restored), predictions)


@pytest.mark.large
def test_keras_file_round_trip(trained, tiny_module_dir, monkeypatch, tmp_path):
    model, predictions = trained
    path = str(tmp_path / "model.keras")
    model.save(path)
    monkeypatch.chdir(os.path.dirname(tiny_module_dir))
    restored = keras.models.load_model(path)
    bert = next(layer for layer in restored.layers if isinstance(layer, BertLayer))
    assert bert.module == "module"
    np.testing.assert_array_equal(_predict(restored), predictions)
    np.testing.assert_allclose(restored.predict(tf.constant(TEXTS), verbose=0), predictions,
                               atol=1e-6)
    trainable = sorted(w.path for w in restored.trainable_weights)
    assert trainable == sorted(w.path for w in model.trainable_weights)


# === Bad input ===


@pytest.mark.parametrize("kwargs, match", [
    ({"pooling": "avg"}, r"Unknown pooling 'avg'; expected one of \['cls', 'first', 'mean', "
                         r"'max', None\]"),
    ({"pooling": None, "normalize": True}, r"normalize=True scales one pooled vector per text "
                                           r"to unit length; it needs a pooling \(one of "
                                           r"\['cls', 'first', 'mean', 'max'\]\), found None"),
    ({"n_fine_tune_layers": 4}, r"n_fine_tune_layers must be -1 \(all\), 0 \(none\) or up to "
                                r"the module's 3 encoder layers. Received: 4"),
    ({"n_fine_tune_layers": -2}, r"n_fine_tune_layers must be -1 .*Received: -2"),
    ({"tokenizer": "fast"}, r"Unknown tokenizer kind 'fast'; expected one of \['core', "
                            r"'graph', 'numpy'\]"),
    ({"max_seq_length": 65}, r"max_seq_length=65 exceeds the 64 position embeddings of the "
                             r"module .*; pass max_seq_length <= 64"),
    ({"max_seq_length": 2}, r"max_seq_length must be an integer >= 3.*Received: 2"),
], ids=["pooling", "normalize_unpooled", "layers_above", "layers_below", "tokenizer",
        "positions", "too_short"])
def test_bad_arguments_name_the_value_and_what_is_allowed(tiny_module_dir, kwargs, match):
    with pytest.raises(ValueError, match=match):
        BertLayer(tiny_module_dir, **{"max_seq_length": MAX_LEN, **kwargs})


def test_missing_module_folder_is_named(tmp_path):
    missing = str(tmp_path / "no_such_module")
    with pytest.raises(FileNotFoundError, match=f"Hub module folder not found: {missing}"):
        BertLayer(missing)


def test_module_without_tokenization_info_is_named(tiny_module_dir, tmp_path):
    broken = str(tmp_path / "module")
    shutil.copytree(tiny_module_dir, broken)
    pb_file = os.path.join(broken, "saved_model.pb")
    saved_model = saved_model_pb2.SavedModel()
    with open(pb_file, "rb") as f:
        saved_model.ParseFromString(f.read())
    for meta_graph in saved_model.meta_graphs:
        del meta_graph.signature_def["tokenization_info"]
    with open(pb_file, "wb") as f:
        f.write(saved_model.SerializeToString())
    with pytest.raises(ValueError, match=re.escape(
            f"{broken} (tags {{}}) lacks the `tokenization_info` signature (available "
            f"signatures: ['default', 'text', 'tokens', 'tokens_bf16'])")):
        BertLayer(broken, max_seq_length=MAX_LEN)


NOT_TEXT = (r"BertLayer with do_preprocessing=True expects a string tensor of shape \[batch\] "
            r".*received dtype int32. For token ids pass do_preprocessing=False")


def test_non_string_input_is_refused_symbolically(make_layer):
    with pytest.raises(TypeError, match=NOT_TEXT):
        make_layer()(keras.Input(shape=(), dtype="int32"))


def test_non_string_input_is_refused_eagerly(make_layer):
    with pytest.raises(TypeError, match=NOT_TEXT):
        make_layer()(tf.constant([1, 2]))


def test_ids_layer_refuses_a_single_tensor(make_layer):
    with pytest.raises(ValueError, match=r"do_preprocessing=False expects \(input_ids, "
                                         r"input_mask, segment_ids\)"):
        make_layer(do_preprocessing=False)(tf.constant([[2, 3]]))


def test_more_than_one_pair_separator_names_the_text(make_layer):
    texts = tf.constant(["fine", "a ||| b ||| c"])
    pattern = r"(?s)Only one '?\|\|\|'? is allowed per text.*a \|\|\| b \|\|\| c"
    with pytest.raises(tf.errors.InvalidArgumentError, match=pattern):
        make_layer()(texts)
    with pytest.raises(tf.errors.InvalidArgumentError, match=pattern):
        tf.function(make_layer())(texts)
