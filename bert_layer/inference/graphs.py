"""Model surgery for the inference formats: a trained Keras model as ids -> outputs and as
strings -> outputs, the functions `freeze` and `serving` trace.

A model that reads long texts as windows (`BertLayer(stride=...)`, a `WindowPooling` head)
runs its head on each window and pools the windows' probabilities into one row per text; its
ids function takes the windows' `window_document` too."""

from __future__ import annotations

import keras
import tensorflow as tf

from bert_layer.contract import TOKEN_INPUTS
from bert_layer.layers.layer import BertLayer
from bert_layer.layers.window_pooling import WindowPooling
from bert_layer.text.tokenizer import make_tokenizer
from bert_layer.text.windows import WINDOW_DOCUMENT, make_preprocessor


def find_bert_layer(model: keras.Model) -> BertLayer:
    layers = [layer for layer in model.layers if isinstance(layer, BertLayer)]
    if len(layers) != 1:
        raise ValueError(f"Freezing needs a model with exactly one BertLayer; "
                         f"found {len(layers)} in {model.name}.")
    return layers[0]


def is_windowed(model: keras.Model) -> bool:
    """Whether the model reads long texts as windows (one output row per text still)."""
    return find_bert_layer(model).stride is not None


def ids_model(model: keras.Model):
    """ids -> probabilities: `run(input_ids, input_mask, segment_ids)` (int32 [B, T]) gives
    [B, classes]: the BertLayer's encoder, then the layers after it in order. A windowed
    model's rows are windows, and `window_document` (int32 [W]) says whose: the result is
    one row per text."""
    bert = find_bert_layer(model)
    head = model.layers[model.layers.index(bert) + 1:]

    def run(input_ids, input_mask, segment_ids, window_document=None):
        x = bert.encode({"input_ids": input_ids, "input_mask": input_mask,
                         "segment_ids": segment_ids}, training=False)
        if isinstance(x, dict):  # A windowed model's BertLayer (as_dict).
            x = x["pooled_output"]
        for layer in head:
            if isinstance(layer, WindowPooling):
                x = layer([x, window_document], training=False)
            else:
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
        preprocess = make_preprocessor(make_tokenizer(
            tokenizer, own.tokenizer.vocab_file, own.tokenizer.do_lower_case,
            getattr(own.tokenizer, "keep_accents", False),
            special_tokens=own.tokenizer.special_tokens), own.max_seq_length, bert.stride)
    run = ids_model(model)

    def call(text):
        features = preprocess(text)
        if WINDOW_DOCUMENT in features:  # Rows are windows: not named, not fed apart.
            return run(*[features[n] for n in TOKEN_INPUTS],
                       window_document=features[WINDOW_DOCUMENT])
        return run(**{n: tf.identity(features[n], name=n) for n in TOKEN_INPUTS})

    return call
