"""Model surgery for the inference formats: a trained Keras model as ids -> outputs and as
strings -> outputs, the functions `freeze` and `serving` trace."""

from __future__ import annotations

import keras
import tensorflow as tf

from bert_layer.contract import TOKEN_INPUTS
from bert_layer.layers.layer import BertLayer
from bert_layer.text.packing import Preprocessor
from bert_layer.text.tokenizer import make_tokenizer


def find_bert_layer(model: keras.Model) -> BertLayer:
    layers = [layer for layer in model.layers if isinstance(layer, BertLayer)]
    if len(layers) != 1:
        raise ValueError(f"Freezing needs a model with exactly one BertLayer; "
                         f"found {len(layers)} in {model.name}.")
    return layers[0]


def ids_model(model: keras.Model):
    """ids -> probabilities: `run(input_ids, input_mask, segment_ids)` (int32 [B, T]) gives
    [B, classes]: the BertLayer's encoder, then the layers after it in order."""
    bert = find_bert_layer(model)
    head = model.layers[model.layers.index(bert) + 1:]

    def run(input_ids, input_mask, segment_ids):
        x = bert.encode({"input_ids": input_ids, "input_mask": input_mask,
                         "segment_ids": segment_ids}, training=False)
        for layer in head:
            x = layer(x, training=False)
        return x

    return run


def text_model(model: keras.Model, tokenizer: str | None = None):
    """strings [B] -> probabilities, with the BertLayer's own tokenizer, or one of `tokenizer`
    kind (all kinds give the same ids, so a model trained with one serves with another).

    The tokenizer's outputs are named as TOKEN_INPUTS, so that a caller of the frozen graph
    can tokenize first (and group batches by the real token counts), then feed ids."""
    bert = find_bert_layer(model)
    if bert.preprocessor is None:
        raise ValueError(f"{model.name} takes ids (do_preprocessing=False): it has no "
                         f"tokenizer to run on text.")
    preprocess = bert.preprocess
    if tokenizer not in (None, bert.tokenizer):
        own = bert.preprocessor
        preprocess = Preprocessor(make_tokenizer(tokenizer, own.tokenizer.vocab_file,
                                                 own.tokenizer.do_lower_case,
                                                 own.tokenizer.special_tokens),
                                  own.max_seq_length)
    run = ids_model(model)

    def call(text):
        features = preprocess(text)
        return run(**{n: tf.identity(features[n], name=n) for n in TOKEN_INPUTS})

    return call
