"""BERT's forward pass as a TF1 graph, under Google's variable names.

Call these functions inside `tf.Graph().as_default()`: they create
`tf.compat.v1` variables named exactly as in Google's checkpoints
(`bert/encoder/layer_0/attention/self/query/kernel`, ...), so a `Saver` restores
any Google checkpoint into them and any TF1 Hub consumer finds them.

Dimension legend used in the shape comments:
  B = batch size, T = sequence length (dynamic: the batch's longest),
  H = hidden size, N = attention heads, D = size per head (H / N), I = intermediate size.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import tensorflow as tf

from bert_layer import contract
from bert_layer.choices import DEFAULT_MAX_SEQ_LENGTH
from bert_layer.export.config import BertConfig
from bert_layer.export.relative_position import relative_position_buckets

# Preprocessing is shared with BertLayer so the two tokenize identically; plain string ops.
from bert_layer.text.packing import Preprocessor
from bert_layer.text.tokenizer import make_tokenizer
from bert_layer.text.vocab import SPECIAL_TOKENS, file_sha256

tf1 = tf.compat.v1

# Google's modeling.py adds this to the attention logits of padding positions.
_MASK_ADDER = -10000.0
# The epsilon of every LayerNorm in the graph; its input is scaled to match (see _layer_norm).
_FUSED_LAYER_NORM_EPSILON = 1e-3


def _dense(x: tf.Tensor, units: int, name: str, scale: float = 1.0) -> tf.Tensor:
    """(x @ kernel + bias) * scale with Google's `<name>/kernel` [in, out] and `<name>/bias`.

    Computes in x's dtype: the float32 variables are cast to it (bfloat16 matmuls; the
    variables, and so training's updates, stay float32). The scale is folded into the
    weights (constants in a frozen graph, so it costs nothing there).
    """
    with tf1.variable_scope(name):
        kernel = tf1.get_variable("kernel", [x.shape[-1], units], dtype=tf.float32)
        bias = tf1.get_variable("bias", [units], dtype=tf.float32)
    if scale != 1.0:
        kernel, bias = kernel * scale, bias * scale
    return tf.nn.bias_add(tf.matmul(x, tf.cast(kernel, x.dtype)), tf.cast(bias, x.dtype))


def _to(x: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    """x in `dtype` (no op when it already is)."""
    return x if x.dtype == dtype else tf.cast(x, dtype)


def _layer_norm(x: tf.Tensor, epsilon: float, name: str = "LayerNorm") -> tf.Tensor:
    """LN(x, epsilon) over the last axis with Google's `gamma` and `beta`.

    Written as Keras 2's fused LayerNormalization was (a batch norm in training mode over
    rows reshaped to NCHW channels, then gamma and beta), the pattern TensorFlow's oneDNN
    remapper fuses into one `_MklLayerNorm` op at run time whether gamma and beta are
    variables (the module in Keras, fine-tuning's forward pass) or constants (a frozen
    graph): 2-3x faster than the ops it replaces. (The moments/batch_normalization form
    fuses only with constant gamma and beta, so the module ran unfused in Keras.)
    FusedBatchNorm raises any epsilon under 1.001e-5 to that, and BERT's is 1e-12; so the
    graph computes LN(s*x, s^2*epsilon) with s^2*epsilon = 1e-3, which equals LN(x, epsilon)
    (the mean and the deviation scale by s). The Mul by s is on x, not folded into the
    weights around: in Keras the weights are variables, and scaling them cost a Mul over
    every weight at every call (13% of the traced bf16 op time), more than this Mul over
    the rows.

    Shapes: x [..., H] (rank 2 or 3 for the fusion); returns the same shape.
    """
    size = x.shape[-1]
    with tf1.variable_scope(name):
        gamma = tf1.get_variable("gamma", [size], dtype=tf.float32)
        beta = tf1.get_variable("beta", [size], dtype=tf.float32)
    scale = math.sqrt(_FUSED_LAYER_NORM_EPSILON / epsilon)
    scaled_x = x * scale if scale != 1.0 else x
    shape = tf.shape(x)
    rows = tf.reduce_prod(shape[:-1])
    # Each row one channel of an NCHW batch in training mode: its statistics are the row's.
    channels = tf.reshape(scaled_x, tf.stack([1, rows, size, 1]))
    normalized, _, _ = tf1.nn.fused_batch_norm(
        channels, tf.ones([rows]), tf.zeros([rows]), epsilon=_FUSED_LAYER_NORM_EPSILON,
        data_format="NCHW")
    return tf.reshape(normalized, shape) * gamma + beta


def _activation(x: tf.Tensor, name: str) -> tf.Tensor:
    if name == "gelu":  # Exact GELU, as BERT was trained (Google's code had tanh; HF erf).
        return 0.5 * x * (1.0 + tf.math.erf(x * (1.0 / math.sqrt(2.0))))
    if name == "gelu_new":
        return tf.nn.gelu(x, approximate=True)
    if name == "relu":
        return tf.nn.relu(x)
    return tf.tanh(x)


def _dropout(x: tf.Tensor, rate: float, is_training: bool) -> tf.Tensor:
    if not is_training or rate == 0.0:
        return x
    return tf.nn.dropout(x, rate=rate)


@dataclasses.dataclass(frozen=True)
class LayerScopes:
    """Where one encoder layer's variables live, relative to its layer scope."""

    attention: str = "attention"  # Holds self/query, self/key, self/value.
    attention_output: str = "attention/output/dense"
    attention_norm: str = "attention/output/LayerNorm"
    intermediate: str = "intermediate/dense"
    output: str = "output/dense"
    output_norm: str = "output/LayerNorm"


