"""`bert-layer embed`: one embedding per text, in length-grouped batches, in input order."""

from __future__ import annotations

import argparse
import sys
import time

from bert_layer.choices import DEFAULT_MAX_SEQ_LENGTH
from bert_layer.cli.columns import (
    add_data_columns,
    add_window_arguments,
    positive_int,
    read_input_texts,
)
from bert_layer.layers.pooling import VECTOR_POOLINGS
from bert_layer.text.strides import check_stride


def check(args: argparse.Namespace) -> None:
    """Windows, module, output path and the texts, before TensorFlow loads."""
    from bert_layer.cli.preflight import check_module_folder

    check_stride(args.stride, args.max_seq_length)
    from bert_layer.inference.formats import EMBEDDING_SUFFIXES, embedding_format
    from bert_layer.outputs import check_output_free

    check_module_folder(args.module)
    embedding_format(args.output)  # Refuse a bad or taken output before the work, not after it.
    check_output_free(args.output, args.overwrite, is_dir=False, inputs=_inputs(args),
                      suffixes=EMBEDDING_SUFFIXES)
    args.texts = read_input_texts(args)


def _inputs(args: argparse.Namespace) -> list[str]:
    return [args.module] + ([args.input] if args.input not in (None, "-") else [])


def run(args: argparse.Namespace) -> None:
    from bert_layer.inference.embed import embed_texts, make_embedder, write_embeddings

    texts = args.texts
    layer = make_embedder(args.module, pooling=args.pooling, normalize=args.normalize,
                          max_seq_length=args.max_seq_length, stride=args.stride,
                          window_pooling=args.window_pooling)
    start = time.perf_counter()
    embeddings = embed_texts(layer, texts, batch_size=args.batch_size)
    seconds = time.perf_counter() - start
    write_embeddings(args.output, texts, embeddings, overwrite=args.overwrite,
                     inputs=_inputs(args))
    print(f"Embedded {len(texts)} texts ({embeddings.shape[1]} values each) in {seconds:.2f}s "
          f"({len(texts) / max(seconds, 1e-9):.0f}/s) -> {args.output}", file=sys.stderr)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("embed", help="write one embedding per text (sentence embeddings).",
                       description="Embeds the texts of a TSV/CSV file, a .txt file (one text "
                       "per line) or standard input with a hub module, in length-grouped "
                       "batches, and writes one vector per text, in input order, as .npy "
                       "(float32 [texts, hidden]) or JSON lines ({text, embedding}).")
    p.add_argument("--module", required=True, help="hub module folder")
    p.add_argument("--input", help="TSV/CSV file with a header, or a .txt file of one text "
                   "per line; default or '-': lines on stdin")
    p.add_argument("--output", required=True, help="output file: .npy or .jsonl")
    p.add_argument("--pooling", required=True, choices=VECTOR_POOLINGS,
                   help="first: the [CLS] token's state (bge; sentence-transformers' cls "
                   "pooling); mean/max: over real tokens (e.g. all-MiniLM-L6-v2: mean); cls: "
                   "BERT's pooler, tanh(dense([CLS]))")
    p.add_argument("--normalize", action="store_true", help="scale each vector to unit "
                   "length (sentence-transformers' normalize_embeddings=True)")
    add_data_columns(p, labels=False)
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--max-seq-length", type=int, default=DEFAULT_MAX_SEQ_LENGTH,
                   help="longer texts are truncated, or read as windows with --stride "
                   "(default: %(default)s)")
    add_window_arguments(p, "A text's vector is the mean (or max) of its windows' vectors "
                         "(normalized again with --normalize).")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(run=run, check=check)
