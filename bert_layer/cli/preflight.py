"""The commands' input folders and files, checked before TensorFlow loads (which takes seconds):
a missing or wrong folder answers at once. No TensorFlow, no numpy here.

These check what a path holds (files, names, the checkpoint's JSON config), not its contents'
bytes: a truncated or corrupt file is found when it is read, after TensorFlow loads. The full
rules stay where the files are read (`bert_layer.layers.hub_module`, `bert_layer.export`).
"""

from __future__ import annotations

import glob
import os

# The names the readers use (bert_layer.layers.hub_module, bert_layer.export.checkpoint and
# .hf, bert_layer.inference.formats); those modules import TensorFlow, so not imported here.
SAVED_MODEL_FILE = "saved_model.pb"
VARIABLES_INDEX = os.path.join("variables", "variables.index")
BERT_CONFIG_FILE = "bert_config.json"
VOCAB_FILE = "vocab.txt"
HF_CONFIG_FILE = "config.json"
HF_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
HF_TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "spiece.model")  # spiece: ALBERT's.
# A serialized GraphDef starts with its first node (field 1, length-delimited): tag byte 0x0a.
GRAPH_DEF_FIRST_BYTE = b"\x0a"


def _found(folder: str) -> str:
    names = sorted(os.listdir(folder))
    return f"found {names[:8] + ['...'] if len(names) > 8 else names}"


def check_module_folder(path: str, flag: str = "--module") -> None:
    """A hub module folder: `saved_model.pb` and `variables/` (as `bert-layer export` writes)."""
    if not os.path.isdir(path):
        what = "a file" if os.path.exists(path) else "not found"
        raise FileNotFoundError(f"{flag} {path}: {what}; expected a hub module folder (from "
                                f"`bert-layer export`).")
    missing = [n for n in (SAVED_MODEL_FILE, VARIABLES_INDEX)
               if not os.path.isfile(os.path.join(path, n))]
    if missing:
        raise FileNotFoundError(f"{flag} {path} is not a hub module: {' and '.join(missing)} "
                                f"missing ({_found(path)}). Export one with `bert-layer export`.")


def check_checkpoint_folder(path: str) -> None:
    """A Google-format checkpoint folder: a vocabulary (`vocab.txt`, or ALBERT's SentencePiece
    `*.model`), a checkpoint (`*.index`), and a valid `bert_config.json` where there is one
    (ELECTRA's release has no config and ALBERT's its `albert_config.json`: export reads them
    by family, bert_layer.export.families)."""
    from bert_layer.export.config import BertConfig, read_json_object  # JSON only: no TF.

    missing = []
    if not (os.path.isfile(os.path.join(path, VOCAB_FILE))
            or glob.glob(os.path.join(glob.escape(path), "*.model"))):
        missing.append(f"{VOCAB_FILE} (or a SentencePiece .model)")
    if not glob.glob(os.path.join(glob.escape(path), "*.index")):
        missing.append("bert_model.ckpt.index (or another checkpoint's .index)")
    if missing:
        raise FileNotFoundError(f"--checkpoint {path} is not a BERT checkpoint folder: "
                                f"{', '.join(missing)} missing ({_found(path)}). A Hugging Face "
                                f"folder needs `bert-layer convert` first.")
    config_file = os.path.join(path, BERT_CONFIG_FILE)
    if os.path.isfile(config_file):
        BertConfig.from_dict(read_json_object(config_file, "BERT config"), source=config_file)


def check_hf_folder(path: str) -> None:
    """A Hugging Face model folder: `config.json` (a JSON object), weights and a vocabulary."""
    from bert_layer.export.config import read_json_object  # JSON only: no TF.

    def has(names):
        return any(os.path.isfile(os.path.join(path, n)) for n in names)

    missing = [" or ".join(names) for names in
               ((HF_CONFIG_FILE,), HF_WEIGHT_FILES, HF_TOKENIZER_FILES) if not has(names)]
    if missing:
        raise FileNotFoundError(f"{path} is not a Hugging Face model folder: {'; '.join(missing)} "
                                f"missing ({_found(path)}).")
    read_json_object(os.path.join(path, HF_CONFIG_FILE), "Hugging Face config")


def check_frozen_graph_file(path: str) -> None:
    """A `.pb` that can be a frozen graph: not empty, starting as a GraphDef with nodes does
    (the full parse needs TensorFlow's protobuf classes)."""
    with open(path, "rb") as f:
        first = f.read(1)
    if first != GRAPH_DEF_FIRST_BYTE:
        found = "it is empty" if not first else f"it starts with byte {first[0]:#04x}"
        raise ValueError(f"{path} is not a frozen graph written by `bert-layer freeze` ({found}; "
                         f"a GraphDef starts with {GRAPH_DEF_FIRST_BYTE[0]:#04x}).")


def check_inspect_path(path: str) -> None:
    """A module or SavedModel folder (or its `saved_model.pb`), a frozen graph or a `.tflite`
    file (read by `bert_layer.inference.formats.read_tflite`, without TensorFlow)."""
    expected = ("a hub module or SavedModel folder (with saved_model.pb), a frozen graph (.pb) "
                "or a .tflite file")
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, SAVED_MODEL_FILE)):
            raise FileNotFoundError(f"{path}: no {SAVED_MODEL_FILE} in this folder "
                                    f"({_found(path)}); expected {expected}.")
    elif not os.path.isfile(path):
        raise FileNotFoundError(f"Nothing to inspect at {path}: expected {expected}.")
    elif path.lower().endswith(".tflite"):
        from bert_layer.inference.formats import read_tflite  # No TensorFlow: flatbuffers.

        read_tflite(path)
    elif os.path.basename(path) != SAVED_MODEL_FILE:
        check_frozen_graph_file(path)
