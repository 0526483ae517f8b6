"""Compute precision by name: what `--precision` means, as Keras dtype policies.

The BERT maths for each precision lives in the module graph (`tokens`, `tokens_bf16`);
here a name picks the Keras policy under which `BertLayer` runs the matching signature.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bert_layer.choices import PRECISIONS

if TYPE_CHECKING:
    import keras



def policy_name(precision: str) -> str:
    """The Keras dtype policy of `precision` ("fp32" or "bf16")."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}; "
                         f"received {precision!r}.")
    return PRECISIONS[precision]


def with_precision(model: keras.Model, precision: str) -> keras.Model:
    """`model` with its BertLayers computing in `precision`: a clone with the same weights
    (or `model` itself when it already does)."""
    import keras

    from bert_layer.layers.layer import BertLayer

    policy = policy_name(precision)
    layers = [layer for layer in model.layers if isinstance(layer, BertLayer)]
    if all(layer.dtype_policy.name == policy for layer in layers):
        return model

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        config = layer.get_config()
        if isinstance(layer, BertLayer):
            config["dtype"] = policy
        return layer.__class__.from_config(config)

    cloned = keras.models.clone_model(model, clone_function=clone)
    cloned.set_weights(model.get_weights())
    return cloned
