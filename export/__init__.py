"""The exporter: BERT checkpoints -> TF1 Hub modules. Installed as `bert_layer.export`.

It depends on `bert_layer.text` (the shared text pipeline), `bert_layer.contract` (the module's
names) and `bert_layer.outputs` (atomic outputs), and on nothing else of `bert_layer`; the
Keras side never imports it.
"""

if __name__ != "bert_layer.export":  # E.g. `import export` from the repository root.
    raise ImportError(f"This folder installs as bert_layer.export; import it under that name "
                      f"(found it as {__name__!r}).")
