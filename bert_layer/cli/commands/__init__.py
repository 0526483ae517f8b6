"""The `bert-layer` subcommands, one module each: `register(subparsers)` adds the command's
arguments, `run(args)` does the work. Heavy imports (TensorFlow) happen inside `run`, so that
`--help` and argument errors answer at once."""

from bert_layer.cli.commands import (
    convert,
    demo,
    embed,
    evaluate,
    export,
    freeze,
    inspect,
    predict,
    train,
)

COMMANDS = (convert, export, train, freeze, predict, evaluate, embed, demo, inspect)
