"""The `bert-layer` command line: parses arguments and turns errors into one line, exit 2.

Each subcommand lives in `bert_layer.cli.commands`; this module only dispatches: it parses, runs
the command's TensorFlow-free `check(args)` if it has one, loads TensorFlow quietly, runs the
command, and reports any failure the user can fix as one line naming the CLI flags (the
library's messages name Python arguments; `_flag_names` maps them). No TensorFlow import here.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import re
import sys

from bert_layer.cli import progress
from bert_layer.cli.commands import COMMANDS
from bert_layer.cli.quiet import load_tensorflow_quietly, silence_environment

EXIT_ERROR = 2  # Bad input: one line on stderr.
EXIT_INTERRUPTED = 130  # SIGINT, as a shell reports it.
EXIT_BROKEN_PIPE = 141  # The reader of stdout went away (`| head`), as for SIGPIPE.

# Library argument names whose CLI flag is not the name with dashes.
_FLAG_ALIASES = {"n_fine_tune_layers": "--fine-tune-layers", "bert_path": "--module",
                 "overwrite=True": "--overwrite", "stride": "--stride"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bert-layer", description="BERT checkpoints -> hub modules -> Keras models.")
    # Jobs that run other commands (demo) get this dispatcher rather than importing it.
    parser.set_defaults(dispatch=main)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    for command_parser in sub.choices.values():
        noise = command_parser.add_mutually_exclusive_group()
        noise.add_argument("--verbose", action="store_true",
                           help="show TensorFlow's start-up logs and warnings")
        noise.add_argument("--quiet", action="store_true",
                           help="no progress bars (they show only on a terminal anyway)")
        command_parser.set_defaults(flags=_flag_names(command_parser))
    return parser


def _flag_names(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Library argument name -> CLI flag, for the flags whose name has an underscore."""
    flags = dict(_FLAG_ALIASES)
    for action in parser._actions:
        long = [s for s in action.option_strings if s.startswith("--")]
        if long and "_" in action.dest:
            flags[action.dest] = long[0]
    return flags


def _with_flags(message: str, flags: dict[str, str]) -> str:
    """Replaces whole-word library argument names by their flags."""
    for name in sorted(flags, key=len, reverse=True):
        message = re.sub(rf"(?<![\w./\\-]){re.escape(name)}(?![\w/\\])", flags[name], message)
    return message


# A full disk or a file-size limit (ulimit -f), as OSError numbers and as TensorFlow words them
# inside its own errors (whose first line is often only "Graph execution error:").
_DISK_FULL = {errno.ENOSPC: "No space left on device", errno.EFBIG: "File too large",
              errno.EDQUOT: "Disk quota exceeded"}


def _disk_full(error: BaseException, args: argparse.Namespace) -> str | None:
    """One line naming the path for an error caused by a full disk or a size limit."""
    for cause in _causes(error):
        if isinstance(cause, OSError) and cause.errno in _DISK_FULL:
            path = cause.filename or _output_of(args)
            return f"{_DISK_FULL[cause.errno]} while writing {path}; free space (or raise the " \
                   f"limit) and run the command again. Nothing was written."
    text = str(error)
    for words in _DISK_FULL.values():
        if words.lower() in text.lower():
            return f"{words} while writing {_output_of(args)}; free space (or raise the " \
                   f"limit) and run the command again. Nothing was written."
    return None


def _causes(error: BaseException) -> list[BaseException]:
    chain, seen = [], set()
    while error is not None and id(error) not in seen:
        chain.append(error)
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return chain


def _output_of(args: argparse.Namespace) -> str:
    return str(getattr(args, "out", None) or getattr(args, "output", None) or "the output")


def _user_error(error: BaseException) -> str | None:
    """The one-line message of a failure the user can fix, or None for a bug (traceback)."""
    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(error, tf.errors.OpError):
        # TF appends the node and a graph trace on further lines; the first says what failed.
        message = (error.message or str(error)).strip().splitlines()[0]
    elif isinstance(error, (OSError, ValueError)):
        message = str(error) or type(error).__name__
    else:
        return None
    return " ".join(message.split())


def _note_address_space_limit(command: str) -> None:
    """TensorFlow crashes (a segmentation fault, nothing printed) when an allocation fails
    under an address-space limit (`ulimit -v`); say up front that one is set, and have a crash
    print Python's "Fatal Python error: Segmentation fault" rather than nothing."""
    import faulthandler
    import resource

    if not faulthandler.is_enabled() and sys.stderr is sys.__stderr__:
        with contextlib.suppress(ValueError, OSError, AttributeError):
            faulthandler.enable()
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        print(f"bert-layer {command}: note: an address-space limit (ulimit -v) of "
              f"{soft / 2**30:.1f} GiB is set; TensorFlow crashes (segmentation fault) when a "
              f"model needs more: raise it if this command crashes.", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _note_address_space_limit(args.command)
    if not args.verbose:
        silence_environment()
    progress.set_enabled(False if args.quiet else None)
    try:
        if getattr(args, "check", None):
            args.check(args)  # Before TensorFlow loads: bad input answers at once.
        if not args.verbose:
            # A distribution strategy must be created before TensorFlow sets up its devices.
            load_tensorflow_quietly(set_up_devices=getattr(args, "distribute", "none") == "none")
        args.run(args)
    except BrokenPipeError:
        # Python would complain again when flushing stdout at exit; point it at /dev/null.
        with contextlib.suppress(OSError, ValueError):  # (stdout may be no file at all)
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        print(f"bert-layer {args.command}: interrupted (outputs are written only on "
              f"success).", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # noqa: BLE001 (bugs are re-raised below, with their traceback)
        message = _disk_full(error, args) or _user_error(error)
        if message is None:
            raise
        print(f"bert-layer {args.command}: error: {_with_flags(message, args.flags)}",
              file=sys.stderr)
        return EXIT_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
