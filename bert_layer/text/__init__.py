"""The text pipeline both sides share: vocabulary, Unicode tables, tokenizers, packing.

The exporter (`bert_layer.export`) and the Keras side (`bert_layer.layer`) both use it;
it imports neither.
"""
