"""Token classification: CoNLL reading, word alignment, spans, windows, the trained tagger
saved, frozen and served, and the CLI's errors. One tiny tagger is trained per session."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
from harness import assert_one_line_error, kill_after_first_epoch, run_cli, tree_hashes
from real_data import DATA_DIR
from tiny import TINY_VOCAB

from bert_layer.data.conll import read_conll, tag_names, tagging_warnings
from bert_layer.text.alignment import split_text, windowed, windows

HERE = os.path.dirname(os.path.abspath(__file__))
WNUT = os.path.join(DATA_DIR, "wnut16", "train.conll")
TYPES = ["film", "person"]
TAGS = tag_names(TYPES)
# Words that tokenize to nothing (zero-width space, a control character), split into
# several pieces, are [UNK], are CJK, carry accents, or are emoji.
ADVERSARIAL_WORDS = [
    ["The", "\u200b", "movie", "unwanted", "Café", "\x07", "running"],
    ["中", "中中", "🙂", "naïve", "ÉTÉ", "it's", "n't", "act\u0301or"],
    ["\u200b"], ["the"] * 40,  # The last is cut by max_seq_length 32.
]


def _sentences(n: int, seed: int) -> list[tuple[list[str], list[str]]]:
    """Tiny-vocabulary sentences where "he"/"she" are persons and "the movie" a film."""
    rng = np.random.default_rng(seed)
    filler = ["was", "great", "and", "i", "love", "it", "not", "funny", "."]
    out = []
    for _ in range(n):
        words, tags = [], []
        for _ in range(rng.integers(3, 8)):
            kind = rng.integers(0, 4)
            if kind == 0:
                words.append(str(rng.choice(["he", "she"])))
                tags.append("B-person")
            elif kind == 1:
                words += ["the", "movie"]
                tags += ["B-film", "I-film"]
            else:
                words.append(str(rng.choice(filler)))
                tags.append("O")
        out.append((words, tags))
    return out


def write_conll(path, sentences, columns: int = 2) -> str:
    with open(path, "w", encoding="utf-8") as f:
        for words, tags in sentences:
            for word, tag in zip(words, tags):
                middle = ["NN", "I-NP"][:columns - 2]
                f.write("\t".join([word, *middle, tag]) + "\n")
            f.write("\n")
    return str(path)


@pytest.fixture(scope="session")
def conll_files(tmp_path_factory) -> tuple[str, str]:
    folder = tmp_path_factory.mktemp("conll")
    return (write_conll(folder / "train.conll", _sentences(32, 1)),
            write_conll(folder / "dev.conll", _sentences(12, 2)))


@pytest.fixture(scope="session")
def tagger_dir(tiny_module_dir, conll_files, tmp_path_factory) -> str:
    """A tiny tagger trained 2 epochs (model.keras, report.json)."""
    from bert_layer.training.specs import TaggerSpec, TrainConfig
    from bert_layer.training.tagger import train_tagger

    out = str(tmp_path_factory.mktemp("tagger") / "run")
    spec = TaggerSpec(tiny_module_dir, tuple(TAGS), fine_tune_layers=1, max_seq_length=32)
    train, dev = (read_conll(p) for p in conll_files)
    train_tagger(spec, train, dev, out, TrainConfig(epochs=2, batch_size=8, learning_rate=1e-3),
                 verbose=0)
    return out


@pytest.fixture(scope="session")
def keras_tagger(tagger_dir):
    from bert_layer.inference.tagging import KerasTagger

    return KerasTagger(os.path.join(tagger_dir, "model.keras"))


# === Reading CoNLL files ===

def test_conll_2003_layout_docstart_and_blank_lines(tmp_path):
    path = tmp_path / "c.conll"
    path.write_text("-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n \t \n"
                    "Peter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n\n\n", encoding="utf-8")
    read = read_conll(str(path))
    assert read.words == [["EU", "rejects"], ["Peter", "Blackburn"]]
    assert read.tags == [["B-ORG", "O"], ["B-PER", "I-PER"]]
    assert read.lines == [[3, 4], [6, 7]]
    assert read.entity_types() == ["ORG", "PER"]


def test_warnings_for_no_entity_and_iob1(tmp_path):
    none = read_conll(write_conll(tmp_path / "o.conll", [(["a", "b"], ["O", "O"])]))
    assert "no entity at all" in tagging_warnings(none)[0]
    iob1 = read_conll(write_conll(tmp_path / "i.conll", [(["a", "b"], ["O", "I-x"])]))
    (warning,) = tagging_warnings(iob1)
    assert "1 I-x tags follow O" in warning and "(lines 2)" in warning and "IOB1" in warning


BAD_FILES = {
    "no_tag": ("the\tO\nmovie\n", "train", ":2: expected a token and its tag"),
    "bad_tag": ("the\tO\nmovie\tFILM\n", "train", ":2: expected an IOB2 tag (O, B-type or "
                "I-type), found 'FILM'"),
    "empty": ("\n \n-DOCSTART-\tO\n", "train", "expected at least one sentence"),
    "unknown_dev_tag": ("the\tO\nmovie\tB-song\n", "dev", ":2: the tag 'B-song' is not one the "
                        "model knows"),
    "not_utf8": (b"caf\xe9\tO\n", "train", "expected UTF-8 text, found byte 0xe9"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_conll_input_exits_2_with_one_line_and_touches_nothing(case, tiny_module_dir,
                                                                   conll_files, tmp_path):
    content, role, fragment = BAD_FILES[case]
    bad = tmp_path / "bad.conll"
    bad.write_bytes(content if isinstance(content, bytes) else content.encode())
    train, dev = conll_files
    files = {"train": train, "dev": dev, role: str(bad)}
    before = tree_hashes(tmp_path)
    code, _, err = run_cli(["train", "--task", "tag", "--module", tiny_module_dir,
                            "--train", files["train"], "--dev", files["dev"],
                            "--out", str(tmp_path / "out"), "--max-seq-length", "32"])
    assert code == 2
    assert_one_line_error(err, "train", str(bad), fragment)
    assert tree_hashes(tmp_path) == before


@pytest.mark.large
def test_predict_errors_exit_2_and_leave_files_alone(tagger_dir, conll_files, tmp_path):
    model = os.path.join(tagger_dir, "model.keras")
    _, dev = conll_files
    texts = tmp_path / "texts.txt"
    texts.write_text("the movie\n", encoding="utf-8")
    unknown = tmp_path / "unknown.conll"
    unknown.write_text("the\tO\nsong\tB-song\n", encoding="utf-8")
    existing = tmp_path / "out.conll"
    existing.write_text("mine\n", encoding="utf-8")
    before = tree_hashes(tmp_path)
    cases = [
        (["--input", str(texts), "--output", str(tmp_path / "x.csv")], "A tagger writes JSON"),
        (["--input", dev, "--output", str(tmp_path / "x.jsonl")], "written back as a CoNLL"),
        (["--input", dev, "--output", str(existing)], "already exists"),
        (["--input", str(unknown), "--output", str(tmp_path / "y.conll")],
         f"{unknown}:2: the tag 'B-song' is not one the model knows"),
        (["--input", str(texts), "--stride", "40"], "stride must be in [0, 30)"),
    ]
    for extra, fragment in cases:
        code, out, err = run_cli(["predict", "--model", model, "--quiet", *extra])
        assert code == 2, (extra, err)
        assert_one_line_error(err, "predict", fragment)
        assert out == ""
    assert tree_hashes(tmp_path) == before


# === Alignment ===

def _hf_tokenizer(vocab_file: str):
    from transformers import BertTokenizerFast

    return BertTokenizerFast(vocab_file, do_lower_case=True)


def _assert_alignment_matches_hf(vocab_file: str, sentences: list[list[str]],
                                 max_seq_length: int) -> None:
    import tensorflow as tf

    from bert_layer.text.alignment import align_words
    from bert_layer.text.tokenizer import make_tokenizer

    encoded = _hf_tokenizer(vocab_file)(sentences, is_split_into_words=True, truncation=True,
                                        max_length=max_seq_length)
    for kind in ("graph", "core", "numpy"):
        tokenizer = make_tokenizer(kind, vocab_file, True)
        for start in range(0, len(sentences), 512):
            batch = sentences[start:start + 512]
            aligned = align_words(tokenizer, tf.ragged.constant(batch, dtype=tf.string),
                                  max_seq_length)
            for j in range(len(batch)):
                expected = [-1 if w is None else w for w in encoded.word_ids(start + j)]
                n = len(expected)
                assert aligned["word_ids"][j, :n].numpy().tolist() == expected, (kind, batch[j])
                assert aligned["input_ids"][j, :n].numpy().tolist() == (
                    encoded["input_ids"][start + j]), (kind, batch[j])
                # Each word's first piece is where word_ids first names it (-1: no piece).
                first = aligned["first_piece"][j, :len(batch[j])].numpy().tolist()
                assert first == [expected.index(w) if w in expected else -1
                                 for w in range(len(batch[j]))], (kind, batch[j])


@pytest.fixture(scope="session")
def tiny_vocab_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(TINY_VOCAB) + "\n", encoding="utf-8")
    return str(path)


def test_alignment_equals_hugging_face_word_ids(tiny_vocab_file):
    _assert_alignment_matches_hf(tiny_vocab_file, ADVERSARIAL_WORDS, 32)


@pytest.mark.large
@pytest.mark.integration
def test_alignment_equals_word_ids_on_all_wnut16_tweets(real_vocab):
    sentences = read_conll(WNUT).words
    assert len(sentences) == 2394
    _assert_alignment_matches_hf(real_vocab, sentences, 128)


# === Raw text: words with offsets, spans ===

ADVERSARIAL_TEXTS = [
    "ÉTÉ à PARIS, naïve Ⅻ straße İstanbul", "中国人 loves 🙂🙂 and 👩‍👩‍👧 emoji!",
    "zero\u200bwidth \u200b alone\x07bell \tTAB\u3000ideographic-space",
    "a\u0301e\u0308 combining ΣΑΣ ὈΔΥΣΣΕΎΣ", "", "   ", "x",
]


def test_split_text_in_graph_equals_python():
    import tensorflow as tf

    from bert_layer.text.alignment import split_text_tf

    words, starts, ends = split_text_tf(tf.constant(ADVERSARIAL_TEXTS))
    for i, text in enumerate(ADVERSARIAL_TEXTS):
        spans = split_text(text)
        assert list(zip(starts[i].numpy().tolist(), ends[i].numpy().tolist())) == spans
        assert [w.decode() for w in words[i].numpy()] == [text[a:b] for a, b in spans]
        assert "".join(text[a:b] for a, b in spans) == "".join(text.split())


class _EveryWordTagger:
    """A stand-in tagger: tags word i of each row B-film when i is even, I-film when odd."""

    tag_names = TAGS
    max_seq_length = 32

    def run(self, words):
        probabilities = np.zeros([*words.shape, len(TAGS)], np.float32)
        probabilities[:, 0::2, 1] = 0.9
        probabilities[:, 1::2, 2] = 0.8
        probabilities[..., 0] = 1 - probabilities.sum(-1)
        return probabilities, (words != "").astype(np.int32)


def test_spans_round_trip_on_adversarial_unicode():
    from bert_layer.inference.tagging import tag_texts

    for text, found in zip(ADVERSARIAL_TEXTS, tag_texts(_EveryWordTagger(), ADVERSARIAL_TEXTS)):
        spans = split_text(text)
        expected = [(spans[i][0], spans[min(i + 1, len(spans) - 1)][1])
                    for i in range(0, len(spans), 2)]
        assert [(e.start, e.end) for e in found] == expected
        for entity in found:
            assert text[entity.start:entity.end] == entity.text
            assert entity.label == "film"


@pytest.mark.large
def test_serving_entities_decode_as_seqeval(keras_tagger):
    import tensorflow as tf
    from seqeval.metrics.sequence_labeling import get_entities

    from bert_layer.inference.tagger_graphs import entities

    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(len(TAGS)) * 0.3, size=[6, 11]).astype(np.float32)
    n_words = np.array([11, 0, 5, 1, 11, 7])
    offsets = np.arange(11)[None, :].repeat(6, 0) * 3
    got = entities(tf.constant(probabilities), tf.constant(n_words), tf.constant(offsets),
                   tf.constant(offsets + 2), TAGS)
    for b in range(6):
        tags = [TAGS[k] for k in probabilities[b, :n_words[b]].argmax(-1)]
        expected = get_entities(tags)
        count = int(got["count"][b])
        assert count == len(expected)
        for e, (kind, first, last) in enumerate(expected):
            assert got["labels"][b, e].numpy().decode() == kind
            assert (int(got["starts"][b, e]), int(got["ends"][b, e])) == (
                first * 3, last * 3 + 2)
            assert float(got["scores"][b, e]) == pytest.approx(
                probabilities[b, first:last + 1].max(-1).mean(), abs=1e-6)


# === Long texts ===

@pytest.mark.parametrize("stride", [0, 3, 7])
def test_windows_cover_every_word_from_its_best_window(stride):
    rng = np.random.default_rng(stride)
    counts = rng.integers(0, 5, size=70)
    counts[10] = 40  # One word longer than a window.
    spans, best = windows(counts, 16, stride)
    cum = np.concatenate([[0], np.cumsum(counts)])
    assert spans[0][0] == 0 and spans[-1][1] == len(counts)
    for (s0, e0), (s1, _) in zip(spans, spans[1:]):
        assert s0 < s1 <= e0 and cum[e0] - cum[s1] <= stride  # Shared pieces.
    for s, e in spans:
        assert cum[e] - cum[s] <= 16 or e - s == 1
    for i, k in enumerate(best):
        s, e = spans[k]
        assert s <= i < e
        context = min(cum[i] - cum[s], cum[e] - cum[i + 1])
        assert all(context >= min(cum[i] - cum[a], cum[b] - cum[i + 1])
                   for a, b in spans if a <= i < b)


def test_a_long_text_is_tagged_in_windows_every_word_from_its_window(keras_tagger):
    from bert_layer.inference.tagging import tag_probabilities

    words = (["the", "movie", "unwanted", "he", "was", "great", "."] * 12)[:80]
    (probabilities,) = tag_probabilities(keras_tagger, [words], stride=6)
    assert probabilities.shape == (80, len(TAGS))
    counts = keras_tagger.run(np.array([words], object))[1][0]
    rows, origins = windowed([words], [counts], 30, 6)
    assert len(rows) > 2
    for row, (_, start, owned) in zip(rows, origins):
        alone = keras_tagger.run(np.array([row], object))[0][0]
        for j in np.flatnonzero(owned):
            np.testing.assert_allclose(probabilities[start + j], alone[j], atol=1e-5)


# === The trained tagger: saved, frozen, served ===

@pytest.fixture(scope="session")
def frozen_and_served(keras_tagger, tmp_path_factory) -> tuple[str, str]:
    from bert_layer.inference.tagger_graphs import freeze_tagger, write_serving_tagger

    folder = tmp_path_factory.mktemp("tagger_artifacts")
    frozen = str(folder / "tagger.pb")
    served = str(folder / "served")
    freeze_tagger(keras_tagger.model, frozen, tokenizer="core")
    write_serving_tagger(keras_tagger.model, served, tokenizer="core")
    return frozen, served


@pytest.mark.large
def test_frozen_equals_serving_equals_keras(keras_tagger, frozen_and_served):
    import tensorflow as tf

    from bert_layer.inference.tagging import load_tagger, tag_texts

    frozen, served = (load_tagger(p) for p in frozen_and_served)
    words = np.array([w + [""] * (40 - len(w)) for w in ADVERSARIAL_WORDS], object)
    expected = keras_tagger.run(words)
    for other in (frozen, served):
        assert other.tag_names == TAGS and other.max_seq_length == 32
        probabilities, counts = other.run(words)
        np.testing.assert_allclose(probabilities, expected[0], atol=1e-5)
        np.testing.assert_array_equal(counts, expected[1])
    texts = ADVERSARIAL_TEXTS + ["she said the movie was great and he did not like it ."]
    python = tag_texts(keras_tagger, texts)
    out = served._loaded.signatures["serving_default"](text=tf.constant(texts))
    assert out["untagged_words"].numpy().tolist() == [0] * len(texts)
    for b, found in enumerate(python):
        assert int(out["count"][b]) == len(found)
        for e, entity in enumerate(found):
            assert (int(out["starts"][b, e]), int(out["ends"][b, e])) == (entity.start,
                                                                          entity.end)
            assert out["labels"][b, e].numpy().decode() == entity.label
            assert float(out["scores"][b, e]) == pytest.approx(entity.score, abs=1e-5)
    assert [[e.as_dict() for e in f] for f in tag_texts(frozen, texts)] == [
        [pytest.approx(e.as_dict(), abs=1e-5) for e in f] for f in python]


@pytest.mark.large
def test_core_artifacts_predict_where_tensorflow_text_cannot_import(frozen_and_served,
                                                                     keras_tagger, tmp_path):
    from bert_layer.inference.tagging import tag_texts

    texts = tmp_path / "texts.txt"
    lines = ["she said the movie was great", "中国 🙂 ÉTÉ he"]
    texts.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, os.path.join(HERE, "tagger_no_tensorflow_text.py"), str(texts),
         str(tmp_path), *frozen_and_served], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = tag_texts(keras_tagger, lines)
    for i in range(2):
        with open(tmp_path / f"{i}.jsonl", encoding="utf-8") as f:
            records = [json.loads(line) for line in f]
        assert [r["text"] for r in records] == lines
        for record, found in zip(records, expected):
            assert [(e["start"], e["end"], e["label"]) for e in record["entities"]] == [
                (e.start, e.end, e.label) for e in found]


@pytest.mark.large
def test_a_tagger_copied_alone_predicts_the_same_spans(tagger_dir, keras_tagger, tmp_path):
    from bert_layer.inference.tagging import KerasTagger, tag_texts

    copy = tmp_path / "elsewhere" / "copy.keras"
    copy.parent.mkdir()
    shutil.copyfile(os.path.join(tagger_dir, "model.keras"), copy)
    texts = ["she said the movie was great", "ÉTÉ he unwanted 🙂"]
    moved = KerasTagger(str(copy))
    assert moved.tag_names == TAGS
    assert [[e.as_dict() for e in f] for f in tag_texts(moved, texts)] == [
        [e.as_dict() for e in f] for f in tag_texts(keras_tagger, texts)]


@pytest.mark.large
def test_predict_cli_text_lines_and_conll(tagger_dir, keras_tagger, conll_files, tmp_path):
    from bert_layer.inference.tagging import tag_probabilities, tag_texts, tags_of
    from bert_layer.training.tagger import entity_scores

    model = os.path.join(tagger_dir, "model.keras")
    lines = ["she said the movie was great", "", "ÉTÉ he"]
    code, out, err = run_cli(["predict", "--model", model, "--quiet"], stdin="\n".join(lines))
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    expected = tag_texts(keras_tagger, lines)
    assert records == [{"text": t, "entities": [pytest.approx(e.as_dict(), abs=1e-6)
                                                for e in f]} for t, f in zip(lines, expected)]
    _, dev = conll_files
    out_file = tmp_path / "pred.conll"
    code, printed, err = run_cli(["predict", "--model", model, "--input", dev, "--output",
                                  str(out_file), "--quiet"])
    assert code == 0, err
    gold = read_conll(dev)
    predicted = [tags_of(p, TAGS) for p in tag_probabilities(keras_tagger, gold.words)]
    written = read_conll(str(out_file))
    assert written.tags == predicted
    assert [[r.rsplit("\t", 1)[0] for r in rows] for rows in written.rows] == gold.rows
    scores = entity_scores(gold.tags, predicted)
    assert f"{scores['entity_f1']:.4f}" in printed.splitlines()[-1]
    with open(os.path.join(tagger_dir, "report.json"), encoding="utf-8") as f:
        report = json.load(f)
    best = report["best"]
    # The saved model is the best epoch's: its dev scores are the report's.
    assert best["val_entity_f1"] == pytest.approx(scores["entity_f1"], abs=1e-6)
    assert report["tagger"]["tag_names"] == TAGS
    for name in TYPES:
        assert best[f"val_{name}_f1"] == pytest.approx(scores[f"{name}_f1"], abs=1e-6)


def test_train_prints_one_short_line_an_epoch_and_keeps_the_per_type_scores(
        tiny_module_dir, conll_files, tmp_path, capsys):
    """Each epoch line has the losses and the entity-level scores, not four scores for every
    entity type (WNUT-16's lines were ~1,500 characters); report.json keeps them all."""
    from bert_layer.cli.main import main

    train, dev = conll_files
    out = str(tmp_path / "run")
    assert main(["train", "--task", "tag", "--module", tiny_module_dir, "--train", train,
                 "--dev", dev, "--out", out, "--epochs", "1", "--batch-size", "8",
                 "--fine-tune-layers", "1", "--max-seq-length", "32"]) == 0
    line, = [line for line in capsys.readouterr().out.splitlines()
             if line.startswith("epoch 1/1:")]
    names = line.split(": ", 1)[1].split("  (")[0].split()[::2]
    assert names == ["loss", "val_loss", "val_entity_f1", "val_entity_precision",
                     "val_entity_recall"], line
    with open(os.path.join(out, "report.json"), encoding="utf-8") as f:
        epoch, = json.load(f)["epochs"]
    for name in TYPES:
        for score in ("f1", "precision", "recall", "support"):
            assert f"val_{name}_{score}" in epoch


# === Resuming a killed training ===

@pytest.mark.large
def test_killed_tagger_training_resumes(tiny_module_dir, conll_files, tmp_path, capsys):
    from bert_layer.cli.main import main

    train, dev = conll_files
    out = str(tmp_path / "run")
    argv = ["train", "--task", "tag", "--module", tiny_module_dir, "--train", train, "--dev",
            dev, "--out", out, "--epochs", "2", "--batch-size", "8", "--fine-tune-layers", "1",
            "--max-seq-length", "32", "--learning-rate", "1e-3", "--quiet"]
    assert kill_after_first_epoch(argv, out, signal.SIGKILL) == 1
    assert not os.path.exists(out)
    assert main(argv + ["--resume"]) == 0
    assert "resumed at epoch 2" in capsys.readouterr().out
    with open(os.path.join(out, "report.json"), encoding="utf-8") as f:
        report = json.load(f)
    assert report["resumed_from_epoch"] == 2
    assert [e["epoch"] for e in report["epochs"]] == [1, 2]
    assert all("val_entity_f1" in e for e in report["epochs"])


def test_tag_loss_and_its_gradient_equal_pytorch_cross_entropy_even_for_unlikely_tags():
    """TagCrossentropy = torch's cross_entropy(ignore_index) over labelled words, value and
    gradient, also for a word whose right tag has p ~ 1e-12, which Keras's
    SparseCategoricalCrossentropy(ignore_class) cuts off (its log of probabilities clipped
    at 1e-7 gives that word no gradient)."""
    import keras
    import tensorflow as tf
    import torch

    from bert_layer.training.tagger import IGNORED, TagCrossentropy

    logits = np.random.default_rng(0).normal(size=(2, 5, 4)).astype(np.float32)
    logits[0, 1] = [28.0, 0.0, 0.0, 0.0]  # its label, tag 3, has p ~ 7e-13
    labels = np.array([[0, 3, IGNORED, 1, 2], [IGNORED, 1, 1, IGNORED, IGNORED]])

    def keras_loss(loss):
        z = tf.Variable(logits)
        with tf.GradientTape() as tape:
            value = loss(tf.constant(labels), tf.nn.softmax(z))
        return float(value), tape.gradient(value, z).numpy()

    z = torch.tensor(logits, requires_grad=True)
    expected = torch.nn.functional.cross_entropy(
        z.reshape(-1, 4), torch.tensor(labels).reshape(-1), ignore_index=IGNORED)
    expected.backward()
    value, gradient = keras_loss(TagCrossentropy())
    assert value == pytest.approx(expected.item(), rel=1e-5)
    np.testing.assert_allclose(gradient, z.grad.numpy(), atol=1e-6)
    assert abs(gradient[0, 1, 3]) > 0.1  # (p - 1) / 6 labelled words
    _, clipped = keras_loss(keras.losses.SparseCategoricalCrossentropy(ignore_class=IGNORED))
    assert clipped[0, 1, 3] == 0.0  # Why TagCrossentropy exists.


def test_tagger_head_starts_drawn_as_hugging_faces_token_classifier_and_anew_per_seed(
        tiny_module_dir):
    """The head's first kernel has the distribution of BertForTokenClassification's (normal,
    std 0.02; two-sample Kolmogorov-Smirnov on 51,232 values each), which google-research/
    bert's truncated normal fails (on WNUT-16 it cost ~4 entity F1, README); each
    `keras.utils.set_random_seed` draws another head, the same seed the same head."""
    import keras
    import torch
    from scipy.stats import ks_2samp
    from transformers import BertConfig, BertForTokenClassification

    from bert_layer.training.specs import TaggerSpec
    from bert_layer.training.tagger import build_tagger

    tags = tuple(tag_names([f"type{i}" for i in range(800)]))  # 1,601 tags x 32 = 51,232

    def our_kernel(seed: int) -> np.ndarray:
        keras.utils.set_random_seed(seed)
        model = build_tagger(TaggerSpec(tiny_module_dir, tags, fine_tune_layers=1,
                                        max_seq_length=32))
        return model.get_layer("tags").kernel.numpy()

    torch.manual_seed(0)
    theirs = BertForTokenClassification(BertConfig(
        vocab_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=1,
        intermediate_size=4, num_labels=len(tags), initializer_range=0.02))
    reference = theirs.classifier.weight.detach().numpy().ravel()
    ours = our_kernel(0)
    assert ours.size == reference.size == 51_232
    assert ks_2samp(ours.ravel(), reference).pvalue > 1e-3
    truncated = keras.initializers.TruncatedNormal(stddev=0.02, seed=0)(ours.shape)
    assert ks_2samp(np.asarray(truncated).ravel(), reference).pvalue < 1e-6
    np.testing.assert_array_equal(our_kernel(0), ours)
    assert not np.allclose(our_kernel(1), ours)
