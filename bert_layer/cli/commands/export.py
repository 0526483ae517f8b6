"""`bert-layer export`: Google-format checkpoint -> TF1 Hub module."""

from __future__ import annotations

import argparse
import os
import time

from bert_layer.choices import DEFAULT_MAX_SEQ_LENGTH
from bert_layer.cli.commands.convert import LOWER_CASE_CHOICES
from bert_layer.cli.quiet import warnings_as_lines
from bert_layer.text import SAVABLE_TOKENIZERS


def check(args: argparse.Namespace) -> None:
    from bert_layer.cli.preflight import check_checkpoint_folder
    from bert_layer.outputs import check_output_free

    if not os.path.isdir(args.checkpoint):
        raise FileNotFoundError(f"--checkpoint {args.checkpoint} is not a folder; expected one "
                                f"with bert_config.json, vocab.txt and bert_model.ckpt.*.")
    check_checkpoint_folder(args.checkpoint)
    check_output_free(args.out, args.overwrite, kind="module", inputs=[args.checkpoint])


def run(args: argparse.Namespace) -> None:
    from bert_layer.cli import progress
    from bert_layer.export.writer import export_checkpoint

    start = time.perf_counter()
    with progress.working(f"export {args.checkpoint}"), warnings_as_lines("export"):
        result = export_checkpoint(args.checkpoint, args.out, max_seq_length=args.max_seq_length,
                                   do_lower_case=LOWER_CASE_CHOICES[args.do_lower_case],
                                   tokenizer=args.tokenizer, overwrite=args.overwrite)
    for note in result.notes:
        print(note)
    if result.left_out:
        print(result.left_out)
    if not result.has_pooler:
        print("The checkpoint has no pooler: pooled_output is the first token's hidden state.")
    if result.family != "bert":
        print(f"Model family: {result.family}.")
    choice = f" ({result.checkpoint_choice})" if result.checkpoint_choice else ""
    print(f"Exported {args.checkpoint}{choice} -> {args.out} in "
          f"{time.perf_counter() - start:.1f}s")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="Google-format checkpoint -> TF1 Hub module.",
                       description="Exports a BERT checkpoint folder as a TF1 Hub format "
                       "module with tag sets {} and {train} and signatures tokens, text and "
                       "tokenization_info.")
    p.add_argument("--checkpoint", required=True,
                   help="folder with bert_config.json, vocab.txt, bert_model.ckpt.*")
    p.add_argument("--out", required=True, help="module folder to create")
    p.add_argument("--max-seq-length", type=int, default=DEFAULT_MAX_SEQ_LENGTH,
                   help="longest sequence the text signature produces (default %(default)s)")
    p.add_argument("--do-lower-case", choices=tuple(LOWER_CASE_CHOICES), default="auto",
                   help="lower-case text before tokenizing (auto: as bert_config.json records "
                   "it, which convert writes; else inferred from the vocab)")
    p.add_argument("--tokenizer", choices=SAVABLE_TOKENIZERS, default="graph",
                   help="the text signature's tokenizer: graph (tensorflow-text's FastWordpiece "
                   "op; loaders must import tensorflow_text) or core (core TensorFlow ops only: "
                   "the module loads with TensorFlow alone). Same ids; default graph")
    p.add_argument("--overwrite", action="store_true", help="replace an existing module folder")
    p.set_defaults(run=run, check=check)
