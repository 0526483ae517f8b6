"""The `bert-layer` command line: parses arguments and turns errors into one line, exit 2.

Each subcommand lives in `bert_layer.commands`; this module only dispatches.
"""

from __future__ import annotations

import argparse
import os
import sys

from bert_layer.commands import COMMANDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bert-layer", description="BERT checkpoints -> hub modules -> Keras models.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
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