@dataclasses.dataclass(frozen=True)
class Architecture:
    """The few graph differences between model families, as named switches.

    The maths is BERT's throughout; a family (bert_layer.export.families) differs in its
    variable scopes and in these switches:
      scope: the model's top scope ("bert"; ELECTRA's discriminator: "electra").
      layer_scope: each encoder layer's scope under `scope`, "{}" its index; without "{}",
        one layer's weights are shared by every depth (ALBERT's single layer group).
      layer: the variable names inside a layer.
      embedding_projection: the scope (under `scope`) of the dense layer that maps
        embeddings of `embedding_size` to the hidden size, used when they differ
        (ELECTRA's `embeddings_project`, ALBERT's `encoder/embedding_hidden_mapping_in`).
    """

    scope: str = "bert"
    layer_scope: str = "encoder/layer_{}"
    layer: LayerScopes = LayerScopes()
    embedding_projection: str | None = None

    @property
    def shares_layers(self) -> bool:
        return "{}" not in self.layer_scope


BERT = Architecture()


def _embeddings(config: BertConfig, input_ids: tf.Tensor, segment_ids: tf.Tensor,
                is_training: bool, architecture: Architecture = BERT) -> tf.Tensor:
    """Word + segment + position embeddings, normalised (the encoder's residual stream):
    [B, T, H].

    Embeddings narrower than the hidden size (E != H) are normalised at their width E, then
    projected to H by `architecture.embedding_projection`.
    """
    project = config.embedding_width != config.hidden_size
    if project and architecture.embedding_projection is None:
        raise ValueError(f"embedding_size {config.embedding_width} differs from hidden_size "
                         f"{config.hidden_size}, but this model family has no embedding "
                         f"projection.")
    with tf1.variable_scope("embeddings"):
        h = config.embedding_width
        word = tf1.get_variable("word_embeddings", [config.vocab_size, h], dtype=tf.float32)
        token_type = tf1.get_variable(
            "token_type_embeddings", [config.type_vocab_size, h], dtype=tf.float32)
        position = tf1.get_variable(
            "position_embeddings", [config.max_position_embeddings, h], dtype=tf.float32)
        seq_length = tf.shape(input_ids)[1]
        # Gathering from the read value (not the resource) keeps the graph freezable.
        word, token_type = tf.convert_to_tensor(word), tf.convert_to_tensor(token_type)
        output = _layer_norm(tf.gather(word, input_ids)                         # [B, T, E]
                             + (tf.gather(token_type, segment_ids)              # [B, T, E]
                                + position[tf.newaxis, :seq_length]),           # [1, T, E]
                             config.layer_norm_eps)
    output = _dropout(output, config.hidden_dropout_prob, is_training)
    if project:  # Into the residual stream: [B, T, H].
        output = _dense(output, config.hidden_size, architecture.embedding_projection)
    return output


