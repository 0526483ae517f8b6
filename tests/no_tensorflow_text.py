"""Runs saved models in a Python that cannot import tensorflow_text: TensorFlow alone.

Usage: python no_tensorflow_text.py REQUEST.json OUT.npz. REQUEST names a core-tokenizer hub
module, frozen graph and serving SavedModel, the texts and the token ids to feed; OUT gets
each output under "<what>/<output>". Run by tests/test_serving.py, which compares them with
the same artifacts run in its own process.
"""

from __future__ import annotations

import importlib.abc
import json
import sys


class _BlockTensorflowText(importlib.abc.MetaPathFinder):
    """Makes `import tensorflow_text` fail, as in a process where it is not installed."""

    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow_text" or name.startswith("tensorflow_text."):
            raise ImportError(f"{name} is blocked in this process")
        return None


sys.meta_path.insert(0, _BlockTensorflowText())

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_hub as hub  # noqa: E402

tf1 = tf.compat.v1


def _hub_module(path: str, texts: list[str], ids: dict) -> dict:
    """The README's way: hub.load(path, tags=set()), then its signatures."""
    module = hub.load(path, tags=set())
    text = module.signatures["text"](text=tf.constant(texts))
    tokens = module.signatures["tokens"](**{k: tf.constant(v, tf.int32) for k, v in ids.items()})
    return {**{f"text/{k}": v.numpy() for k, v in text.items()},
            **{f"tokens/{k}": v.numpy() for k, v in tokens.items()}}


def _frozen_graph(path: str, texts: list[str]) -> dict:
    graph_def = tf1.GraphDef()
    with open(path, "rb") as f:
        graph_def.ParseFromString(f.read())
    with tf.Graph().as_default() as graph:
        tf.graph_util.import_graph_def(graph_def, name="")
        with tf1.Session(graph=graph) as session:
            probabilities = session.run("probabilities:0", {"text:0": texts})
    return {"frozen/probabilities": probabilities}


def _saved_model_tf2(path: str, texts: list[str], ids: dict) -> dict:
    loaded = tf.saved_model.load(path)
    text = loaded.signatures["serving_default"](text=tf.constant(texts))
    by_ids = loaded.signatures["ids"](**{k: tf.constant(v, tf.int32) for k, v in ids.items()})
    return {**{f"tf2/{k}": v.numpy() for k, v in text.items()},
            **{f"tf2_ids/{k}": v.numpy() for k, v in by_ids.items()}}


def _saved_model_tf1(path: str, texts: list[str]) -> dict:
    """The TF1 loader: the C++ LoadSavedModel path that TF Serving uses."""
    with tf.Graph().as_default() as graph, tf1.Session(graph=graph) as session:
        meta_graph = tf1.saved_model.load(session, ["serve"], path)
        signature = meta_graph.signature_def["serving_default"]
        outputs = session.run({k: v.name for k, v in signature.outputs.items()},
                              {signature.inputs["text"].name: texts})
    return {f"tf1/{k}": v for k, v in outputs.items()}


def main(request_file: str, out_file: str) -> None:
    with open(request_file, encoding="utf-8") as f:
        request = json.load(f)
    texts, ids = request["texts"], request["ids"]
    results = {**_hub_module(request["module"], texts, ids),
               **_frozen_graph(request["frozen"], texts),
               **_saved_model_tf2(request["saved_model"], texts, ids),
               **_saved_model_tf1(request["saved_model"], texts)}
    from bert_layer.inference.runtimes import load_classifier  # What `bert-layer predict` runs.
    for name in ("frozen", "saved_model"):
        results[f"classifier_{name}"] = load_classifier(request[name])(texts)
    try:
        import tensorflow_text  # noqa: F401
    except ImportError:
        pass
    else:
        raise AssertionError("tensorflow_text was importable: the block failed")
    results["tensorflow_text_loaded"] = np.array("tensorflow_text" in sys.modules)
    np.savez(out_file, **results)


if __name__ == "__main__":
    main(*sys.argv[1:])
