"""The `--precision` argument shared by train, freeze, predict (and embed)."""

from __future__ import annotations

import argparse

from bert_layer.choices import INFERENCE_PRECISIONS, PRECISIONS


def add_precision_argument(p: argparse.ArgumentParser, default: str | None,
                           inference: bool = False) -> None:
    """`--precision {fp32,bf16}` (`inference`: also int8, for .tflite models); default None
    means "as the model was saved"."""
    saved = "as the model was trained" if default is None else default
    choices = INFERENCE_PRECISIONS if inference else tuple(PRECISIONS)
    int8 = ("; int8: int8 weights and matmuls, activations quantized per batch, a .tflite "
            "only (--format tflite)") if inference else ""
    p.add_argument("--precision", choices=choices, default=default,
                   help=f"compute precision of the BERT encoder: fp32, or bf16 (bfloat16 "
                   f"matmuls, float32 weights, LayerNorm and softmax; fastest on CPUs with "
                   f"AVX512-BF16 or AMX){int8} (default: {saved})")
