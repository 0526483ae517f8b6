"""A token classifier (tagger): words in, a BertLayer body read at each word's first
wordpiece, a per-word softmax over IOB2 tags; trained with the classifier's `fit` machinery.

The model takes words, string [B, W] ("" pads), and gives tag probabilities [B, W, K]. The
word -> wordpiece alignment runs inside the graph (bert_layer.text.alignment), so a saved,
frozen or served tagger needs no Python tokenizer. Only each word's first piece is read, so
the other pieces never reach the loss or the metric; a word with no piece (a control or
zero-width character) is given "O" with probability 1 and has no label in training.

Dimension legend: B = sentences, W = words, T = wordpieces, H = hidden size, K = tags.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from bert_layer.data.conll import TaggedSentences
from bert_layer.layers.precision import policy_name
from bert_layer.layers.word_layer import WordBertLayer
from bert_layer.outputs import check_output_free
from bert_layer.text.alignment import merge_rows, windowed
from bert_layer.training.distribute import (
    describe,
    is_chief,
    make_strategy,
    shard_by_examples,
)
from bert_layer.training.specs import TaggerSpec, TrainConfig, window_stride
from bert_layer.training.train import _fit_and_write, _worker_run_dir, make_optimizer

IGNORED = -1  # The label of padding and of words without a wordpiece: no loss.
# The head's kernel is drawn as Hugging Face's BertForTokenClassification draws it: normal,
# std 0.02 (google-research/bert's truncated normal has std 0.88 x 0.02 and no values past
# 2 std). Measured on the WNUT-16 benchmark (README, NER): from truncated heads our tagger
# and PyTorch alike scored ~4 entity F1 under PyTorch's own normal heads on the same
# batches; the short recipe (3 epochs, lr 5e-5) keeps the head's first scale in the result.


def head_initializer() -> keras.initializers.Initializer:
    """A new one for each model: Keras fixes an unseeded initializer's seed when it is made
    (after `keras.utils.set_random_seed`, so that each seed draws its own head)."""
    return keras.initializers.RandomNormal(stddev=0.02)


@keras.saving.register_keras_serializable(package="bert_layer")
class TaggerHead(keras.layers.Dense):
    """Per-word softmax over `tag_names`; words without a wordpiece get "O" (tag 0) with
    probability 1. Its config carries the tag names, so a saved tagger predicts with them
    wherever it is copied.

    Call: (states float [B, W, H], has_piece bool [B, W]) -> probabilities float32 [B, W, K].
    """

    def __init__(self, tag_names, **kwargs):
        kwargs.update(units=len(tag_names), activation="softmax")
        super().__init__(**kwargs)
        self.tag_names = [str(t) for t in tag_names]
        self.input_spec = None  # Two inputs (Dense checks for one).

    def build(self, input_shape):
        states_shape = input_shape[0] if isinstance(input_shape, (list, tuple)) and isinstance(
            input_shape[0], (list, tuple)) else input_shape
        super().build(states_shape)
        self.input_spec = None

    def call(self, inputs):
        states, has_piece = inputs[0], inputs[1]
        probabilities = super().call(states)
        outside = tf.one_hot(0, len(self.tag_names), dtype=probabilities.dtype)
        return tf.where(tf.expand_dims(has_piece, -1), probabilities, outside)

    def compute_output_shape(self, input_shape):
        states_shape = input_shape[0]
        return (*states_shape[:-1], self.units)

    def get_config(self) -> dict:
        config = super().get_config()
        config["tag_names"] = self.tag_names
        return config


@keras.saving.register_keras_serializable(package="bert_layer")
class TagCrossentropy(keras.losses.Loss):
    """Cross-entropy of each labelled word's tag, averaged over the labelled words of the
    batch (IGNORED labels have none): Hugging Face's CrossEntropyLoss(ignore_index=-100) on
    first wordpieces.

    Written here because Keras's SparseCategoricalCrossentropy(ignore_class=...) takes the
    log of probabilities clipped to [1e-7, 1 - 1e-7] (its masking drops the logits Keras
    would otherwise use), so a word whose right tag is less likely than 1e-7 gets no gradient
    at all; here the floor is float32's smallest normal number, ~1e-38, which a softmax
    output never reaches in practice (a logit gap of ~87).

    Call: labels int [B, W] (IGNORED: no loss), probabilities float [B, W, K] -> per-word
    losses [B, W] that Keras sums ("sum" reduction) into the mean over labelled words.
    """

    def __init__(self, name: str = "tag_crossentropy", **kwargs):
        kwargs["reduction"] = "sum"  # call() divides by the labelled words itself.
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        labels = tf.cast(y_true, tf.int32)
        labelled = tf.not_equal(labels, IGNORED)
        right = tf.gather(tf.cast(y_pred, tf.float32), tf.where(labelled, labels, 0),
                          batch_dims=2)  # [B, W]: the probability of each word's tag
        losses = -tf.math.log(tf.maximum(right, np.finfo(np.float32).tiny))
        count = tf.maximum(tf.reduce_sum(tf.cast(labelled, tf.float32)), 1.0)
        return tf.where(labelled, losses, 0.0) / count


def find_tagger_head(model: keras.Model) -> TaggerHead | None:
    heads = [layer for layer in model.layers if isinstance(layer, TaggerHead)]
    return heads[0] if len(heads) == 1 else None


def build_tagger(spec: TaggerSpec) -> keras.Model:
    """words string [batch, words] ("" pads) -> tag probabilities [batch, words, tags]."""
    words = keras.Input(shape=(None,), dtype="string", name="words")
    body = WordBertLayer(spec.module, max_seq_length=spec.max_seq_length,
                         n_fine_tune_layers=spec.fine_tune_layers, tokenizer=spec.tokenizer,
                         dtype=policy_name(spec.precision), name="bert")
    states, has_piece = body(words)
    states = keras.layers.Dropout(spec.head_dropout, name="head_dropout")(states)
    probabilities = TaggerHead(
        spec.tag_names, name="tags", dtype="float32",
        kernel_initializer=head_initializer())([states, has_piece])
    return keras.Model(words, probabilities, name="bert_tagger")


# === Data ===

def piece_counts(model: keras.Model, sentences: list[list[str]]) -> list[np.ndarray]:
    """Wordpieces of each word, int [w] per sentence, by the model's own tokenizer."""
    tokenizer = model.get_layer("bert").preprocessor.tokenizer
    flat = [w for words in sentences for w in words]
    counts = []
    for i in range(0, len(flat), 4096):
        counts.append(tokenizer.tokenize(tf.constant(flat[i:i + 4096])).row_lengths().numpy())
    counts = np.concatenate(counts) if counts else np.zeros([0], np.int64)
    splits = np.cumsum([0] + [len(words) for words in sentences])
    return [counts[a:b] for a, b in zip(splits[:-1], splits[1:])]


