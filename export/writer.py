"""Writes a TF1 Hub format module: one SavedModel, two meta graphs, shared variables.

Layout of a module folder:
  saved_model.pb          meta graphs tagged {} (inference) and {"train"} (dropout on)
  variables/              the checkpoint both meta graphs restore
  assets/vocab.txt        returned by the `tokenization_info` signature
  assets/bert_config.json the config, plus `do_lower_case` and `has_pooler` (whether
                          pooled_output is the tanh pooler or the raw first-token state)
  tfhub_module.pb         marks the folder as a TF1 Hub module (ModuleDef, FORMAT_V3)
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile

import numpy as np
import tensorflow as tf

from bert_layer.contract import INFERENCE_TAGS, TRAIN_TAGS
from bert_layer.export import families
from bert_layer.export.checkpoint import CONFIG_FILE, BertCheckpoint, load_checkpoint
from bert_layer.export.module_fn import INIT_OP_COLLECTION, ModuleOptions, Signature, module_fn
from bert_layer.outputs import atomic_output, check_output_free
from bert_layer.text import SAVABLE_TOKENIZERS, sentencepiece
from bert_layer.text.packing import check_max_seq_length
from bert_layer.text.vocab import read_vocab_lines

tf1 = tf.compat.v1

# Each tag set with whether its graph applies dropout.
TAG_SETS = ((INFERENCE_TAGS, False), (TRAIN_TAGS, True))
MODULE_DEF_FILE = "tfhub_module.pb"
# A serialized `ModuleDef{format: FORMAT_V3}` (field 1, varint 3): what TF1 Hub writes.
_MODULE_DEF_V3 = b"\x08\x03"


def infer_do_lower_case(vocab_file: str) -> bool:
    """Uncased vocabularies have no upper-case word pieces outside `[SPECIAL]` tokens."""
    for token in read_vocab_lines(vocab_file):
        if not re.fullmatch(r"\[[A-Za-z0-9_]+\]", token) and token != token.lower():
            return False
    return True


def _signature_defs(signatures: dict[str, Signature]) -> dict:
    build = tf1.saved_model.utils.build_tensor_info
    return {
        name: tf1.saved_model.signature_def_utils.build_signature_def(
            inputs={k: build(t) for k, t in inputs.items()},
            outputs={k: build(t) for k, t in outputs.items()},
            method_name=tf1.saved_model.signature_constants.PREDICT_METHOD_NAME)
        for name, (inputs, outputs) in signatures.items()
    }


def _load_weights(session: tf1.Session, weights: dict[str, np.ndarray]) -> None:
    """Sets every variable by feeding its initializer, adding no ops to the graph."""
    variables = {v.op.name: v for v in tf1.global_variables()}
    missing = sorted(set(variables) - set(weights))
    if missing:
        raise ValueError(f"The checkpoint lacks graph variables: {missing}")
    session.run([v.initializer for v in variables.values()],
                feed_dict={v.initializer.inputs[1]: weights[name]
                           for name, v in variables.items()})


def write_saved_model(directory: str, checkpoint: BertCheckpoint, options: ModuleOptions) -> None:
    """Writes both meta graphs of the module into the (new) `directory`."""
    builder = tf1.saved_model.Builder(directory)
    for index, (tags, is_training) in enumerate(TAG_SETS):
        with tf.Graph().as_default():
            signatures = _signature_defs(module_fn(options, is_training=is_training))
            assets = tf1.get_collection(tf1.GraphKeys.ASSET_FILEPATHS)
            init_op = tf.group(*tf1.get_collection(INIT_OP_COLLECTION), name="module_init")
            if index == 0:
                with tf1.Session() as session:
                    _load_weights(session, checkpoint.weights)
                    builder.add_meta_graph_and_variables(
                        session, sorted(tags), signature_def_map=signatures,
                        assets_collection=assets, main_op=init_op, strip_default_attrs=True)
            else:
                builder.add_meta_graph(sorted(tags), signature_def_map=signatures,
                                       assets_collection=assets, main_op=init_op,
                                       strip_default_attrs=True)
    builder.save()
    with open(os.path.join(directory, MODULE_DEF_FILE), "wb") as f:
        f.write(_MODULE_DEF_V3)


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What `export_checkpoint` wrote, and what it left out of the checkpoint."""

    module_dir: str
    do_lower_case: bool
    has_pooler: bool
    left_out: str  # One line naming the variable groups left out; "" when none were.
    checkpoint_choice: str = ""  # Which of several checkpoints was read ("" when one).
    family: str = "bert"  # bert_layer.export.families
    notes: tuple[str, ...] = ()  # What was inferred from the checkpoint, one line each.


