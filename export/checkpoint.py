"""Google-format BERT checkpoints: reading, checking against the config, writing.

A checkpoint folder holds `bert_config.json`, `vocab.txt` and
`bert_model.ckpt.index` / `bert_model.ckpt.data-*` (TF's V2 checkpoint format).
"""

from __future__ import annotations

import dataclasses
import glob
import os

import numpy as np
import tensorflow as tf

from bert_layer.export.config import BertConfig, read_do_lower_case, read_json_object
from bert_layer.export.families import BERT, model_type_entry, read_model_type
from bert_layer.export.names import POOLER_PREFIX, left_out_group, variable_specs
from bert_layer.text.vocab import read_vocab_lines

CONFIG_FILE = "bert_config.json"
VOCAB_FILE = "vocab.txt"
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
    # The family bert_config.json records (bert_layer.export.families): its special tokens.
    model_type: str = BERT

    @property
    def has_pooler(self) -> bool:
        return has_pooler(self.weights)

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
    """The checkpoint prefix inside `directory` (`bert_model.ckpt` or the latest)."""
    prefix = os.path.join(directory, CHECKPOINT_PREFIX)
    if os.path.exists(prefix + ".index"):
        return prefix
    latest = tf.train.latest_checkpoint(directory)
    if latest:
        return latest
    indexes = sorted(glob.glob(os.path.join(directory, "*.ckpt*.index")))
    if len(indexes) == 1:
        return indexes[0][: -len(".index")]
    raise FileNotFoundError(
        f"No BERT checkpoint in {directory}: expected {CHECKPOINT_PREFIX}.index and "
        f"{CHECKPOINT_PREFIX}.data-* (found {sorted(os.listdir(directory))}).")


def read_checkpoint_values(prefix: str) -> tuple[dict[str, np.ndarray], tuple]:
    """The tensors of BERT's scope under a checkpoint `prefix`, and what was left out.

    Returns:
      (values of every `bert/*` variable, ((group, count), ...) of the others, e.g. the
      pre-training heads, a classifier head, Adam slots and `global_step`). Left-out
      tensors are never read, so their size costs nothing.
    """
    try:
        reader = tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as e:
        raise ValueError(f"Cannot read the checkpoint {prefix}: {e}") from None
    values, left_out = {}, {}
    for name in sorted(reader.get_variable_to_shape_map()):
        group = left_out_group(name)
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


def check_vocab(vocab_file: str, config: BertConfig) -> None:
    """The embedding matrix has one row per line of the vocabulary."""
    size = len(read_vocab_lines(vocab_file))
    if size != config.vocab_size:
        raise ValueError(
            f"{vocab_file} has {size} tokens but the config says vocab_size="
            f"{config.vocab_size}; they must agree.")


def check_weights(weights: dict[str, np.ndarray], config: BertConfig,
                  source: str) -> dict[str, np.ndarray]:
    """Checks names and shapes against `config`; returns the weights in spec order.

    The pooler (`bert/pooler/*`) may be absent as a whole: see `variable_specs`.
    """
    specs = variable_specs(config, pooler=has_pooler(weights))
    expected = {s.name for s in specs}
    missing = sorted(expected - set(weights))
    unexpected = sorted(set(weights) - expected)
    if missing or unexpected:
        raise ValueError(
            f"{source}: the variables do not match a BERT model with this config.\n"
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


def load_checkpoint(directory: str | os.PathLike) -> BertCheckpoint:
    """Reads and checks a Google-format checkpoint folder."""
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"Checkpoint folder not found: {directory}")
    config_file = os.path.join(directory, CONFIG_FILE)
    values = read_json_object(config_file, "BERT config")
    config = BertConfig.from_dict(values, source=config_file)
    vocab_file = os.path.join(directory, VOCAB_FILE)
    check_vocab(vocab_file, config)
    prefix = find_checkpoint_prefix(directory)
    encoder_values, left_out = read_checkpoint_values(prefix)
    weights = check_weights(encoder_values, config, source=prefix)
    return BertCheckpoint(config=config, vocab_file=vocab_file, weights=weights,
                          do_lower_case=read_do_lower_case(values, config_file),
                          left_out=left_out, model_type=read_model_type(values, config_file))


def write_checkpoint(weights: dict[str, np.ndarray], prefix: str) -> None:
    """Writes `weights` (Google names) as a V2 checkpoint at `prefix`."""
    names = list(weights)
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(weights[n]) for n in names])


def write_checkpoint_folder(directory: str, config: BertConfig, vocab_tokens: list[str],
                            weights: dict[str, np.ndarray], *,
                            do_lower_case: bool | None = None,
                            model_type: str = BERT) -> None:
    """Writes a complete Google-format folder (config, vocab, checkpoint) in `directory`.

    Google's format has no field for the casing, so a known `do_lower_case` is written into
    bert_config.json as an extra key: Google's own `BertConfig.from_dict` keeps unknown keys
    as attributes, and `export --do-lower-case auto` reads it (else infers from the vocab).
    """
    weights = check_weights(weights, config, source="weights to write")
    if len(vocab_tokens) != config.vocab_size:
        raise ValueError(f"{len(vocab_tokens)} vocab tokens but vocab_size={config.vocab_size}.")
    os.makedirs(directory, exist_ok=True)
    extra = {} if do_lower_case is None else {"do_lower_case": do_lower_case}
    extra.update(model_type_entry(model_type))
    config.to_json_file(os.path.join(directory, CONFIG_FILE), **extra)
    with open(os.path.join(directory, VOCAB_FILE), "w", encoding="utf-8") as f:
        f.writelines(token + "\n" for token in vocab_tokens)
    write_checkpoint(weights, os.path.join(directory, CHECKPOINT_PREFIX))
