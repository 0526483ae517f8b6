"""Google-format checkpoints: reading, checking against the config, writing.

A BERT folder holds `bert_config.json`, `vocab.txt` and `bert_model.ckpt.index` /
`bert_model.ckpt.data-*` (TF's V2 checkpoint format). ELECTRA's and ALBERT's differ in their
config and vocabulary files and variable names; the family is told by the variable names
(bert_layer.export.families).
"""

from __future__ import annotations

import collections
import dataclasses
import glob
import os
import shutil

import numpy as np
import tensorflow as tf

from bert_layer.export import families
from bert_layer.export.config import (
    BertConfig,
    read_do_lower_case,
    read_json_object,
    read_keep_accents,
)
from bert_layer.export.families import SENTENCEPIECE, Family
from bert_layer.export.names import POOLER_PREFIX, left_out_group
from bert_layer.text.vocab import check_ids_match_rows

CONFIG_FILE = "bert_config.json"
VOCAB_FILE = "vocab.txt"
SP_MODEL_FILE = "spiece.model"  # A SentencePiece vocabulary, as Hugging Face names it.
CHECKPOINT_PREFIX = "bert_model.ckpt"


@dataclasses.dataclass(frozen=True)
class BertCheckpoint:
    """A checked checkpoint folder: the config, the vocab path and the encoder's weights."""

    config: BertConfig
    vocab_file: str
    weights: dict[str, np.ndarray]  # Google name -> value, in `variable_specs` order.
    # Recorded by `convert` in bert_config.json; None when the folder does not say.
    do_lower_case: bool | None = None
    # (group, number of variables) the checkpoint holds beyond the encoder, left out.
    left_out: tuple[tuple[str, int], ...] = ()
    # Which checkpoint of several was read, and why ("" when the folder held one).
    choice: str = ""
    family: str = "bert"  # See bert_layer.export.families.
    # SentencePiece vocabularies: keep accents (ALBERT's keep_accents); None: not recorded.
    keep_accents: bool | None = None
    notes: tuple[str, ...] = ()  # What was inferred or adjusted while reading, one line each.

    @property
    def has_pooler(self) -> bool:
        return has_pooler(self.weights)

    @property
    def model_type(self) -> str:
        """The family's name, as Hugging Face's `model_type` spells it ("bert", "mpnet")."""
        return self.family

    @property
    def sentencepiece(self) -> bool:
        """True when `vocab_file` is a SentencePiece model (ALBERT), not a vocab.txt."""
        return families.family(self.family).vocabulary == SENTENCEPIECE

    def left_out_summary(self) -> str:
        """One line naming the variable groups left out ("" when none were)."""
        if not self.left_out:
            return ""
        total = sum(count for _, count in self.left_out)
        groups = "; ".join(f"{group} ({count})" for group, count in self.left_out)
        return f"Left out {total} variables that are not BERT's encoder: {groups}."


def has_pooler(weights: dict[str, np.ndarray]) -> bool:
    return any(name.startswith(POOLER_PREFIX) for name in weights)


def find_checkpoint_prefix(directory: str) -> str:
    """The checkpoint prefix inside `directory` (see `choose_checkpoint`)."""
    return choose_checkpoint(directory)[0]


def choose_checkpoint(directory: str) -> tuple[str, str]:
    """The checkpoint prefix `export` reads in `directory`, and a note when others were there.

    The one the `checkpoint` file names wins (docs/checkpoints.md): a fine-tuned
    `model.ckpt-N` beside the `bert_model.ckpt` it started from is what the user trained.
    Else `bert_model.ckpt`, else the only `*.ckpt*` there.

    Returns:
      (prefix, note): note is "" when the folder holds one checkpoint, else a clause naming
      the one taken and why, and the others, for the one-line summary.

    Raises:
      FileNotFoundError: no checkpoint, or several and nothing says which.
    """
    indexes = sorted(glob.glob(os.path.join(directory, "*.ckpt*.index")))
    found = [os.path.basename(index)[: -len(".index")] for index in indexes]
    named = tf.train.latest_checkpoint(directory)
    if named and os.path.exists(named + ".index"):
        prefix, why = named, "named in the checkpoint file"
    elif os.path.exists(os.path.join(directory, CHECKPOINT_PREFIX + ".index")):
        prefix, why = os.path.join(directory, CHECKPOINT_PREFIX), "Google's name"
    elif len(indexes) == 1:
        prefix, why = indexes[0][: -len(".index")], "the only one"
    elif indexes:
        raise FileNotFoundError(
            f"{directory} holds {len(found)} checkpoints ({', '.join(found)}) and no "
            f"`checkpoint` file naming one; expected one checkpoint, or a `checkpoint` file "
            f"(model_checkpoint_path: \"NAME\") saying which to export.")
    else:
        raise FileNotFoundError(
            f"No BERT checkpoint in {directory}: expected {CHECKPOINT_PREFIX}.index and "
            f"{CHECKPOINT_PREFIX}.data-* (found {sorted(os.listdir(directory))}).")
    others = [name for name in found if name != os.path.basename(prefix)]
    note = (f"took {os.path.basename(prefix)} ({why}), not {', '.join(others)}"
            if others else "")
    return prefix, note


