"""Model families: BERT, the models Google released the same way (ELECTRA, ALBERT), and
MPNet (BERT's layout plus a relative position bias, `<s>`-style special tokens).

A family is a config reader, a table of Google's variable names (with Hugging Face's name
for each) and the few graph switches of `bert_layer.export.module_fn.Architecture`; the
maths stays in module_fn. Each family is one module here; `FAMILIES` lists them and
`family_of_variables` tells which one a checkpoint holds from its variable names.

A family whose special tokens are not BERT's (MPNet) is also recorded as `model_type` in a
converted folder's and a module's `bert_config.json` (`model_type_entry`): the Keras side
reads its tokens from there (bert_layer.layers.hub_module). This package imports without
TensorFlow (the command line checks MPNet's installed parts before TensorFlow loads); the
families' modules, which need module_fn's `Architecture`, load on first use.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

from bert_layer.export.config import BertConfig
from bert_layer.export.names import RELATIVE_ATTENTION_BIAS, VariableSpec

if TYPE_CHECKING:  # module_fn imports TensorFlow; the annotations are strings.
    from bert_layer.export.module_fn import Architecture

WORDPIECE, SENTENCEPIECE = "wordpiece", "sentencepiece"
MODEL_TYPE_KEY = "model_type"
BERT = "bert"


@dataclasses.dataclass(frozen=True)
class Family:
    """What tells one family's checkpoints from another's, and how to read them.

    Attributes:
      name: the family, as Hugging Face's `model_type` spells it.
      architecture: its graph switches (scopes, shared layers, embedding projection).
      vocabulary: WORDPIECE (vocab.txt) or SENTENCEPIECE (a .model file).
      vocab_files: the vocabulary's file names in a Google folder, in the order looked for.
      config_files: config file names in a Google folder, in the order looked for.
      variable_specs: (config, pooler) -> every variable, Google and Hugging Face names.
      read_config: (path of the config file found or None, values or None, variable shapes)
        -> (BertConfig, notes): the family's keys checked, sizes inferred where allowed.
      hf_prefix: the body's prefix in Hugging Face task models ("electra.", "albert.").
      hf_pooler_tensors: Hugging Face names whose presence means the folder has a pooler.
      hf_config_values: Hugging Face config.json values -> BertConfig's.
      has_pooler_scope: the scope of the pooler's variables in Google's names.
    """

    name: str
    architecture: Architecture
    vocabulary: str
    vocab_files: tuple[str, ...]
    config_files: tuple[str, ...]
    variable_specs: Callable[[BertConfig, bool], list[VariableSpec]]
    read_config: Callable[[str | None, dict | None, dict], tuple[BertConfig, tuple[str, ...]]]
    hf_prefix: str
    hf_pooler_tensors: tuple[str, ...]
    hf_config_values: Callable[[dict, str], dict]
    pooler_scope: str | None

    @property
    def scope(self) -> str:
        return self.architecture.scope + "/"


def _families() -> dict[str, Family]:
    from bert_layer.export.families import albert, bert, electra, mpnet
    return {f.name: f for f in (bert.FAMILY, electra.FAMILY, albert.FAMILY, mpnet.FAMILY)}


def family(name: str) -> Family:
    """The family called `name` ("bert", "electra", "albert", "mpnet")."""
    families = _families()
    if name not in families:
        raise ValueError(f"Unknown model family {name!r}; expected one of {sorted(families)}.")
    return families[name]


def family_of_variables(names) -> Family:
    """The family whose variables a checkpoint holds: ELECTRA's discriminator lives under
    `electra/`, ALBERT's shared layer under `bert/encoder/transformer/`, MPNet's relative
    position bias is `bert/embeddings/relative_attention_bias`; else BERT."""
    names = list(names)
    if any(n.startswith("electra/") for n in names):
        return family("electra")
    if any(n.startswith("bert/encoder/transformer/") for n in names):
        return family("albert")
    if RELATIVE_ATTENTION_BIAS in names:
        return family("mpnet")
    return family("bert")


def model_type_entry(name: str) -> dict:
    """The `model_type` key a folder's bert_config.json records for family `name`: only for
    a family whose special tokens are not BERT's (bert_layer.text.vocab.SPECIAL_TOKENS)."""
    from bert_layer.text.vocab import BERT_SPECIAL_TOKENS, SPECIAL_TOKENS

    return ({MODEL_TYPE_KEY: name}
            if SPECIAL_TOKENS.get(name, BERT_SPECIAL_TOKENS) != BERT_SPECIAL_TOKENS else {})
