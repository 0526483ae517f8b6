"""`python -m bert_layer.cli`: the same as the `bert-layer` command."""

import sys

from bert_layer.cli.main import main

sys.exit(main())