def _relative_position_bias(config: BertConfig, seq: tf.Tensor) -> tf.Tensor:
    """MPNet's relative position bias, shared by all layers: [1, N, T, T], float32.

    Entry [0, n, i, j] is head n's `relative_attention_bias` at the bucket of j - i (the
    buckets are a constant table, `relative_position_buckets`), as transformers'
    `MPNetEncoder.compute_position_bias` adds it to the attention logits.
    """
    with tf1.variable_scope("embeddings"):
        table = tf1.get_variable(
            "relative_attention_bias",
            [config.relative_attention_num_buckets, config.num_attention_heads],
            dtype=tf.float32)
    positions = config.max_position_embeddings
    buckets = tf.constant(relative_position_buckets(positions), name="relative_buckets")
    index = tf.range(seq)
    relative = index[tf.newaxis, :] - index[:, tf.newaxis] + (positions - 1)  # [T, T]
    bias = tf.gather(tf.convert_to_tensor(table), tf.gather(buckets, relative))  # [T, T, N]
    return tf.transpose(bias, [2, 0, 1])[tf.newaxis]  # [1, N, T, T]


def _split_heads(x: tf.Tensor, batch: tf.Tensor, seq: tf.Tensor, config: BertConfig) -> tf.Tensor:
    x = tf.reshape(x, [batch, seq, config.num_attention_heads, config.size_per_head])  # [B,T,N,D]
    return tf.transpose(x, [0, 2, 1, 3])  # [B, N, T, D]


def _first_rows(x: tf.Tensor, batch: tf.Tensor, seq: tf.Tensor) -> tf.Tensor:
    """The first token's row of each sequence: x [B*T, H] -> [B, H]."""
    return tf.reshape(x, [batch, seq, x.shape[-1]])[:, 0]


def _attention(config: BertConfig, x: tf.Tensor, mask_adder: tf.Tensor, batch: tf.Tensor,
               seq: tf.Tensor, is_training: bool, first_only: bool = False) -> tf.Tensor:
    """Multi-head self-attention on x [B*T, H], with `mask_adder` added to
    the logits ([B, 1, 1, T]; MPNet's [B, N, T, T] holds the position bias); returns the context
    [B*T, H] in x's dtype, or with `first_only` the first token's context [B, H] (keys and
    values still read every token; only the queries are cut to the first row).

    The softmax runs in float32 whatever x's dtype (bfloat16 logits would round the
    probabilities of long rows); the matmuls run in x's dtype.
    """
    rows, query_len = (_first_rows(x, batch, seq), 1) if first_only else (x, seq)
    if first_only and config.relative_attention_num_buckets:
        mask_adder = mask_adder[:, :, :1]  # [B, N, 1, T]: the first query's biases.
    with tf1.variable_scope("self"):
        # The query is scaled (in its weights) rather than the logits: no op at all.
        query = _split_heads(_dense(rows, config.hidden_size, "query",
                                    scale=1.0 / math.sqrt(config.size_per_head)),
                             batch, query_len, config)       # [B, N, T or 1, D]
        key = _split_heads(_dense(x, config.hidden_size, "key"),
                           batch, seq, config)
        value = _split_heads(_dense(x, config.hidden_size, "value"),
                             batch, seq, config)
        logits = _to(tf.matmul(query, key, transpose_b=True), tf.float32) + mask_adder
        probs = _dropout(tf.nn.softmax(logits), config.attention_probs_dropout_prob,
                         is_training)                        # [B, N, T or 1, T] float32
        context = tf.matmul(_to(probs, x.dtype), value)      # [B, N, T or 1, D]
        context = tf.transpose(context, [0, 2, 1, 3])        # [B, T or 1, N, D]
    return tf.reshape(context, [batch * query_len, config.hidden_size])  # [B*T or B, H]


def _encoder_layer(config: BertConfig, x: tf.Tensor, mask_adder: tf.Tensor,
                   batch: tf.Tensor, seq: tf.Tensor, is_training: bool, compute_dtype: tf.DType,
                   first_only: bool = False, names: LayerScopes = LayerScopes()) -> tf.Tensor:
    """One transformer block on the residual stream x [B*T, H] float32; returns the next
    [B*T, H]. With `first_only`, only the first token's row [B, H] is computed (attending to
    every token).

    The residual stream and LayerNorm stay float32; each sub-block computes in
    `compute_dtype` (its input cast down, its output cast back up).
    """
    drop = config.hidden_dropout_prob
    with tf1.variable_scope(names.attention):
        context = _attention(config, _to(x, compute_dtype), mask_adder, batch, seq,
                             is_training, first_only)
    if first_only:
        x = _first_rows(x, batch, seq)  # The residual stream of the rows computed.
    attended = _dropout(_dense(context, config.hidden_size, names.attention_output), drop,
                        is_training)
    x = _layer_norm(_to(attended, tf.float32) + x, config.layer_norm_eps,
                    name=names.attention_norm)
    hidden = _activation(_dense(_to(x, compute_dtype), config.intermediate_size,
                                names.intermediate), config.hidden_act)
    out = _dropout(_dense(hidden, config.hidden_size, names.output), drop, is_training)
    return _layer_norm(_to(out, tf.float32) + x, config.layer_norm_eps, name=names.output_norm)


