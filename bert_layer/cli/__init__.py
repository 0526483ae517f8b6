"""The command line: `main.py` parses and dispatches, `commands/` holds one module per
subcommand (`check` without TensorFlow, then `run`), and the helpers they share."""
