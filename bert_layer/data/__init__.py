"""Reading labelled data: TSV/CSV tables, corpora, batches by length, checks before training.
No TensorFlow at import, except `batching` (tf.data)."""
