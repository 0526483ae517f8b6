"""Batch inference on Apache Beam (skipped without `pip install "bert_layer[beam]"`): the
pipeline's probabilities are `bert-layer predict`'s, in input order."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest

pytest.importorskip("apache_beam")

from real_data import DATA_DIR  # noqa: E402

from bert_layer.cli.main import main  # noqa: E402
from bert_layer.data.batching import estimate_length  # noqa: E402
from bert_layer.inference.beam import ClassifierModelHandler, Prediction, run_predict_pipeline  # noqa: E402

TEXTS = ["the movie was great .", "bad", "i love this film , it was so much fun !",
         "boring", "the plot was not good but the actors were very good .", "fun",
         "a story", "it is what it is", "the worst film of all", "no"]


class RecordingClassifier:
    """A `Classifier` whose probabilities are a function of each text alone."""

    class_names = ["short", "long"]
    multi_label = False

    def __init__(self):
        self.calls: list[list[str]] = []

    def __call__(self, texts) -> np.ndarray:
        self.calls.append(list(texts))
        lengths = np.array([len(t) for t in texts], np.float32)
        return np.stack([1 / (1 + lengths), lengths / (1 + lengths)], axis=1)


def test_handler_groups_lengths_inside_each_batch_and_keeps_order():
    handler = ClassifierModelHandler("unused.keras", batch_size=3)
    model = RecordingClassifier()
    results = list(handler.run_inference(TEXTS, model))
    assert [r.example for r in results] == TEXTS
    expected = RecordingClassifier()(TEXTS)
    for result, row in zip(results, expected):
        assert isinstance(result.inference, Prediction)
        np.testing.assert_array_equal(result.inference.probabilities, row)
        assert result.inference.class_names == ("short", "long")
    # Sub-batches of 3, longest first: the model never sees a long text beside short ones.
    assert [len(call) for call in model.calls] == [3, 3, 3, 1]
    lengths = [estimate_length(t) for call in model.calls for t in call]
    assert lengths == sorted(lengths, reverse=True)
    assert handler.batch_elements_kwargs()["max_batch_size"] == 24


def _read_csv(path: str) -> tuple[list[str], list[str], np.ndarray]:
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    body = rows[1:]
    return ([r[0] for r in body], [r[1] for r in body],
            np.array([[float(x) for x in r[2:]] for r in body]))


@pytest.fixture(scope="module")
def models(tiny_module_dir, tmp_path_factory) -> dict[str, str]:
    """An untrained classifier (random head) as .keras and as a frozen .pb."""
    from bert_layer.inference.freeze import freeze_model
    from bert_layer.training.classifier import ClassifierSpec, build_classifier

    model = build_classifier(ClassifierSpec(tiny_module_dir, ("neg", "pos"), max_seq_length=32))
    dense = model.get_layer("probabilities")
    dense.kernel.assign(np.random.default_rng(0).normal(size=dense.kernel.shape))
    folder = tmp_path_factory.mktemp("beam_models")
    model.save(str(folder / "model.keras"))
    freeze_model(model, str(folder / "model.pb"), class_names=["neg", "pos"])
    return {"keras": str(folder / "model.keras"), "frozen": str(folder / "model.pb")}


@pytest.mark.large
@pytest.mark.parametrize("kind", ["keras", "frozen"])
def test_pipeline_gives_the_probabilities_of_predict_in_input_order(kind, models, tmp_path):
    from bert_layer.inference.predict import predict_probabilities
    from bert_layer.inference.runtimes import load_classifier

    out = str(tmp_path / "predictions.csv")
    run_predict_pipeline(models[kind], TEXTS * 3, out, fmt="csv", batch_size=4)
    texts, labels, probabilities = _read_csv(out)
    classifier = load_classifier(models[kind])
    expected = predict_probabilities(classifier, TEXTS * 3, batch_size=4)
    assert texts == TEXTS * 3
    # Written with 6 decimals; batches differ from predict's, so allow the last digit.
    np.testing.assert_allclose(probabilities, expected, atol=1.5e-6, rtol=0)
    assert labels == [classifier.class_names[i] for i in expected.argmax(axis=1)]
    assert os.listdir(tmp_path) == ["predictions.csv"]


def test_beam_runner_needs_an_output_file(models, capsys):
    assert main(["predict", "--model", models["keras"], "--runner", "beam"]) == 2
    assert "--runner beam writes a file: pass --output" in capsys.readouterr().err


@pytest.mark.integration
def test_two_worker_processes_over_sst2_dev_match_bert_layer_predict(models, tmp_path):
    dev = os.path.join(DATA_DIR, "sst2", "glue_dev.tsv")
    if not os.path.isfile(dev):
        pytest.skip(f"Not found: {dev}")
    local, beam = str(tmp_path / "local.csv"), str(tmp_path / "beam.csv")
    common = ["predict", "--model", models["keras"], "--input", dev]
    assert main(common + ["--output", local]) == 0
    assert main(common + ["--output", beam, "--runner", "beam",
                          "--beam-option=--direct_num_workers=2",
                          "--beam-option=--direct_running_mode=multi_processing"]) == 0
    local_texts, local_labels, local_p = _read_csv(local)
    beam_texts, beam_labels, beam_p = _read_csv(beam)
    assert len(local_texts) == 872 and beam_texts == local_texts
    np.testing.assert_allclose(beam_p, local_p, atol=1.5e-6, rtol=0)
    assert beam_labels == local_labels
