"""MPNet's relative position buckets as a numpy table (numpy only: no TensorFlow, no family
imports), read by `module_fn` for the graph's constant and by `families.mpnet`."""

from __future__ import annotations

import math

import numpy as np

# MPNetEncoder.compute_position_bias's defaults: transformers passes neither, so these hold
# whatever the config's `relative_attention_num_buckets` says.
NUM_BUCKETS = 32
MAX_DISTANCE = 128


def relative_position_buckets(max_positions: int) -> np.ndarray:
    """int32 [2P - 1]: the bucket of relative position r = key - query, at index r + P - 1,
    for every r a P-position model can see.

    `MPNetEncoder.relative_position_bucket` in numpy, in the same float32 steps (the bucket
    is a truncated float32 logarithm, so a float64 one could land in the next bucket at a
    boundary); tests check it against transformers' for every r. A table (a graph constant)
    rather than ops, so frozen graphs hold it as it is.
    """
    relative = np.arange(-(max_positions - 1), max_positions, dtype=np.int64)
    n = -relative
    half = NUM_BUCKETS // 2
    bucket = (n < 0).astype(np.int64) * half
    n = np.abs(n)
    max_exact = half // 2
    with np.errstate(divide="ignore"):  # log(0) for n = 0, where is_small picks n anyway.
        scaled = (np.log(n.astype(np.float32) / np.float32(max_exact))
                  / np.float32(math.log(MAX_DISTANCE / max_exact))
                  * np.float32(half - max_exact))
    large = max_exact + np.where(np.isfinite(scaled), scaled, 0).astype(np.int64)
    large = np.minimum(large, half - 1)
    return (bucket + np.where(n < max_exact, n, large)).astype(np.int32)
