"""An independent numpy BERT forward pass, the yardstick for the exported module.

Written from the semantics of Google's `modeling.py` (embeddings, post-LayerNorm
transformer layers, tanh pooler), in float64, with nothing shared with `export/`
or `bert_layer/` except `BertConfig` and Google's variable names. The mask is
additive, `-10000.0 * (1 - mask)` over the keys, as in `modeling.py`.

Note: `hidden_act="gelu"` is the exact erf GELU, as in Hugging Face's `BertModel`
(and so all-MiniLM-L6-v2); Google's `modeling.py` spells it with the tanh
approximation, which we call "gelu_new" like Hugging Face does.

Dimension legend:
  B = batch size          T = sequence length     V = vocab size
  H = hidden size         N = attention heads     D = size per head (H / N)
  I = intermediate size
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf

from bert_layer.export.config import BertConfig

MASK_ADDER = -10000.0  # Google's modeling.py: added to the scores of padded keys.


def gelu_erf(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


ACTIVATIONS = {
    "gelu": gelu_erf,
    "gelu_new": gelu_tanh,
    "relu": lambda x: np.maximum(x, 0.0),
    "tanh": np.tanh,
}


def layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    """Normalizes over the last axis with the biased variance, then scales and shifts."""
    mean = x.mean(axis=-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + eps) * gamma + beta


def dense(x: np.ndarray, weights: dict[str, np.ndarray], scope: str) -> np.ndarray:
    """`x @ kernel + bias` with Google's [in, out] kernel stored at `scope/kernel`."""
    return x @ weights[scope + "/kernel"] + weights[scope + "/bias"]


def softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def embeddings(w: dict[str, np.ndarray], config: BertConfig, input_ids: np.ndarray,
               segment_ids: np.ndarray) -> np.ndarray:
    """Word + token type + position embeddings, then LayerNorm: [B, T] -> [B, T, H]."""
    seq_length = input_ids.shape[1]
    x = (w["bert/embeddings/word_embeddings"][input_ids]  # [B, T, H]
         + w["bert/embeddings/token_type_embeddings"][segment_ids]  # [B, T, H]
         + w["bert/embeddings/position_embeddings"][:seq_length][None])  # [1, T, H]
    return layer_norm(x, w["bert/embeddings/LayerNorm/gamma"],
                      w["bert/embeddings/LayerNorm/beta"], config.layer_norm_eps)


def self_attention(x: np.ndarray, input_mask: np.ndarray, w: dict[str, np.ndarray],
                   scope: str, config: BertConfig) -> np.ndarray:
    """Multi-head scaled dot-product attention over unmasked keys: [B, T, H] -> [B, T, H]."""
    batch, seq_length, hidden = x.shape
    n, d = config.num_attention_heads, config.size_per_head

    def heads(t: np.ndarray) -> np.ndarray:  # [B, T, H] -> [B, N, T, D]
        return t.reshape(batch, seq_length, n, d).transpose(0, 2, 1, 3)

    query = heads(dense(x, w, scope + "query"))  # [B, N, T, D]
    key = heads(dense(x, w, scope + "key"))  # [B, N, T, D]
    value = heads(dense(x, w, scope + "value"))  # [B, N, T, D]
    scores = query @ key.transpose(0, 1, 3, 2) / np.sqrt(d)  # [B, N, T(from), T(to)]
    scores = scores + MASK_ADDER * (1.0 - input_mask[:, None, None, :])  # mask: [B, 1, 1, T]
    context = softmax(scores) @ value  # [B, N, T, D]
    return context.transpose(0, 2, 1, 3).reshape(batch, seq_length, hidden)  # [B, T, H]


