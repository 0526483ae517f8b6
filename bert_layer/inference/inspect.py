"""What a saved model holds: tag sets, signatures, variables, and ops outside core TensorFlow.

Reads the files only (protos and the variables' index), so it works on a hub module, a
SavedModel or a frozen graph whatever ops they use; the op audit asks a fresh Python
(bert_layer.inference.custom_ops.audit_ops).
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import graph_pb2, tensor_shape_pb2

from bert_layer.contract import SAVED_MODEL_FILE, VARIABLES_PREFIX, read_saved_model
from bert_layer.inference.custom_ops import audit_ops, graph_op_types
from bert_layer.inference.formats import TFLITE_SUFFIX, read_graph_def, read_tflite

HUB_MODULE_FILE = "tfhub_module.pb"
_OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"  # The TF2 checkpoint's own bookkeeping.


@dataclasses.dataclass(frozen=True)
class TensorSpecInfo:
    key: str  # The name callers use (signature key, or the node name).
    tensor: str  # The tensor in the graph.
    dtype: str
    shape: str  # e.g. "[?, 128]", or "unknown rank"


@dataclasses.dataclass(frozen=True)
class SignatureInfo:
    name: str
    inputs: tuple[TensorSpecInfo, ...]
    outputs: tuple[TensorSpecInfo, ...]


@dataclasses.dataclass(frozen=True)
class Inspection:
    path: str
    kind: str  # "TF1 Hub module", "SavedModel" or "frozen graph"
    signatures: dict[str, tuple[SignatureInfo, ...]]  # By tag set, e.g. "{serve}".
    variables: int
    parameters: int
    variable_bytes: int
    non_core_ops: dict[str, str | None]  # Op type -> pip package (None: unknown).
    notes: tuple[str, ...] = ()  # Further lines (a .tflite's ops, precision, class names).

    def text(self) -> str:
        lines = [f"{self.path}: {self.kind}"]
        for tags, signatures in self.signatures.items():
            lines.append(f"tag set {tags}:")
            for signature in signatures:
                lines.append(f"  signature {signature.name}")
                for label, specs in (("in ", signature.inputs), ("out", signature.outputs)):
                    for s in specs:
                        lines.append(f"    {label} {s.key:<16} {s.dtype:<8} {s.shape:<14} "
                                     f"({s.tensor})")
        lines.append(f"variables: {self.variables} tensors, {self.parameters:,} values, "
                     f"{self.variable_bytes / 2 ** 20:.1f} MiB")
        ops = [f"{op} ({package or 'unknown package'})"
               for op, package in sorted(self.non_core_ops.items())]
        lines.append(f"ops not in core TensorFlow: {', '.join(ops) if ops else 'none'}")
        return "\n".join(lines + list(self.notes))


def _shape(shape: tensor_shape_pb2.TensorShapeProto) -> str:
    if shape.unknown_rank:
        return "unknown rank"
    return "[" + ", ".join("?" if d.size < 0 else str(d.size) for d in shape.dim) + "]"


def _dtype(enum: int) -> str:
    return tf.dtypes.as_dtype(enum).name if enum else "?"


def _signature_infos(signature_defs) -> tuple[SignatureInfo, ...]:
    def specs(tensors) -> tuple[TensorSpecInfo, ...]:
        return tuple(TensorSpecInfo(key, t.name, _dtype(t.dtype), _shape(t.tensor_shape))
                     for key, t in sorted(tensors.items()))
    return tuple(SignatureInfo(name, specs(s.inputs), specs(s.outputs))
                 for name, s in sorted(signature_defs.items()))


def _variable_sizes(folder: str) -> tuple[int, int, int]:
    """(tensors, values, bytes) of the checkpoint in `folder`/variables (strings: 0 bytes)."""
    if not os.path.isfile(os.path.join(folder, VARIABLES_PREFIX + ".index")):
        return 0, 0, 0
    reader = tf.train.load_checkpoint(os.path.join(folder, VARIABLES_PREFIX))
    shapes, dtypes = reader.get_variable_to_shape_map(), reader.get_variable_to_dtype_map()
    names = [n for n in shapes if not n.startswith(_OBJECT_GRAPH_KEY)]
    values = {n: math.prod(shapes[n]) for n in names}
    size = sum(values[n] * (dtypes[n].size if dtypes[n] != tf.string else 0) for n in names)
    return len(names), sum(values.values()), size


def _inspect_saved_model(folder: str) -> Inspection:
    saved_model = read_saved_model(folder)
    signatures, ops = {}, set()
    for meta_graph in saved_model.meta_graphs:
        tags = "{" + ", ".join(sorted(meta_graph.meta_info_def.tags)) + "}"
        signatures[tags] = _signature_infos(
            {k: v for k, v in meta_graph.signature_def.items() if not k.startswith("__")})
        ops |= graph_op_types(meta_graph.graph_def)
    hub = os.path.isfile(os.path.join(folder, HUB_MODULE_FILE))
    return Inspection(folder, "TF1 Hub module" if hub else "SavedModel", signatures,
                      *_variable_sizes(folder), non_core_ops=audit_ops(ops))


def _frozen_signature(graph_def: graph_pb2.GraphDef) -> SignatureInfo:
    """Placeholders in; out, the nodes that nothing reads (e.g. probabilities, class_names)."""
    read = {i.split(":")[0].lstrip("^") for n in graph_def.node for i in n.input}
    inputs = tuple(TensorSpecInfo(n.name, f"{n.name}:0", _dtype(n.attr["dtype"].type),
                                  _shape(n.attr["shape"].shape))
                   for n in graph_def.node if n.op == "Placeholder")
    outputs = []
    for n in graph_def.node:
        if n.name in read or n.op in ("Placeholder", "NoOp"):
            continue
        dtype = n.attr["dtype"].type or n.attr["T"].type
        shape = (_shape(n.attr["value"].tensor.tensor_shape) if n.op == "Const" else "?")
        outputs.append(TensorSpecInfo(n.name, f"{n.name}:0", _dtype(dtype), shape))
    return SignatureInfo("(graph)", inputs, tuple(outputs))


def _inspect_frozen_graph(path: str) -> Inspection:
    graph_def = read_graph_def(path)
    return Inspection(path, "frozen graph (variables are constants)",
                      {"(none: a GraphDef)": (_frozen_signature(graph_def),)}, 0, 0, 0,
                      non_core_ops=audit_ops(graph_op_types(graph_def)))


def _inspect_tflite(path: str) -> Inspection:
    """A .tflite: its inputs and outputs, builtin and custom ops, weights, and bert_layer's
    metadata when it has it."""
    from tensorflow.lite.tools import flatbuffer_utils

    with open(path, "rb") as f:
        data = f.read()
    try:
        model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
        subgraph = model.subgraphs[0]
    except Exception:  # noqa: BLE001 (the flatbuffer reader raises anything on bad bytes)
        raise ValueError(f"{path} is not a readable TFLite model (truncated or "
                         f"corrupt).") from None
    types = {v: k.lower() for k, v in vars(flatbuffer_utils.schema_fb.TensorType).items()
             if not k.startswith("_")}

    def spec(index: int) -> TensorSpecInfo:
        tensor = subgraph.tensors[index]
        dims = tensor.shapeSignature if tensor.shapeSignature is not None else tensor.shape
        shape = "[" + ", ".join("?" if d < 0 else str(d) for d in dims) + "]"
        name = tensor.name.decode()
        return TensorSpecInfo(name, name, types.get(tensor.type, "?"), shape)

    operators = {v: k for k, v in vars(flatbuffer_utils.schema_fb.BuiltinOperator).items()
                 if not k.startswith("_")}
    builtin, custom = set(), {}
    for code in model.operatorCodes:
        if code.customCode:
            custom[code.customCode.decode()] = None
        else:
            builtin.add(operators.get(max(code.builtinCode, code.deprecatedBuiltinCode), "?"))
    constant = [t for t in subgraph.tensors if model.buffers[t.buffer].data is not None]
    values = sum(int(np.prod(t.shape)) for t in constant if t.shape is not None)
    size = sum(len(model.buffers[t.buffer].data) for t in constant)
    notes = [f"builtin ops: {', '.join(sorted(builtin))}",
             f"custom ops (Flex included): {', '.join(sorted(custom)) or 'none'}"]
    try:
        bundle = read_tflite(path)
        notes += [f"precision: {bundle.precision}",
                  f"class names: {', '.join(bundle.class_names)}",
                  f"tokenizer (outside the model): {len(bundle.vocab)} wordpieces, "
                  f"{'lower-cased' if bundle.do_lower_case else 'cased'}, max length "
                  f"{bundle.max_seq_length}; metadata for the TFLite Task Library's "
                  f"BertNLClassifier"]
    except ValueError:
        notes.append("metadata: none from bert-layer freeze")
    signature = SignatureInfo("(model)", tuple(spec(i) for i in subgraph.inputs),
                              tuple(spec(i) for i in subgraph.outputs))
    return Inspection(path, "TFLite model (LiteRT)", {"(none: a TFLite model)": (signature,)},
                      len(constant), values, size, non_core_ops=custom, notes=tuple(notes))


def inspect_path(path: str | os.PathLike) -> Inspection:
    """Inspects a hub module or SavedModel folder, or a frozen graph (.pb file)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, SAVED_MODEL_FILE)):
            raise FileNotFoundError(f"{path} is a folder without {SAVED_MODEL_FILE}: expected a "
                                    f"hub module or SavedModel folder, or a frozen graph file.")
        return _inspect_saved_model(path)
    if os.path.basename(path) == SAVED_MODEL_FILE:
        return _inspect_saved_model(os.path.dirname(path) or ".")
    if not os.path.exists(path):
        raise FileNotFoundError(f"Nothing to inspect at {path}: expected a hub module or "
                                f"SavedModel folder, a frozen graph (.pb) or a .tflite file.")
    if path.lower().endswith(TFLITE_SUFFIX):
        return _inspect_tflite(path)
    return _inspect_frozen_graph(path)
