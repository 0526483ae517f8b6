"""The hub module contract, in one place: what `bert_layer.export` writes and the Keras side reads.

Signature, tensor and tag names follow Google's TF1 Hub BERT modules, so a module from
either source works on both sides. Scope patterns find Google's variable groups by name
(`bert/encoder/layer_3/...`), wherever a module nests them. No TensorFlow here.
"""

from __future__ import annotations

import os
import re

# Tag sets as the TF1 Hub format names them: the empty set is inference.
TRAIN_TAGS = frozenset({"train"})
INFERENCE_TAGS = frozenset()

TOKENS_SIGNATURE = "tokens"
# `tokens` in mixed bfloat16: float32 variables cast to bfloat16 for the matmuls; LayerNorm,
# softmax and the outputs float32. Written by `bert_layer.export`; other modules lack it.
TOKENS_BF16_SIGNATURE = "tokens_bf16"
TEXT_SIGNATURE = "text"
TOKENIZATION_INFO_SIGNATURE = "tokenization_info"
TOKEN_INPUTS = ("input_ids", "input_mask", "segment_ids")
TOKEN_OUTPUTS = ("pooled_output", "sequence_output")
TEXT_INPUT = "text"
TOKENIZATION_INFO_OUTPUTS = ("vocab_file", "do_lower_case")
VOCAB_FILE_OUTPUT = "vocab_file"
# ALBERT's modules (Google's and bert_layer's) give a SentencePiece model in place of
# `vocab_file`; bert_layer's add whether accents are kept (absent: stripped, as Google's).
SP_MODEL_FILE_OUTPUT = "sp_model_file"
KEEP_ACCENTS_OUTPUT = "keep_accents"
# Written by `bert_layer.export` beside them (Google's modules lack it): the sha256 of the
# vocab asset at export, which every reader of the asset checks (HubModule.tokenization_info).
VOCAB_HASH_OUTPUT = "vocab_sha256"

# Google's variable scopes (see bert_layer.export.names for the full table).
LAYER_INDEX = re.compile(r"(?:^|/)layer_(\d+)/")
EMBEDDINGS = re.compile(r"(?:^|/)embeddings/")
POOLER = re.compile(r"(?:^|/)pooler/")
POSITION_EMBEDDINGS = re.compile(r"(?:^|/)embeddings/position_embeddings$")
# ELECTRA's and ALBERT's projection of narrow embeddings to the hidden size: trained with the
# embeddings (tune_embeddings).
EMBEDDING_PROJECTION = re.compile(r"(?:^|/)(embeddings_project|embedding_hidden_mapping_in)/")
# ALBERT's one layer, shared by every depth: `bert/encoder/transformer/group_0/...`.
SHARED_LAYER_GROUP = re.compile(r"(?:^|/)transformer/group_(\d+)/")

# The SavedModel layout every saved folder here shares: the hub module, the serving model.
SAVED_MODEL_FILE = "saved_model.pb"
VARIABLES_PREFIX = os.path.join("variables", "variables")


def read_saved_model(folder: str, remedy: str = "save it again"):
    """The `SavedModel` proto of `folder` (a hub module or a serving model): the one parser of
    saved_model.pb, so that a truncated or foreign file is one line everywhere."""
    from google.protobuf.message import DecodeError  # Lazy: importing TensorFlow is slow.
    from tensorflow.core.protobuf import saved_model_pb2

    path = os.path.join(folder, SAVED_MODEL_FILE)
    saved_model = saved_model_pb2.SavedModel()
    with open(path, "rb") as f:
        data = f.read()
    try:
        saved_model.ParseFromString(data)
    except DecodeError:
        raise ValueError(f"{path} is not a readable SavedModel ({len(data)} bytes: truncated "
                         f"or corrupt?); {remedy}.") from None
    if not saved_model.meta_graphs:
        raise ValueError(f"{path} is not a readable SavedModel: it holds no meta graph; "
                         f"{remedy}.")
    return saved_model