def resolve_do_lower_case(checkpoint: BertCheckpoint, do_lower_case: bool | None) -> bool:
    """The casing: as asked, else as the folder records it (`convert` writes it into
    bert_config.json), else inferred from the vocabulary (Google's folders have no field)."""
    if do_lower_case is not None:
        return do_lower_case
    if checkpoint.do_lower_case is not None:
        return checkpoint.do_lower_case
    if checkpoint.sentencepiece:
        return sentencepiece.infer_do_lower_case(checkpoint.vocab_file)
    return infer_do_lower_case(checkpoint.vocab_file)


def write_module_config(directory: str, checkpoint: BertCheckpoint, do_lower_case: bool) -> str:
    """Writes the module's own bert_config.json (sizes, casing, pooler; the family and
    accents for ELECTRA, ALBERT and MPNet: the Keras side reads MPNet's special tokens by
    its `model_type`) into `directory`."""
    path = os.path.join(directory, CONFIG_FILE)
    extra = {} if checkpoint.family == "bert" else {"model_type": checkpoint.family}
    if checkpoint.sentencepiece:
        extra["keep_accents"] = bool(checkpoint.keep_accents)
    checkpoint.config.to_json_file(path, do_lower_case=do_lower_case,
                                   has_pooler=checkpoint.has_pooler, **extra)
    return path


def export_checkpoint(checkpoint_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
                      max_seq_length: int = 128, do_lower_case: bool | None = None,
                      tokenizer: str = "graph", overwrite: bool = False) -> ExportResult:
    """Exports a Google-format checkpoint folder as a TF1 Hub module at `out_dir`.

    Only BERT's encoder (and its pooler, when the checkpoint has one) is exported; heads,
    optimizer slots and `global_step` are left out and named in `ExportResult.left_out`.

    Args:
      checkpoint_dir: holds `bert_config.json`, `vocab.txt`, `bert_model.ckpt.*`.
      out_dir: the module folder to create; written to a temporary sibling first.
      max_seq_length: longest sequence the `text` signature produces.
      do_lower_case: None takes it from the folder's bert_config.json (`convert` records
        it there), else infers it from the vocabulary (uncased vocabularies lower-case).
      tokenizer: the `text` signature's tokenizer: "graph" (tensorflow-text's FastWordpiece
        op: consumers must import tensorflow_text) or "core" (core TensorFlow ops only: the
        module loads with TensorFlow alone). Both give the same ids.
      overwrite: replace an existing `out_dir`.
    """
    if tokenizer not in SAVABLE_TOKENIZERS:
        raise ValueError(f"tokenizer must be one of {list(SAVABLE_TOKENIZERS)} (a module's "
                         f"graph cannot hold a Python tokenizer). Received: {tokenizer!r}")
    inputs = [checkpoint_dir]
    check_output_free(out_dir, overwrite, kind="module", inputs=inputs)  # Before the slow work.
    checkpoint = load_checkpoint(checkpoint_dir)
    if checkpoint.sentencepiece and tokenizer == "core":
        raise ValueError(f"{os.fspath(checkpoint_dir)} is an {checkpoint.family.upper()} "
                         f"checkpoint (a SentencePiece vocabulary): "
                         f"{sentencepiece.CORE_REFUSAL}.")
    check_max_seq_length(max_seq_length, checkpoint.config.max_position_embeddings,
                         source=f"the checkpoint {os.fspath(checkpoint_dir)}")
    do_lower_case = resolve_do_lower_case(checkpoint, do_lower_case)
    with atomic_output(out_dir, overwrite=overwrite, kind="module", inputs=inputs) as tmp, \
            tempfile.TemporaryDirectory() as config_dir:
        options = ModuleOptions(
            config=checkpoint.config, vocab_file=os.path.abspath(checkpoint.vocab_file),
            config_file=write_module_config(config_dir, checkpoint, do_lower_case),
            do_lower_case=do_lower_case, max_seq_length=max_seq_length,
            has_pooler=checkpoint.has_pooler, tokenizer=tokenizer,
            architecture=families.family(checkpoint.family).architecture,
            sentencepiece=checkpoint.sentencepiece, keep_accents=bool(checkpoint.keep_accents),
            model_type=checkpoint.model_type)
        # The builder refuses an existing folder; `tmp` exists but is empty.
        os.rmdir(tmp)
        write_saved_model(tmp, checkpoint, options)
    return ExportResult(module_dir=os.fspath(out_dir), do_lower_case=do_lower_case,
                        has_pooler=checkpoint.has_pooler, left_out=checkpoint.left_out_summary(),
                        checkpoint_choice=checkpoint.choice, family=checkpoint.family,
                        notes=checkpoint.notes)


def export_module(checkpoint_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
                  max_seq_length: int = 128, do_lower_case: bool | None = None,
                  tokenizer: str = "graph", overwrite: bool = False) -> str:
    """`export_checkpoint`, returning only the module folder."""
    return export_checkpoint(checkpoint_dir, out_dir, max_seq_length=max_seq_length,
                             do_lower_case=do_lower_case, tokenizer=tokenizer,
                             overwrite=overwrite).module_dir
