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
import math

import tensorflow as tf

from bert_layer import contract
from bert_layer.export.config import BertConfig
# Preprocessing is shared with BertLayer so the two tokenize identically; plain string ops.
from bert_layer.text.packing import Preprocessor
from bert_layer.text.tokenizer import make_tokenizer

tf1 = tf.compat.v1

# Google's modeling.py adds this to the attention logits of padding positions.
_MASK_ADDER = -10000.0


def _dense(x: tf.Tensor, units: int, name: str) -> tf.Tensor:
    """x @ kernel + bias with Google's `<name>/kernel` [in, out] and `<name>/bias`.

    Computes in x's dtype: the float32 variables are cast to it (bfloat16 matmuls; the
    variables, and so training's updates, stay float32).
    """
    with tf1.variable_scope(name):
        kernel = tf1.get_variable("kernel", [x.shape[-1], units], dtype=tf.float32)
        bias = tf1.get_variable("bias", [units], dtype=tf.float32)
    return tf.nn.bias_add(tf.matmul(x, tf.cast(kernel, x.dtype)), tf.cast(bias, x.dtype))


def _to(x: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    """x in `dtype` (no op when it already is)."""
    return x if x.dtype == dtype else tf.cast(x, dtype)


def _layer_norm(x: tf.Tensor, epsilon: float, name: str = "LayerNorm") -> tf.Tensor:
    """Layer normalisation over the last axis with Google's `gamma` and `beta`."""
    size = x.shape[-1]
    with tf1.variable_scope(name):
        gamma = tf1.get_variable("gamma", [size], dtype=tf.float32)
        beta = tf1.get_variable("beta", [size], dtype=tf.float32)
    # Keep axis -1: with a positive axis, Grappler's remapper (TF 2.21, oneDNN) fuses these
    # ops into _MklLayerNorm wherever gamma and beta are constants (a frozen graph), and that
    # fusion drops `epsilon` for its default 1e-3: probabilities then move by ~2e-3.
    mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
    return tf.nn.batch_normalization(x, mean, variance, beta, gamma, epsilon)


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


def _embeddings(config: BertConfig, input_ids: tf.Tensor, segment_ids: tf.Tensor,
                is_training: bool) -> tf.Tensor:
    """Word + segment + position embeddings, normalised: [B, T, H]."""
    with tf1.variable_scope("embeddings"):
        h = config.hidden_size
        word = tf1.get_variable("word_embeddings", [config.vocab_size, h], dtype=tf.float32)
        token_type = tf1.get_variable(
            "token_type_embeddings", [config.type_vocab_size, h], dtype=tf.float32)
        position = tf1.get_variable(
            "position_embeddings", [config.max_position_embeddings, h], dtype=tf.float32)
        seq_length = tf.shape(input_ids)[1]
        # Gathering from the read value (not the resource) keeps the graph freezable.
        word, token_type = tf.convert_to_tensor(word), tf.convert_to_tensor(token_type)
        output = (tf.gather(word, input_ids)            # [B, T, H]
                  + tf.gather(token_type, segment_ids)  # [B, T, H]
                  + position[tf.newaxis, :seq_length])  # [1, T, H]
        output = _layer_norm(output, config.layer_norm_eps)
    return _dropout(output, config.hidden_dropout_prob, is_training)


def _split_heads(x: tf.Tensor, batch: tf.Tensor, seq: tf.Tensor, config: BertConfig) -> tf.Tensor:
    x = tf.reshape(x, [batch, seq, config.num_attention_heads, config.size_per_head])  # [B,T,N,D]
    return tf.transpose(x, [0, 2, 1, 3])  # [B, N, T, D]


def _attention(config: BertConfig, x: tf.Tensor, mask_adder: tf.Tensor, batch: tf.Tensor,
               seq: tf.Tensor, is_training: bool) -> tf.Tensor:
    """Multi-head self-attention on x [B*T, H]; returns the context [B*T, H] in x's dtype.

    The softmax runs in float32 whatever x's dtype (bfloat16 logits would round the
    probabilities of long rows); the matmuls run in x's dtype.
    """
    with tf1.variable_scope("self"):
        query = _split_heads(_dense(x, config.hidden_size, "query"), batch, seq, config)
        key = _split_heads(_dense(x, config.hidden_size, "key"), batch, seq, config)
        value = _split_heads(_dense(x, config.hidden_size, "value"), batch, seq, config)
        # Scaling the query (D values) rather than the logits (T values) saves work.
        query = query * (1.0 / math.sqrt(config.size_per_head))
        logits = _to(tf.matmul(query, key, transpose_b=True), tf.float32) + mask_adder
        probs = _dropout(tf.nn.softmax(logits), config.attention_probs_dropout_prob,
                         is_training)                        # [B, N, T, T] float32
        context = tf.matmul(_to(probs, x.dtype), value)      # [B, N, T, D]
        context = tf.transpose(context, [0, 2, 1, 3])        # [B, T, N, D]
    return tf.reshape(context, [batch * seq, config.hidden_size])  # [B*T, H]


def _encoder_layer(config: BertConfig, x: tf.Tensor, mask_adder: tf.Tensor, batch: tf.Tensor,
                   seq: tf.Tensor, is_training: bool, compute_dtype: tf.DType) -> tf.Tensor:
    """One transformer block on x [B*T, H] float32; returns float32 [B*T, H].

    The residual stream and LayerNorm stay float32; each sub-block computes in
    `compute_dtype` (its input cast down, its output cast back up).
    """
    eps, drop = config.layer_norm_eps, config.hidden_dropout_prob
    low = _to(x, compute_dtype)
    with tf1.variable_scope("attention"):
        context = _attention(config, low, mask_adder, batch, seq, is_training)
        with tf1.variable_scope("output"):
            attended = _dropout(_dense(context, config.hidden_size, "dense"), drop, is_training)
            x = _layer_norm(_to(attended, tf.float32) + x, eps)
    with tf1.variable_scope("intermediate"):
        hidden = _activation(_dense(_to(x, compute_dtype), config.intermediate_size, "dense"),
                             config.hidden_act)
    with tf1.variable_scope("output"):
        out = _dropout(_dense(hidden, config.hidden_size, "dense"), drop, is_training)
        return _layer_norm(_to(out, tf.float32) + x, eps)


def bert_model(config: BertConfig, input_ids: tf.Tensor, input_mask: tf.Tensor,
               segment_ids: tf.Tensor, is_training: bool,
               has_pooler: bool = True,
               compute_dtype: tf.DType = tf.float32) -> dict[str, tf.Tensor]:
    """Builds BERT under the scope `bert/`.

    Args:
      config: the model sizes.
      input_ids, input_mask, segment_ids: int32 Tensors of shape [B, T].
      is_training: applies dropout when True.
      has_pooler: whether the checkpoint has `bert/pooler/dense`.
      compute_dtype: the matmuls' (and GELU's) dtype: float32, or bfloat16 for mixed
        precision. Variables, embeddings, LayerNorm, softmax and the outputs stay float32.

    Returns:
      `sequence_output` float32 [B, T, H] and `pooled_output` float32 [B, H]:
      `tanh(dense(sequence_output[:, 0]))` with a pooler, else `sequence_output[:, 0]`
      itself, the raw first-token ([CLS]) state (checkpoints of token-level task models,
      TinyBERT, DistilBERT). The module's assets/bert_config.json says which (`has_pooler`).
    """
    batch, seq = tf.shape(input_ids)[0], tf.shape(input_ids)[1]
    with tf1.variable_scope("bert", reuse=tf1.AUTO_REUSE):
        x = _embeddings(config, input_ids, segment_ids, is_training)
        x = tf.reshape(x, [batch * seq, config.hidden_size])  # [B*T, H]
        mask = tf.cast(input_mask[:, tf.newaxis, tf.newaxis, :], tf.float32)  # [B, 1, 1, T]
        mask_adder = (1.0 - mask) * _MASK_ADDER
        with tf1.variable_scope("encoder"):
            for n in range(config.num_hidden_layers):
                with tf1.variable_scope(f"layer_{n}"):
                    x = _encoder_layer(config, x, mask_adder, batch, seq, is_training,
                                       compute_dtype)
        sequence_output = tf.reshape(x, [batch, seq, config.hidden_size])  # [B, T, H]
        first_token = sequence_output[:, 0]  # [B, H]
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
    max_seq_length: int = 128  # The `text` signature truncates to this; tokens are not limited.
    has_pooler: bool = True  # False: pooled_output is the first token's state (bert_model).
    tokenizer: str = "graph"  # The `text` signature's: "graph" (tensorflow-text) or "core".


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
    tokens_in = token_placeholders()
    tokens_out = bert_model(config, **tokens_in, is_training=is_training,
                            has_pooler=options.has_pooler)
    with tf1.name_scope("bf16"):
        bf16_out = bert_model(config, **tokens_in, is_training=is_training,
                              has_pooler=options.has_pooler, compute_dtype=tf.bfloat16)

    text = tf1.placeholder(tf.string, [None], name=contract.TEXT_INPUT)
    tokenizer = make_tokenizer(options.tokenizer, options.vocab_file, options.do_lower_case)
    with tf1.name_scope("preprocessing"):
        packed = Preprocessor(tokenizer, options.max_seq_length)(text)
    text_out = dict(bert_model(config, **packed, is_training=is_training,
                               has_pooler=options.has_pooler), **packed)

    vocab_file = _asset(options.vocab_file, "vocab_file")
    _asset(options.config_file, "bert_config_file")
    do_lower_case = tf.constant(options.do_lower_case, name="do_lower_case")
    return {
        contract.TOKENS_SIGNATURE: (tokens_in, tokens_out),
        "default": (tokens_in, tokens_out),
        contract.TOKENS_BF16_SIGNATURE: (tokens_in, bf16_out),
        contract.TEXT_SIGNATURE: ({contract.TEXT_INPUT: text}, text_out),
        contract.TOKENIZATION_INFO_SIGNATURE: (
            {}, {"vocab_file": vocab_file, "do_lower_case": do_lower_case}),
    }
