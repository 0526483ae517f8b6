"""Reading a TF1 Hub format module without TF1 Hub: meta graphs, variables, signatures.

A module folder holds `saved_model.pb` with one meta graph per tag set, the
variables they share in `variables/`, and assets. This file knows that format
and nothing about BERT: any module with a `tokens` signature (ids, mask,
segments in; `pooled_output`, `sequence_output` out) and a `tokenization_info`
signature (`vocab_file`, `do_lower_case`) will do.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import graph_pb2, node_def_pb2
from tensorflow.core.protobuf import meta_graph_pb2

from bert_layer.contract import (
    KEEP_ACCENTS_OUTPUT,
    SAVED_MODEL_FILE,
    SP_MODEL_FILE_OUTPUT,
    TOKEN_INPUTS,
    TOKEN_OUTPUTS,
    TOKENIZATION_INFO_SIGNATURE,
    TOKENS_SIGNATURE,
    VARIABLES_PREFIX,
    VOCAB_FILE_OUTPUT,
    VOCAB_HASH_OUTPUT,
    read_saved_model,
)
from bert_layer.text.vocab import (
    BERT_SPECIAL_TOKENS,
    SPECIAL_TOKENS,
    SpecialTokens,
    file_sha256,
)

ASSETS_COLLECTION = "saved_model_assets"  # tf.compat.v1.saved_model.ASSETS_KEY
# The config bert_layer's exporter bundles; its `model_type` names a family other than BERT
# (whose special tokens the packing uses). Google's modules have none: BERT.
CONFIG_ASSET = os.path.join("assets", "bert_config.json")
# Op types that hold a variable; the imported graph reads ours in their place.
_RESOURCE_VARIABLE_OPS = ("VarHandleOp",)
_REF_VARIABLE_OPS = ("VariableV2", "Variable")


@dataclasses.dataclass(frozen=True)
class TokenizationInfo:
    vocab_file: str  # A WordPiece vocab.txt, or a SentencePiece model (ALBERT's .model).
    do_lower_case: bool
    keep_accents: bool = False  # SentencePiece only: ALBERT's accent stripping skipped.
    sentencepiece: bool = False  # The signature gave `sp_model_file` (ALBERT's modules).
    # The family's (assets/bert_config.json's `model_type`; MPNet's `<s>`, `</s>`, `<pad>`).
    special_tokens: SpecialTokens = BERT_SPECIAL_TOKENS


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]


def _node_name(tensor_name: str) -> str:
    return tensor_name.split(":")[0].lstrip("^")


class HubModule:
    """A TF1 Hub format module on disk, read once.

    Args:
      path: the module folder (holding `saved_model.pb` and `variables/`).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.path.abspath(os.fspath(path))
        pb_file = os.path.join(self.path, SAVED_MODEL_FILE)
        if not os.path.isdir(self.path):
            raise FileNotFoundError(f"Hub module folder not found: {path}")
        if not os.path.isfile(pb_file):
            raise FileNotFoundError(
                f"{path} is not a hub module: {SAVED_MODEL_FILE} is missing "
                f"(found {sorted(os.listdir(self.path))}). Export one with `bert-layer export`.")
        saved_model = read_saved_model(self.path, remedy="export the module again")
        self.meta_graphs: dict[frozenset, meta_graph_pb2.MetaGraphDef] = {
            frozenset(mg.meta_info_def.tags): mg for mg in saved_model.meta_graphs}
        self._check_signature(TOKENS_SIGNATURE, TOKEN_INPUTS, TOKEN_OUTPUTS)
        self._check_signature(TOKENIZATION_INFO_SIGNATURE, (), ("do_lower_case",))
        self._vocab_output()  # BERT's `vocab_file` or ALBERT's `sp_model_file`.

    def meta_graph(self, tags: frozenset) -> meta_graph_pb2.MetaGraphDef:
        """The meta graph for `tags`, or the inference graph ({}) if the module lacks them."""
        if tags in self.meta_graphs:
            return self.meta_graphs[tags]
        if frozenset() in self.meta_graphs:
            return self.meta_graphs[frozenset()]
        raise ValueError(f"{self.path} has no meta graph tagged {set(tags) or '{}'} "
                         f"(available: {[set(t) for t in self.meta_graphs]}).")

    def has_signature(self, name: str) -> bool:
        """True if every meta graph has the signature `name`."""
        return all(name in mg.signature_def for mg in self.meta_graphs.values())

    def check_token_signature(self, name: str) -> None:
        """Raises ValueError unless signature `name` takes and gives what `tokens` does."""
        self._check_signature(name, TOKEN_INPUTS, TOKEN_OUTPUTS)

    def _check_signature(self, name: str, inputs: tuple[str, ...],
                         outputs: tuple[str, ...]) -> None:
        for tags, meta_graph in self.meta_graphs.items():
            signatures = meta_graph.signature_def
            if name not in signatures:
                raise ValueError(
                    f"{self.path} (tags {set(tags) or '{}'}) lacks the `{name}` signature "
                    f"(available signatures: {sorted(signatures)}).")
            signature = signatures[name]
            missing = [k for k in inputs if k not in signature.inputs]
            missing += [k for k in outputs if k not in signature.outputs]
            if missing:
                raise ValueError(
                    f"{self.path}: signature `{name}` lacks {missing} (has inputs "
                    f"{sorted(signature.inputs)}, outputs {sorted(signature.outputs)}).")

    def _variables_reader(self):
        prefix = os.path.join(self.path, VARIABLES_PREFIX)
        try:
            return tf.train.load_checkpoint(prefix)
        except (tf.errors.OpError, ValueError) as e:
            raise ValueError(f"{self.path}: cannot read the module's variables ({_first_line(e)}"
                             f"); expected complete variables/variables.index and .data-* "
                             f"files: export the module again.") from None

    def variable_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every variable stored in the module: its shape, by its name in the module."""
        shapes = self._variables_reader().get_variable_to_shape_map()
        return {name: tuple(shape) for name, shape in sorted(shapes.items())}

    def variable_values(self) -> dict[str, np.ndarray]:
        """Every variable stored in the module, by its name in the module."""
        reader = self._variables_reader()
        try:
            return {name: reader.get_tensor(name)
                    for name in sorted(reader.get_variable_to_shape_map())}
        except (tf.errors.OpError, IndexError, ValueError) as e:  # A truncated .data shard.
            raise ValueError(f"{self.path}: cannot read the module's variables ({_first_line(e)}"
                             f"); expected complete variables/variables.data-* files (truncated "
                             f"copy?): copy or export the module again.") from None

    def variable_nodes(self, tags: frozenset) -> dict[str, str]:
        """Variable name -> the tensor in the graph that stands for its value or handle."""
        nodes = {}
        for node in self.meta_graph(tags).graph_def.node:
            if node.op in _RESOURCE_VARIABLE_OPS:
                nodes[node.name] = f"{node.name}:0"
            elif node.op in _REF_VARIABLE_OPS:
                # Ref variables are read through `<name>/read`; we feed that.
                nodes[node.name] = f"{node.name}/read:0"
        return nodes

    def signature_graph(self, tags: frozenset, signature: str) -> tuple[
            graph_pb2.GraphDef, dict[str, str], dict[str, str]]:
        """The part of the graph a signature needs, with its input and output tensor names."""
        meta_graph = self.meta_graph(tags)
        sig = meta_graph.signature_def[signature]
        outputs = {k: v.name for k, v in sig.outputs.items()}
        inputs = {k: v.name for k, v in sig.inputs.items()}
        graph_def = tf.compat.v1.graph_util.extract_sub_graph(
            meta_graph.graph_def, sorted({_node_name(n) for n in outputs.values()}))
        _keep_called_functions(graph_def)
        return graph_def, inputs, outputs

    def _vocab_output(self) -> str:
        """`vocab_file` (BERT's modules) or `sp_model_file` (ALBERT's), whichever all have."""
        for name in (VOCAB_FILE_OUTPUT, SP_MODEL_FILE_OUTPUT):
            if all(name in mg.signature_def[TOKENIZATION_INFO_SIGNATURE].outputs
                   for mg in self.meta_graphs.values()):
                return name
        outputs = sorted(self.meta_graph(frozenset()).signature_def[
            TOKENIZATION_INFO_SIGNATURE].outputs)
        raise ValueError(f"{self.path}: signature `{TOKENIZATION_INFO_SIGNATURE}` lacks "
                         f"['{VOCAB_FILE_OUTPUT}'] (or ALBERT's ['{SP_MODEL_FILE_OUTPUT}']); "
                         f"it has outputs {outputs}.")

    def tokenization_info(self) -> TokenizationInfo:
        """The vocabulary (resolved inside this module's `assets/`) and casing."""
        meta_graph = self.meta_graph(frozenset())
        sig = meta_graph.signature_def[TOKENIZATION_INFO_SIGNATURE]
        nodes = {n.name: n for n in meta_graph.graph_def.node}
        assets = _asset_files(meta_graph)
        vocab_output = self._vocab_output()
        asset = _find_asset(_node_name(sig.outputs[vocab_output].name), nodes, assets)
        if asset is None:
            raise ValueError(f"{self.path}: tokenization_info's {vocab_output} is not a bundled "
                             f"asset (assets: {sorted(assets.values())}).")
        vocab_file = os.path.join(self.path, "assets", asset)
        if not os.path.isfile(vocab_file):
            raise FileNotFoundError(f"{self.path}: the vocabulary asset {vocab_file} is missing.")
        sentencepiece = vocab_output == SP_MODEL_FILE_OUTPUT
        if sentencepiece and not vocab_file.endswith(".model"):
            raise ValueError(f"{self.path}: tokenization_info's {vocab_output} is {asset}; a "
                             f"SentencePiece model file ends in .model.")
        self._check_vocab_asset(vocab_file, sig, nodes, sentencepiece)
        keep_accents = (KEEP_ACCENTS_OUTPUT in sig.outputs
                        and self._constant(nodes, sig, KEEP_ACCENTS_OUTPUT))
        return TokenizationInfo(vocab_file=vocab_file,
                                do_lower_case=self._constant(nodes, sig, "do_lower_case"),
                                keep_accents=keep_accents, sentencepiece=sentencepiece,
                                special_tokens=self.special_tokens())

    def _constant(self, nodes: dict, sig, output: str) -> bool:
        node = nodes[_node_name(sig.outputs[output].name)]
        if node.op != "Const":
            raise ValueError(f"{self.path}: tokenization_info's {output} must be a "
                             f"constant; found a {node.op} op.")
        return bool(tf.make_ndarray(node.attr["value"].tensor))

    def _check_vocab_asset(self, vocab_file: str, sig, nodes: dict,
                           sentencepiece: bool = False) -> None:
        """The asset is the vocabulary the module was exported with: the hash recorded at
        export (modules of bert_layer.export) and, for any WordPiece module, one line per
        embedding row (a SentencePiece model is a binary file: the hash only).

        The embedding rows and the `text` signature's own copy of the vocabulary follow the
        original file; a changed asset would make BertLayer, embed and freeze tokenize
        differently from the module and read other tokens' vectors.
        """
        changed = (f"{self.path}: the vocabulary asset {vocab_file} was changed after export "
                   f"(%s); the module's embedding rows and its text signature follow the "
                   f"original. Restore the file, or export the module again.")
        if VOCAB_HASH_OUTPUT in sig.outputs:
            node = nodes.get(_node_name(sig.outputs[VOCAB_HASH_OUTPUT].name))
            if node is not None and node.op == "Const":
                recorded = tf.make_ndarray(node.attr["value"].tensor).item().decode()
                if file_sha256(vocab_file) != recorded:
                    raise ValueError(changed % f"its sha256 is not the {recorded[:12]}... "
                                              f"recorded in the module")
        if sentencepiece:
            return
        has_variables = os.path.isfile(os.path.join(self.path, VARIABLES_PREFIX + ".index"))
        shapes = self.variable_shapes() if has_variables else {}  # A .keras copy has none.
        rows = [shape[0] for name, shape in shapes.items()
                if name.endswith("embeddings/word_embeddings") and len(shape) == 2]
        with open(vocab_file, "rb") as f:
            lines = f.read().rstrip(b"\n").count(b"\n") + 1
        if len(rows) == 1 and rows[0] != lines:
            raise ValueError(changed % f"{lines} lines for the {rows[0]} rows of the word "
                                      f"embeddings")

    def special_tokens(self) -> SpecialTokens:
        """The family's special tokens, by the `model_type` of assets/bert_config.json."""
        path = os.path.join(self.path, CONFIG_ASSET)
        if not os.path.isfile(path):
            return BERT_SPECIAL_TOKENS
        try:
            with open(path, encoding="utf-8") as f:
                model_type = json.load(f).get("model_type", "bert")
        except (ValueError, AttributeError) as e:
            raise ValueError(f"{path}: expected the JSON object bert_layer's exporter writes "
                             f"({e}).") from None
        if model_type not in SPECIAL_TOKENS:
            raise ValueError(f"{path}: `model_type` must be one of {sorted(SPECIAL_TOKENS)}. "
                             f"Received: {model_type!r}")
        return SPECIAL_TOKENS[model_type]


def _called_functions(node: node_def_pb2.NodeDef) -> list[str]:
    """Names `node` may call: its op (if a function) and the functions in its attributes."""
    names = [node.op]
    for value in node.attr.values():
        if value.HasField("func"):
            names.append(value.func.name)
        names.extend(f.name for f in value.list.func)
    return names


def _keep_called_functions(graph_def: graph_pb2.GraphDef) -> None:
    """Drops the library functions no node of `graph_def` reaches, in place.

    `extract_sub_graph` keeps the whole library, e.g. the `text` signature's tokenizer
    functions in the `tokens` graph. Importing them is not only waste: their names are unique
    only within the exporting process, so a same-named, different function already known to
    this process (another module, or this one exported here) makes the import fail.
    """
    functions = {f.signature.name: f for f in graph_def.library.function}
    gradients = {g.function_name: g.gradient_func for g in graph_def.library.gradient}
    used: set[str] = set()
    stack = [name for node in graph_def.node for name in _called_functions(node)]
    while stack:
        name = stack.pop()
        if name in used or name not in functions:
            continue
        used.add(name)
        stack.extend(n for node in functions[name].node_def for n in _called_functions(node))
        if name in gradients:
            stack.append(gradients[name])
    kept_functions = [functions[name] for name in sorted(used)]
    kept_gradients = [g for g in graph_def.library.gradient if g.function_name in used]
    del graph_def.library.function[:]
    del graph_def.library.gradient[:]
    graph_def.library.function.extend(kept_functions)
    graph_def.library.gradient.extend(kept_gradients)


def _asset_files(meta_graph: meta_graph_pb2.MetaGraphDef) -> dict[str, str]:
    """Asset node name -> file name in `assets/`.

    TF2 writers list assets in `asset_file_def`; TF1's SavedModelBuilder (which writes hub
    modules) lists them only in the `saved_model_assets` collection, as packed AssetFileDefs.
    """
    asset_defs = list(meta_graph.asset_file_def)
    if ASSETS_COLLECTION in meta_graph.collection_def:
        for packed in meta_graph.collection_def[ASSETS_COLLECTION].any_list.value:
            asset_def = meta_graph_pb2.AssetFileDef()
            packed.Unpack(asset_def)
            asset_defs.append(asset_def)
    return {_node_name(a.tensor_info.name): a.filename for a in asset_defs}


def _find_asset(start: str, nodes: dict, assets: dict[str, str]) -> str | None:
    """Walks back from `start` to an asset tensor, through inputs and variable assignments."""
    assigned_from: dict[str, list[str]] = {}
    for node in nodes.values():
        if node.op in ("AssignVariableOp", "Assign") and node.input:
            assigned_from.setdefault(_node_name(node.input[0]), []).append(node.name)
    seen, stack = set(), [start]
    while stack:
        name = stack.pop()
        if name in seen or name not in nodes:
            continue
        seen.add(name)
        if name in assets:
            return assets[name]
        stack.extend(_node_name(i) for i in nodes[name].input)
        stack.extend(assigned_from.get(name, []))
    return None
