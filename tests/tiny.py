"""The tiny BERT every unit test uses: a 99-token vocabulary, odd sizes, random weights."""

from __future__ import annotations

import numpy as np

from bert_layer.export.config import BertConfig
from bert_layer.export.names import variable_specs

# 99 tokens, lower-cased like an uncased vocab. Chosen so that short English
# sentences ("the movie was great .") tokenize to real ids, that WordPiece splits
# show ("unwanted" -> un ##want ##ed, "running" -> runn ##ing, "actor" -> act ##or),
# and that "[UNK]" appears for any word left out (e.g. "terrible").
TINY_VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    ".", ",", "!", "?", "'", "-", "(", ")", ":", ";", '"',
    "the", "a", "an", "movie", "film", "story", "plot", "was", "is", "it", "this", "that",
    "and", "but", "or", "not", "no", "very", "so", "too",
    "good", "great", "bad", "fun", "funny", "boring", "love", "hate", "like", "well",
    "best", "worst", "of", "to", "in", "with", "for", "on", "at", "as",
    "i", "you", "he", "she", "they", "we", "his", "her", "its", "my",
    "all", "one", "more", "than", "just", "what", "be", "have", "has", "did", "do",
    "n", "s", "t",  # "n't" -> n ' t and "'s" -> ' s, as in GLUE's tokenized text.
    "un", "want", "wa", "runn", "play", "act", "cafe", "\u4e2d",  # 中: one CJK character.
    "##want", "##ed", "##ing", "##s", "##ly", "##er", "##y", "##d", "##ness", "##ful", "##or",
]

# Odd, distinct sizes, so that a swapped axis cannot pass unnoticed.
TINY_CONFIG = BertConfig(
    vocab_size=len(TINY_VOCAB), hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
    intermediate_size=37, max_position_embeddings=64, type_vocab_size=2)


def random_weights(config: BertConfig, seed: int) -> dict[str, np.ndarray]:
    """Float32 weights for every variable of `config`, keyed by Google's names.

    Values are normal * 0.2 (large enough that every layer changes the output),
    LayerNorm gammas are 1 + normal * 0.2.
    """
    rng = np.random.default_rng(seed)
    weights = {}
    for spec in variable_specs(config):
        value = rng.normal(size=spec.shape) * 0.2
        if spec.name.endswith("LayerNorm/gamma"):
            value += 1.0
        weights[spec.name] = value.astype(np.float32)
    return weights