def training_rows(sentences: TaggedSentences, counts: list[np.ndarray], tag_names: list[str],
                  budget: int, stride: int) -> tuple[list[list[str]], list[list[int]]]:
    """Words and label ids per row: sentences longer than `budget` wordpieces become
    overlapping windows (`windowed`), each word labelled in one window only (where it has
    most context); words without a wordpiece are IGNORED."""
    index = {t: i for i, t in enumerate(tag_names)}
    rows, origins = windowed(sentences.words, counts, budget, stride)
    labels = []
    for row, (sentence, start, owned) in zip(rows, origins):
        tags, count = sentences.tags[sentence], counts[sentence]
        labels.append([index[tags[start + j]] if owned[j] and count[start + j] > 0 else IGNORED
                       for j in range(len(row))])
    return rows, labels


def tagging_dataset(words: list[list[str]], labels: list[list[int]] | None, *,
                    batch_size: int, shuffle: bool, seed: int) -> tf.data.Dataset:
    """(words string [B, W] with "" pads, labels int32 [B, W] with IGNORED pads) batches."""
    ragged_words = tf.ragged.constant(words, dtype=tf.string, ragged_rank=1)
    parts = (ragged_words,) if labels is None else (
        ragged_words, tf.ragged.constant(labels, dtype=tf.int32, ragged_rank=1))
    dataset = tf.data.Dataset.from_tensor_slices(parts)
    if shuffle:
        dataset = dataset.shuffle(len(words), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.ragged_batch(batch_size)
    if labels is None:
        return dataset.map(lambda w: w.to_tensor(default_value=""))
    return dataset.map(lambda w, y: (w.to_tensor(default_value=""),
                                     y.to_tensor(default_value=IGNORED)))


def predict_rows(run, rows: list[list[str]], batch_size: int = 32) -> list[np.ndarray]:
    """`run(words [b, w]) -> probabilities [b, w, K]` on each row, batched by length (rows of
    similar length together), back in input order: float32 [len(row), K] per row."""
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    results: list[np.ndarray | None] = [None] * len(rows)
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        width = max(1, max(len(rows[i]) for i in batch))
        words = np.array([rows[i] + [""] * (width - len(rows[i])) for i in batch], dtype=object)
        probabilities = np.asarray(run(words))
        for j, i in enumerate(batch):
            results[i] = probabilities[j, :len(rows[i])]
    return results


def entity_scores(gold: list[list[str]], predicted: list[list[str]]) -> dict[str, float]:
    """seqeval's entity-level scores: `entity_{precision,recall,f1}` (micro over entities),
    and `{type}_{precision,recall,f1,support}` per entity type."""
    from seqeval.metrics import classification_report

    report = classification_report(gold, predicted, output_dict=True, zero_division=0)
    scores = {f"entity_{k}": float(report["micro avg"][v])
              for k, v in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score"))}
    for name, row in report.items():
        if name.endswith(" avg"):
            continue
        for k, v in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score"),
                     ("support", "support")):
            scores[f"{name}_{k}"] = float(row[v])
    return scores


def is_summary_score(name: str) -> bool:
    """The scores a tagger's epoch line prints: the losses and the entity-level (micro) ones.
    The per-type scores (four for each entity type: 40 for WNUT-16) go to the logs, the
    report and the table after training."""
    return not name.startswith("val_") or name == "val_loss" or name.startswith("val_entity_")


class EntityF1(keras.callbacks.Callback):
    """Tags the dev sentences after each epoch and adds seqeval's scores to the logs as
    `val_entity_f1`, `val_{type}_f1`, ... (the best epoch is chosen on `val_entity_f1`)."""

    def __init__(self, rows: list[list[str]], origins, gold: list[list[str]],
                 tag_names: list[str], batch_size: int):
        super().__init__()
        self.rows, self.origins, self.gold = rows, origins, gold
        self.tag_names, self.batch_size = list(tag_names), batch_size

    def on_epoch_end(self, epoch, logs=None):
        run = tf.function(lambda w: self.model(w, training=False),
                          input_signature=[tf.TensorSpec([None, None], tf.string)], autograph=False)
        probabilities = predict_rows(lambda w: run(tf.constant(w)), self.rows, self.batch_size)
        tags = [[self.tag_names[i] for i in p.argmax(-1)] for p in probabilities]
        predicted = merge_rows(tags, self.origins, [len(g) for g in self.gold])
        if logs is not None:
            logs.update({f"val_{k}": v for k, v in entity_scores(self.gold, predicted).items()})


def compile_tagger(model: keras.Model, config: TrainConfig, steps: int) -> None:
    # Padding and the words without a wordpiece carry IGNORED labels: no loss.
    model.compile(optimizer=make_optimizer(config, steps), loss=TagCrossentropy())


def train_tagger(spec: TaggerSpec, train: TaggedSentences, dev: TaggedSentences | None,
                 out_dir: str, config: TrainConfig = TrainConfig(), *,
                 overwrite: bool = False, resume: bool = False,
                 verbose: int | None = None) -> dict:
    """Fine-tunes a tagger, keeps the best epoch by dev entity F1 (seqeval; without dev data,
    the last), writes `model.keras` and `report.json` (per-type scores of the best epoch
    under "best") into `out_dir`; returns the report. `--resume` as for classifiers."""
    from bert_layer.data.conll import check_known_tags

    if train.tags is None:
        raise ValueError(f"{train.source}: training needs a tag column.")
    if resume and config.distribute == "multi-worker":
        raise ValueError("resume with distribute='multi-worker' is not supported: each worker "
                         "would need its own backup; rerun without resume (or with overwrite).")
    check_known_tags(train, spec.tag_names)
    if dev is not None:
        check_known_tags(dev, spec.tag_names)
    inputs = [spec.module, train.source] + ([dev.source] if dev is not None else [])
    strategy = make_strategy(config.distribute)
    chief = is_chief(strategy)
    if chief:
        check_output_free(out_dir, overwrite, kind="run", inputs=inputs)
    if verbose is None:  # One line per epoch (ThroughputLogger), on stdout.
        verbose = 1
    keras.utils.set_random_seed(config.seed)
    distribution = describe(strategy, config.distribute, config.batch_size)
    global_batch = distribution["global_batch_size"]
    budget = spec.max_seq_length - 2
    stride = window_stride(spec.stride, spec.max_seq_length)
    with strategy.scope():
        model = build_tagger(spec)
        train_counts = piece_counts(model, train.words)
        rows, labels = training_rows(train, train_counts, list(spec.tag_names), budget,
                                     stride)
        steps = config.epochs * math.ceil(len(rows) / global_batch)
        compile_tagger(model, config, steps)
    train_ds = shard_by_examples(tagging_dataset(rows, labels, batch_size=global_batch,
                                                 shuffle=True, seed=config.seed))
    callbacks, dev_ds = (), None
    if dev is not None:
        dev_counts = piece_counts(model, dev.words)
        dev_rows, origins = windowed(dev.words, dev_counts, budget, stride)
        callbacks = (EntityF1(dev_rows, origins, dev.tags, spec.tag_names, global_batch),)
        # Keras validates on it too (val_loss); the entity scores come from EntityF1.
        _, dev_labels = training_rows(dev, dev_counts, list(spec.tag_names), budget,
                                      stride)
        dev_ds = tagging_dataset(dev_rows, dev_labels, batch_size=global_batch,
                                 shuffle=False, seed=config.seed)
    with _worker_run_dir(out_dir, chief) as run_dir:
        return _fit_and_write(model, train_ds, dev_ds, run_dir, spec, config, train, dev,
                              distribution, overwrite=overwrite or not chief, resume=resume,
                              inputs=inputs, verbose=verbose, monitor="val_entity_f1",
                              extra_callbacks=callbacks, shown_scores=is_summary_score)