def bert_model(config: BertConfig, input_ids: tf.Tensor, input_mask: tf.Tensor,
               segment_ids: tf.Tensor, is_training: bool,
               has_pooler: bool = True,
               compute_dtype: tf.DType = tf.float32,
               architecture: Architecture = BERT) -> dict[str, tf.Tensor]:
    """Builds BERT under the scope `bert/` (or the family's, see `Architecture`).

    Args:
      config: the model sizes.
      input_ids, input_mask, segment_ids: int32 Tensors of shape [B, T].
      is_training: applies dropout when True.
      has_pooler: whether the checkpoint has `bert/pooler/dense`.
      compute_dtype: the matmuls' (and GELU's) dtype: float32, or bfloat16 for mixed
        precision. Variables, embeddings, LayerNorm, softmax and the outputs stay float32.
      architecture: the family's scopes and switches (BERT's by default).

    Returns:
      `sequence_output` float32 [B, T, H] and `pooled_output` float32 [B, H]:
      `tanh(dense(sequence_output[:, 0]))` with a pooler, else `sequence_output[:, 0]`
      itself, the raw first-token ([CLS]) state (checkpoints of token-level task models,
      TinyBERT, DistilBERT). The module's assets/bert_config.json says which (`has_pooler`).
    """
    batch, seq = tf.shape(input_ids)[0], tf.shape(input_ids)[1]
    with tf1.variable_scope(architecture.scope, reuse=tf1.AUTO_REUSE):
        # The residual stream: [B*T, H].
        xs = tf.reshape(_embeddings(config, input_ids, segment_ids, is_training, architecture),
                        [batch * seq, config.hidden_size])
        # A reshape, not input_mask[:, tf.newaxis, tf.newaxis, :]: TFLite's builtin
        # StridedSlice has no new_axis_mask, and `freeze --format tflite` converts this graph.
        mask = tf.cast(tf.reshape(input_mask, [batch, 1, 1, seq]), tf.float32)  # [B, 1, 1, T]
        mask_adder = (1.0 - mask) * _MASK_ADDER
        if config.relative_attention_num_buckets:  # MPNet: one sum for every layer's logits.
            mask_adder = mask_adder + _relative_position_bias(config, seq)  # [B, N, T, T]
        layer = lambda x, **kw: _encoder_layer(  # noqa: E731
            config, x, mask_adder, batch, seq, is_training, compute_dtype,
            names=architecture.layer, **kw)
        last = config.num_hidden_layers - 1
        # Without an index in the scope, every depth reuses one layer's variables (ALBERT).
        for n in range(last):
            with tf1.variable_scope(architecture.layer_scope.format(n)):
                xs = layer(xs)
        with tf1.variable_scope(architecture.layer_scope.format(last)):
            # pooled_output reads only the first token, so it gets a last layer of its
            # own that computes that row alone (the same weights and maths; its keys and
            # values are the full layer's, merged by Grappler). A graph that needs only
            # pooled_output (a classifier on [CLS]) skips ~5/6 of the last layer's work.
            first_token = layer(xs, first_only=True)  # [B, H]
            x = layer(xs)  # [B*T, H]
        sequence_output = tf.reshape(x, [batch, seq, config.hidden_size])  # [B, T, H]
        if has_pooler:
            with tf1.variable_scope("pooler"):
                pooled_output = tf.tanh(_to(_dense(_to(first_token, compute_dtype),
                                                   config.hidden_size, "dense"), tf.float32))
        else:
            pooled_output = tf.identity(first_token, name="first_token")
    return {"sequence_output": sequence_output, "pooled_output": pooled_output}


def token_placeholders() -> dict[str, tf.Tensor]:
    """The `tokens` signature's inputs: int32 [batch, seq], both dimensions dynamic."""
    return {name: tf1.placeholder(tf.int32, [None, None], name=name)
            for name in contract.TOKEN_INPUTS}


