"""What the product offers, by name: plain data, no TensorFlow, imported from every layer.

One home for each rule the command line, the Keras side and the exporter share, so that
`bert-layer --help` and argument errors answer without loading TensorFlow.
"""

from __future__ import annotations

# How BertLayer may pool (None: the sequence output); `bert_layer.layers.pooling` implements
# them. "cls" is the pooler's tanh(dense(first token)); "first" the raw first-token state, as
# embedding models (sentence-transformers' CLS pooling, bge, e5, gte) use it.
POOLINGS = ("cls", "first", "mean", "max", None)
# One vector per text (a classifier's, or an embedding's).
VECTOR_POOLINGS = tuple(p for p in POOLINGS if p is not None)
# tf.distribute strategies `bert-layer train --distribute` offers (training/distribute.py).
DISTRIBUTE_CHOICES = ("none", "mirrored", "multi-worker")
# --precision value -> Keras dtype policy. Weights stay float32 under both.
PRECISIONS = {"fp32": "float32", "bf16": "mixed_bfloat16"}
# Wordpieces per sequence when nobody says otherwise (export's text signature, BertLayer,
# train, embed).
DEFAULT_MAX_SEQ_LENGTH = 128
# A multi-label model predicts every class whose probability is above this (the F1 metric
# that picks the best epoch counts the same way).
MULTI_LABEL_THRESHOLD = 0.5
# A classifier (single-label) needs at least this many classes.
MIN_CLASSES = 2
# Models `bert-layer convert --default NAME` converts from installed PyPI packages; the first
# is `--default` alone (bert_layer.export.convert.default_model_folder).
DEFAULT_MODELS = ("all-minilm-l6-v2", "all-mpnet-base-v2")
