"""bert_layer: BERT hub modules as Keras 3 layers, raw text in."""

__all__ = ["BertLayer"]


def __getattr__(name: str):
    # Imported lazily so that `bert-layer --help` and `bert_layer.outputs` need no TensorFlow.
    if name == "BertLayer":
        from bert_layer.layer import BertLayer
        return BertLayer
    raise AttributeError(f"module 'bert_layer' has no attribute {name!r}")
