"""Training jobs: specs (no TensorFlow), the task models, `fit`, backups for `--resume` and
`tf.distribute`."""