def _reader(prefix: str):
    try:
        return tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as e:
        raise ValueError(f"Cannot read the checkpoint {prefix}: {e}") from None


def read_checkpoint_values(prefix: str, scope: str = "bert/") -> tuple[dict[str, np.ndarray],
                                                                       tuple]:
    """The tensors of the model's `scope` under a checkpoint `prefix`, and what was left out.

    Returns:
      (values of every `bert/*` variable, ((group, count), ...) of the others, e.g. the
      pre-training heads, a classifier head, Adam slots and `global_step`). Left-out
      tensors are never read, so their size costs nothing.
    """
    reader = _reader(prefix)
    values, left_out = {}, {}
    for name in sorted(reader.get_variable_to_shape_map()):
        group = left_out_group(name, scope)
        if group is not None:
            left_out[group] = left_out.get(group, 0) + 1
            continue
        try:
            values[name] = reader.get_tensor(name)
        except (tf.errors.OpError, IndexError) as e:  # A missing or truncated .data shard.
            first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ValueError(f"Cannot read variable {name} of the checkpoint {prefix} "
                             f"({first_line}); expected complete {os.path.basename(prefix)}"
                             f".data-* files beside its .index.") from None
    return values, tuple(sorted(left_out.items()))


def vocab_size_of(vocab_file: str, family: Family) -> int:
    """Pieces in a SentencePiece model, or tokens in a vocab.txt (whose ids must be its rows:
    check_ids_match_rows refuses a repeated token)."""
    if family.vocabulary == SENTENCEPIECE:
        from bert_layer.text.sentencepiece import read_sp_model
        return read_sp_model(vocab_file).piece_count
    return check_ids_match_rows(vocab_file)


def check_vocab(vocab_file: str, config: BertConfig, family: Family | None = None) -> None:
    """The embedding matrix has one row per line of the vocabulary, and ids are rows."""
    size = vocab_size_of(vocab_file, family or families.family("bert"))
    if size != config.vocab_size:
        raise ValueError(
            f"{vocab_file} has {size} tokens but the config says vocab_size="
            f"{config.vocab_size}; they must agree.")


def check_weights(weights: dict[str, np.ndarray], config: BertConfig,
                  source: str, family: Family | None = None) -> dict[str, np.ndarray]:
    """Checks names and shapes against `config`; returns the weights in spec order.

    The pooler (`bert/pooler/*`) may be absent as a whole: see `variable_specs`.
    """
    family = family or families.family("bert")
    specs = family.variable_specs(config, has_pooler(weights))
    expected = {s.name for s in specs}
    missing = sorted(expected - set(weights))
    unexpected = sorted(set(weights) - expected)
    if missing or unexpected:
        model = "a BERT" if family.name == "bert" else f"an {family.name.upper()}"
        raise ValueError(
            f"{source}: the variables do not match {model} model with this config.\n"
            f"  missing ({len(missing)}): {missing[:8]}{' ...' if len(missing) > 8 else ''}\n"
            f"  unexpected ({len(unexpected)}): {unexpected[:8]}"
            f"{' ...' if len(unexpected) > 8 else ''}")
    for spec in specs:
        found = tuple(weights[spec.name].shape)
        if found != spec.shape:
            raise ValueError(
                f"{source}: variable {spec.name} has shape {list(found)} but the config "
                f"expects {list(spec.shape)}.")
    return {s.name: np.asarray(weights[s.name], dtype=np.float32) for s in specs}


