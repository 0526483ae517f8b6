"""Runs one signature of a TF1 module's graph as a TF2 function that reads *our* variables.

The meta graph is imported with `import_graph_def`, each of its variables replaced by a
variable the caller owns (watched, so gradients reach it): a resource variable's handle by
ours, a TF 1.x reference variable's `<name>/read` (as in Google's published modules) by our
value. Both tag sets of a module can so share one set of Keras weights.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf
from tensorflow.core.framework import graph_pb2

from bert_layer.layers.hub_module import HubModule, _node_name

tf1 = tf.compat.v1
_REF_READ = "/read:0"  # HubModule.variable_nodes: how a reference variable is read.


def _without_nodes(graph_def: graph_pb2.GraphDef, names: set[str]) -> graph_pb2.GraphDef:
    """A copy of `graph_def` lacking the nodes `names` (their outputs are fed instead)."""
    pruned = graph_pb2.GraphDef()
    pruned.versions.CopyFrom(graph_def.versions)
    pruned.library.CopyFrom(graph_def.library)
    pruned.node.extend(n for n in graph_def.node if n.name not in names)
    return pruned


def _check_no_direct_reads(module: HubModule, graph_def: graph_pb2.GraphDef,
                           variables: set[str]) -> None:
    """A ref variable must be read through `<name>/read` only: we cannot feed a reference."""
    for node in graph_def.node:
        direct = sorted(v for v in map(_node_name, node.input) if v in variables)
        if direct:
            raise ValueError(
                f"{module.path}: node {node.name!r} ({node.op}) uses the variable {direct[0]!r} "
                f"itself; expected every read to go through its '/read' identity or a "
                f"resource handle.")


def import_signature(module: HubModule, tags: frozenset, signature: str,
                     input_specs: dict[str, tf.TensorSpec],
                     variables: dict[str, tf.Variable]) -> Callable[..., dict[str, tf.Tensor]]:
    """Returns a concrete function `f(*inputs in input_specs order) -> outputs dict`.

    Args:
      module: the module to run.
      tags: which meta graph (e.g. `frozenset({"train"})` for dropout).
      signature: the signature's name, e.g. "tokens".
      input_specs: the signature's inputs by name, in call order.
      variables: module variable name -> the tf.Variable to read instead.
    """
    graph_def, inputs, outputs = module.signature_graph(tags, signature)
    used = {n.name for n in graph_def.node}
    variable_tensors = {name: tensor for name, tensor in module.variable_nodes(tags).items()
                        if name in used}
    missing = sorted(set(variable_tensors) - set(variables))
    if missing:
        raise ValueError(f"{module.path}: the graph reads variables that were not provided: "
                         f"{missing[:5]}")
    unknown_inputs = sorted(set(input_specs) - set(inputs))
    if unknown_inputs:
        raise ValueError(f"Signature `{signature}` has no inputs {unknown_inputs} "
                         f"(it has {sorted(inputs)}).")
    # A module may take an input its graph never reads (e.g. segment_ids without token types):
    # it is accepted and not fed. Graph tensor -> position of its argument.
    feeds = {inputs[name]: i for i, name in enumerate(input_specs)
             if _node_name(inputs[name]) in used}
    # Drop the placeholders and variable ops we replace, so nothing of them runs; a ref
    # variable's `<name>/read` Identity goes too, since its value is what we feed.
    ref_variables = {name for name, t in variable_tensors.items() if t.endswith(_REF_READ)}
    replaced = {_node_name(t) for t in feeds} | set(variable_tensors) | {
        _node_name(variable_tensors[name]) for name in ref_variables}
    graph_def = _without_nodes(graph_def, replaced)
    _check_no_direct_reads(module, graph_def, ref_variables)
    output_names = sorted(outputs)

    def imported(*args: tf.Tensor) -> list[tf.Tensor]:
        graph = tf1.get_default_graph()
        input_map = {tensor: args[i] for tensor, i in feeds.items()}
        for name, tensor in variable_tensors.items():
            var = variables[name]
            graph.watch_variable(var)
            if name in ref_variables:  # Fed its value in place of `<name>/read`.
                input_map[tensor] = var.read_value()
            else:
                input_map[tensor] = graph.capture(var.handle)
        return tf1.import_graph_def(
            graph_def, input_map=input_map,
            return_elements=[outputs[name] for name in output_names], name="module")

    wrapped = tf1.wrap_function(imported, signature=list(input_specs.values()))

    def call(*args: tf.Tensor) -> dict[str, tf.Tensor]:
        return dict(zip(output_names, wrapped(*args)))

    return call
