"""The `--precision` argument shared by train, freeze, predict (and embed)."""

from __future__ import annotations

import argparse

from bert_layer.choices import PRECISIONS


def add_precision_argument(p: argparse.ArgumentParser, default: str | None) -> None:
    """`--precision {fp32,bf16}`; default None means "as the model was saved"."""
    saved = "as the model was trained" if default is None else default
    p.add_argument("--precision", choices=tuple(PRECISIONS), default=default,
                   help=f"compute precision of the BERT encoder: fp32, or bf16 (bfloat16 "
                   f"matmuls, float32 weights, LayerNorm and softmax; fastest on CPUs with "
                   f"AVX512-BF16 or AMX) (default: {saved})")