def transformer_layer(x: np.ndarray, input_mask: np.ndarray, w: dict[str, np.ndarray],
                      index: int, config: BertConfig) -> np.ndarray:
    """One post-LayerNorm encoder layer: [B, T, H] -> [B, T, H]."""
    prefix = f"bert/encoder/layer_{index}/"
    eps = config.layer_norm_eps
    context = self_attention(x, input_mask, w, prefix + "attention/self/", config)
    attention = dense(context, w, prefix + "attention/output/dense")  # [B, T, H]
    x = layer_norm(attention + x, w[prefix + "attention/output/LayerNorm/gamma"],
                   w[prefix + "attention/output/LayerNorm/beta"], eps)
    activation = ACTIVATIONS[config.hidden_act]
    intermediate = activation(dense(x, w, prefix + "intermediate/dense"))  # [B, T, I]
    output = dense(intermediate, w, prefix + "output/dense")  # [B, T, H]
    return layer_norm(output + x, w[prefix + "output/LayerNorm/gamma"],
                      w[prefix + "output/LayerNorm/beta"], eps)


def _check_inputs(config: BertConfig, input_ids: np.ndarray, input_mask: np.ndarray,
                  segment_ids: np.ndarray) -> None:
    if input_ids.ndim != 2:
        raise ValueError(f"input_ids must have shape [B, T]. Received shape {input_ids.shape}")
    for name, value in (("input_mask", input_mask), ("segment_ids", segment_ids)):
        if value.shape != input_ids.shape:
            raise ValueError(f"{name} has shape {value.shape} but input_ids has shape "
                             f"{input_ids.shape}; they must agree.")
    if input_ids.shape[1] > config.max_position_embeddings:
        raise ValueError(f"Sequence length {input_ids.shape[1]} exceeds "
                         f"max_position_embeddings={config.max_position_embeddings}.")
    for name, value, limit in (("input_ids", input_ids, config.vocab_size),
                               ("segment_ids", segment_ids, config.type_vocab_size)):
        if value.size and (value.min() < 0 or value.max() >= limit):
            raise ValueError(f"{name} must lie in [0, {limit}). "
                             f"Received values in [{value.min()}, {value.max()}].")


def bert_forward(weights: dict[str, np.ndarray], config: BertConfig, input_ids: np.ndarray,
                 input_mask: np.ndarray, segment_ids: np.ndarray,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """BERT's forward pass in float64.

    Args:
      weights: Google variable name -> array (see `export.names.variable_specs`).
      config: the model's sizes; `layer_norm_eps` and `hidden_act` are honoured.
      input_ids: int array of shape [B, T].
      input_mask: 0/1 array of shape [B, T]; 0 marks padding.
      segment_ids: int array of shape [B, T], values < `type_vocab_size`.

    Returns:
      (sequence_output float32 [B, T, H], pooled_output float32 [B, H]).
    """
    input_ids = np.asarray(input_ids, dtype=np.int64)
    input_mask = np.asarray(input_mask, dtype=np.float64)
    segment_ids = np.asarray(segment_ids, dtype=np.int64)
    _check_inputs(config, input_ids, input_mask, segment_ids)
    w = {name: np.asarray(value, dtype=np.float64) for name, value in weights.items()}

    x = embeddings(w, config, input_ids, segment_ids)  # [B, T, H]
    for index in range(config.num_hidden_layers):
        x = transformer_layer(x, input_mask, w, index, config)  # [B, T, H]
    pooled = np.tanh(dense(x[:, 0], w, "bert/pooler/dense"))  # [B, H]
    return x.astype(np.float32), pooled.astype(np.float32)


def mean_pool(sequence_output: np.ndarray, input_mask: np.ndarray) -> np.ndarray:
    """Average of the unmasked token vectors, as sentence-transformers does: [B, H] float32."""
    mask = np.asarray(input_mask, dtype=np.float64)[:, :, None]  # [B, T, 1]
    total = (np.asarray(sequence_output, dtype=np.float64) * mask).sum(axis=1)  # [B, H]
    count = np.maximum(mask.sum(axis=1), 1e-9)  # [B, 1]; sentence-transformers' clamp
    return (total / count).astype(np.float32)
