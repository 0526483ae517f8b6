"""bert_layer: BERT hub modules as Keras 3 layers, raw text in."""

import importlib

import wrapt  # A TensorFlow dependency; light (no TensorFlow import).

__all__ = ["BertLayer"]

# Every module that defines classes registered with `keras.saving.register_keras_serializable`
# (WindowPooling, BertLayer, WordBertLayer, ClassifierHead, F1Score,
# PositiveWeightedBinaryCrossentropy, RegressionHead, WarmupLinearDecay, RowSummingAdamW,
# TaggerHead, TagCrossentropy), in import-dependency order: each imports only modules before it.
# tests/test_structure.py checks that the list names every such module.
_SERIALIZABLE_MODULES = ("bert_layer.layers.window_pooling", "bert_layer.layers.layer",
                         "bert_layer.layers.word_layer",
                         "bert_layer.training.classifier", "bert_layer.training.regressor",
                         "bert_layer.training.train", "bert_layer.training.tagger")


def __getattr__(name: str):
    # Imported lazily so that `bert-layer --help` and `bert_layer.outputs` need no TensorFlow.
    if name == "BertLayer":
        from bert_layer.layers.layer import BertLayer
        return BertLayer
    raise AttributeError(f"module 'bert_layer' has no attribute {name!r}")


def _importer(name: str):
    def import_module(_module) -> None:
        importlib.import_module(name)
    return import_module


def _register_serializables_when_keras_loads() -> None:
    """`import bert_layer` makes `keras.models.load_model` find our classes in any process,
    without importing TensorFlow itself: the modules defining them are imported as soon as
    keras is (wrapt post-import hooks run at once if it already is).

    A chain (keras -> layer -> classifier -> train), one hook each, rather than one hook that
    imports all three: when keras is first imported from inside `bert_layer.layers.layer`, the keras
    hook runs while that module is half-initialised, and importing `bert_layer.training.classifier`
    then (which needs `BertLayer`) would fail. Each link waits for the previous module to be
    complete; importing a module that is half-initialised is a no-op, and it registers its
    classes itself when it completes.
    """
    triggers = ("keras",) + _SERIALIZABLE_MODULES[:-1]
    for trigger, module in zip(triggers, _SERIALIZABLE_MODULES):
        wrapt.register_post_import_hook(_importer(module), trigger)


_register_serializables_when_keras_loads()