def _first_file(directory: str, names: tuple[str, ...], what: str,
                required: bool = True) -> str | None:
    for name in names:
        if os.path.isfile(os.path.join(directory, name)):
            return os.path.join(directory, name)
    if not required:
        return None
    raise FileNotFoundError(f"{what} not found: {os.path.join(directory, names[0])} (expected "
                            f"{' or '.join(names)}; found {sorted(os.listdir(directory))}).")


def load_checkpoint(directory: str | os.PathLike) -> BertCheckpoint:
    """Reads and checks a Google-format checkpoint folder of any family (see `families`)."""
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"Checkpoint folder not found: {directory}")
    prefix, choice = choose_checkpoint(directory)
    shapes = _reader(prefix).get_variable_to_shape_map()
    family = families.family_of_variables(shapes)
    what = "BERT config" if family.name == "bert" else f"{family.name} config"
    config_file = _first_file(directory, family.config_files, what,
                              required=family.name == "bert")
    values = None if config_file is None else read_json_object(config_file, what)
    config, notes = family.read_config(config_file, values, shapes)
    vocab_file = _first_file(directory, family.vocab_files, "Vocabulary file")
    check_vocab(vocab_file, config, family)
    encoder_values, left_out = read_checkpoint_values(prefix, family.scope)
    weights = check_weights(encoder_values, config, source=prefix, family=family)
    values = values or {}
    return BertCheckpoint(config=config, vocab_file=vocab_file, weights=weights,
                          do_lower_case=read_do_lower_case(values, config_file),
                          left_out=left_out, family=family.name,
                          keep_accents=read_keep_accents(values, config_file), notes=notes,
                          choice=choice)


def write_checkpoint(weights: dict[str, np.ndarray], prefix: str) -> None:
    """Writes `weights` (Google names) as a V2 checkpoint at `prefix`."""
    names = list(weights)
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(weights[n]) for n in names])


def write_checkpoint_folder(directory: str, config: BertConfig, vocab_tokens: list[str] | None,
                            weights: dict[str, np.ndarray], *,
                            do_lower_case: bool | None = None, family: str = "bert",
                            sp_model_file: str | None = None,
                            keep_accents: bool | None = None) -> None:
    """Writes a complete Google-format folder (config, vocab, checkpoint) in `directory`.

    Google's format has no field for the casing, so a known `do_lower_case` is written into
    bert_config.json as an extra key: Google's own `BertConfig.from_dict` keeps unknown keys
    as attributes, and `export --do-lower-case auto` reads it (else infers from the vocab).

    ELECTRA and ALBERT folders are written in their Google layout (variable names), with
    this bert_config.json (BERT's keys plus `embedding_size`); ALBERT's vocabulary is the
    SentencePiece model `sp_model_file`, copied as spiece.model.
    """
    spec = families.family(family)
    weights = check_weights(weights, config, source="weights to write", family=spec)
    if vocab_tokens is not None and len(vocab_tokens) != config.vocab_size:
        raise ValueError(f"{len(vocab_tokens)} vocab tokens but vocab_size={config.vocab_size}.")
    repeated = sorted(t for t, n in collections.Counter(vocab_tokens or ()).items() if n > 1)
    if repeated:
        raise ValueError(f"The vocabulary repeats tokens {repeated[:5]}: their ids would shift "
                         f"against the embedding rows; expected each token once.")
    os.makedirs(directory, exist_ok=True)
    extra = {} if do_lower_case is None else {"do_lower_case": do_lower_case}
    if keep_accents is not None:
        extra["keep_accents"] = keep_accents
    extra.update(families.model_type_entry(family))
    config.to_json_file(os.path.join(directory, CONFIG_FILE), **extra)
    if spec.vocabulary == SENTENCEPIECE:
        vocab_file = os.path.join(directory, SP_MODEL_FILE)
        shutil.copyfile(sp_model_file, vocab_file)
    else:
        if len(vocab_tokens) != config.vocab_size:
            raise ValueError(f"{len(vocab_tokens)} vocab tokens but vocab_size="
                             f"{config.vocab_size}.")
        vocab_file = os.path.join(directory, VOCAB_FILE)
        with open(vocab_file, "w", encoding="utf-8") as f:
            f.writelines(token + "\n" for token in vocab_tokens)
    check_vocab(vocab_file, config, spec)
    write_checkpoint(weights, os.path.join(directory, CHECKPOINT_PREFIX))