@dataclasses.dataclass(frozen=True)
class ModuleOptions:
    """What a module is built from, besides the weights."""

    config: BertConfig
    vocab_file: str  # Bundled as an asset; `tokenization_info` returns its path.
    config_file: str  # Bundled as an asset, so the module describes itself.
    do_lower_case: bool
    # The `text` signature truncates to this; tokens are not limited.
    max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH
    has_pooler: bool = True  # False: pooled_output is the first token's state (bert_model).
    tokenizer: str = "graph"  # The `text` signature's: "graph" (tensorflow-text) or "core".
    architecture: Architecture = BERT  # The family's graph switches (export.families).
    # `vocab_file` is a SentencePiece model (ALBERT): tokenization_info names it
    # `sp_model_file`, as Google's ALBERT modules do, and adds `keep_accents`.
    sentencepiece: bool = False
    keep_accents: bool = False
    # The family's special tokens (bert_layer.text.vocab.SPECIAL_TOKENS; MPNet's `<s>`...).
    model_type: str = "bert"


Signature = tuple[dict[str, tf.Tensor], dict[str, tf.Tensor]]  # (inputs, outputs)


INIT_OP_COLLECTION = "module_init_ops"


def _asset(path: str, name: str) -> tf.Tensor:
    """The path of a file bundled in `assets/`, as the module's loader finds it.

    TF1 loaders feed an asset's tensor with its path inside the module only
    while they run the init op; a signature reading the tensor directly would
    return the export-time path. So the init op copies the fed path into a local
    variable, and signatures read that: the module stays relocatable.
    """
    tensor = tf.constant(path, name=name)
    tf1.add_to_collection(tf1.GraphKeys.ASSET_FILEPATHS, tensor)
    resolved = tf1.Variable("", trainable=False, use_resource=True, name=f"{name}_path",
                            collections=[tf1.GraphKeys.LOCAL_VARIABLES])
    tf1.add_to_collection(INIT_OP_COLLECTION, resolved.assign(tensor))
    return resolved.read_value()


def module_fn(options: ModuleOptions, is_training: bool) -> dict[str, Signature]:
    """Builds one meta graph of the hub module in the default graph.

    Returns the signatures by name: `tokens` (also `default`), `tokens_bf16` (the same
    inputs and float32 outputs, computed in mixed bfloat16), `text` and
    `tokenization_info`. The encoder signatures share the variables. Their
    `pooled_output` [B, H] is the tanh pooler when `options.has_pooler`, else the raw
    first-token state `sequence_output[:, 0]` (see `bert_model`); assets/bert_config.json
    records which as `"has_pooler"`.
    """
    config = options.config
    model = functools.partial(bert_model, config, is_training=is_training,
                              has_pooler=options.has_pooler, architecture=options.architecture)
    tokens_in = token_placeholders()
    tokens_out = model(**tokens_in)
    with tf1.name_scope("bf16"):
        bf16_out = model(**tokens_in, compute_dtype=tf.bfloat16)

    text = tf1.placeholder(tf.string, [None], name=contract.TEXT_INPUT)
    tokenizer = make_tokenizer(options.tokenizer, options.vocab_file, options.do_lower_case,
                               options.keep_accents,
                               special_tokens=SPECIAL_TOKENS[options.model_type])
    with tf1.name_scope("preprocessing"):
        packed = Preprocessor(tokenizer, options.max_seq_length)(text)
    text_out = dict(model(**packed), **packed)

    vocab_key = (contract.SP_MODEL_FILE_OUTPUT if options.sentencepiece
                 else contract.VOCAB_FILE_OUTPUT)
    info = {vocab_key: _asset(options.vocab_file, vocab_key),
            "do_lower_case": tf.constant(options.do_lower_case, name="do_lower_case")}
    if options.sentencepiece:
        info[contract.KEEP_ACCENTS_OUTPUT] = tf.constant(options.keep_accents,
                                                         name="keep_accents")
    _asset(options.config_file, "bert_config_file")
    # The asset's hash: readers refuse an asset changed after export (the `text` signature
    # holds its own copy of the vocabulary, and the embedding rows follow the original).
    info[contract.VOCAB_HASH_OUTPUT] = tf.constant(file_sha256(options.vocab_file),
                                                   name=contract.VOCAB_HASH_OUTPUT)
    return {
        contract.TOKENS_SIGNATURE: (tokens_in, tokens_out),
        "default": (tokens_in, tokens_out),
        contract.TOKENS_BF16_SIGNATURE: (tokens_in, bf16_out),
        contract.TEXT_SIGNATURE: ({contract.TEXT_INPUT: text}, text_out),
        contract.TOKENIZATION_INFO_SIGNATURE: ({}, info),
    }
