"""A pinned slice of the default model's outputs: the forward pass must stay what it is.

Parity tests compare the module with tests/reference_bert.py, so a change made to both (to
GELU, say) would pass them; these values would not. They were printed by BertLayer on the
exported all-MiniLM-L6-v2 and agree with transformers' BertModel on the same text
(`last_hidden_state[0, :3, :4]`, `pooler_output[0, :4]`).
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from bert_layer.layers.layer import BertLayer

TEXTS = ["the movie was great .", "is it a pair ||| it is"]
# sequence_output[:, :3, :4] and pooled_output[:, :4].
SEQUENCE_SLICE = np.array([
    [[-0.108970, -0.118446, 0.105665, -0.129566],
     [-0.632640, 0.497888, -0.069625, 0.317008],
     [-0.510457, 0.265911, -0.514448, -0.057388]],
    [[-0.215143, 0.080890, 0.101859, 0.142610],
     [0.193200, 0.231180, -0.297916, 0.300367],
     [0.130282, 0.803935, -0.284801, -0.138472]]], np.float32)
POOLED_SLICE = np.array([[-0.069203, 0.029657, 0.040140, 0.051165],
                         [0.021813, 0.016479, 0.000995, 0.054750]], np.float32)
# [CLS] the movie was great . [SEP] -> 7 real tokens; the pair fills all 9.
MASK = np.array([[1] * 7 + [0] * 2, [1] * 9], np.int32)


@pytest.mark.integration
def test_default_module_outputs_are_pinned(default_module_dir):
    out = BertLayer(default_module_dir, pooling="cls", as_dict=True)(tf.constant(TEXTS))
    np.testing.assert_array_equal(out["input_mask"].numpy(), MASK)
    np.testing.assert_allclose(out["sequence_output"].numpy()[:, :3, :4], SEQUENCE_SLICE,
                               atol=2e-5)
    np.testing.assert_allclose(out["pooled_output"].numpy()[:, :4], POOLED_SLICE, atol=2e-5)
