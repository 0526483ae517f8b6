"""`import bert_layer` registers its serializable classes for any later `load_model`, in a
fresh process, without importing TensorFlow itself."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Checks that loading works and the compiled model's custom objects came back as our classes.
LOAD = """
import keras
model = keras.models.load_model({path!r})
f1 = keras.saving.get_registered_object("bert_layer>F1Score")  # Compiled metrics build lazily.
print(type(model.get_layer("bert")).__name__, type(model.optimizer._learning_rate).__name__,
      f1 and f1.__name__)
"""
EXPECTED = "BertLayer WarmupLinearDecay F1Score"


@pytest.fixture(scope="module")
def saved_model(tiny_module_dir, tmp_path_factory) -> str:
    from bert_layer.training.classifier import ClassifierSpec, build_classifier
    from bert_layer.training.train import TrainConfig, compile_classifier

    model = build_classifier(ClassifierSpec(tiny_module_dir, ("a", "b"), max_seq_length=32))
    compile_classifier(model, TrainConfig(), 2, False, steps=10)
    import tensorflow as tf

    one = tf.data.Dataset.from_tensors((["the movie was great ."], [[0.0, 1.0]]))
    model.evaluate(one, verbose=0)  # Builds the compiled metrics and the optimizer's config.
    path = str(tmp_path_factory.mktemp("saved") / "model.keras")
    model.save(path)
    return path


def _run(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


@pytest.mark.large
def test_import_bert_layer_alone_registers_without_importing_tensorflow(saved_model):
    code = ("import sys, bert_layer\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
            + LOAD.format(path=saved_model))
    assert _run(code) == EXPECTED


@pytest.mark.large
@pytest.mark.parametrize("first", ["bert_layer.layers.layer", "bert_layer.training.classifier",
                                   "bert_layer.training.train"])
def test_any_module_imported_first_registers_all(first, saved_model):
    # keras is first imported from inside `first`, while it is half-initialised.
    assert _run(f"import {first}\n" + LOAD.format(path=saved_model)) == EXPECTED


@pytest.mark.large
def test_without_import_bert_layer_loading_fails(saved_model):
    """The reference: what the registration fixes (keras cannot find the classes)."""
    result = subprocess.run([sys.executable, "-c", LOAD.format(path=saved_model)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode != 0 and "BertLayer" in result.stderr
