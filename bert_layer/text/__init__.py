"""The text pipeline both sides share: vocabulary, Unicode tables, tokenizers, packing.

The exporter (`bert_layer.export`) and the Keras side (`bert_layer.layers.layer`) both use it;
it imports neither.
"""

# The tokenizers `bert_layer.text.tokenizer.make_tokenizer` makes, by name (here, without
# TensorFlow, so that the command line can offer them as choices).
TOKENIZER_NAMES = ("graph", "core", "numpy")
# Those a saved graph (hub module, frozen graph, SavedModel) can hold: no Python inside.
SAVABLE_TOKENIZERS = ("graph", "core")
