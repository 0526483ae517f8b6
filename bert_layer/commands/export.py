"""`bert-layer export`: Google-format checkpoint -> TF1 Hub module."""

from __future__ import annotations

import argparse
import time


def run(args: argparse.Namespace) -> None:
    from bert_layer.export.writer import export_module

    start = time.perf_counter()
    lower = {"auto": None, "yes": True, "no": False}[args.do_lower_case]
    export_module(args.checkpoint, args.out, max_seq_length=args.max_seq_length,
                  do_lower_case=lower, tokenizer=args.tokenizer, overwrite=args.overwrite)
    print(f"Exported {args.checkpoint} -> {args.out} in {time.perf_counter() - start:.1f}s")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="Google-format checkpoint -> TF1 Hub module.",
                       description="Exports a BERT checkpoint folder as a TF1 Hub format "
                       "module with tag sets {} and {train} and signatures tokens, text and "
                       "tokenization_info.")
    p.add_argument("--checkpoint", required=True,
                   help="folder with bert_config.json, vocab.txt, bert_model.ckpt.*")
    p.add_argument("--out", required=True, help="module folder to create")
    p.add_argument("--max-seq-length", type=int, default=128,
                   help="longest sequence the text signature produces (default 128)")
    p.add_argument("--do-lower-case", choices=("auto", "yes", "no"), default="auto",
                   help="lower-case text before tokenizing (auto: infer from the vocab)")
    p.add_argument("--tokenizer", choices=("graph", "core"), default="graph",
                   help="the text signature's tokenizer: graph (tensorflow-text's FastWordpiece "
                   "op; loaders must import tensorflow_text) or core (core TensorFlow ops only: "
                   "the module loads with TensorFlow alone). Same ids; default graph")
    p.add_argument("--overwrite", action="store_true", help="replace an existing module folder")
    p.set_defaults(run=run)
