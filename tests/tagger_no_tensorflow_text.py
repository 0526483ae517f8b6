"""Runs `bert-layer predict` on core-tokenizer tagger artifacts in a Python where
`import tensorflow_text` fails. Usage: python tagger_no_tensorflow_text.py TEXTS.txt OUT_DIR
MODEL... ; writes OUT_DIR/<i>.jsonl for the i-th model. Run by tests/test_tagging.py."""

from __future__ import annotations

import os
import sys

import no_tensorflow_text  # noqa: F401  (blocks tensorflow_text: its import has that effect)


def main(texts: str, out_dir: str, models: list[str]) -> int:
    from bert_layer.cli.main import main as cli

    for i, model in enumerate(models):
        code = cli(["predict", "--model", model, "--input", texts, "--output",
                    os.path.join(out_dir, f"{i}.jsonl"), "--quiet"])
        if code:
            return code
    assert "tensorflow_text" not in sys.modules
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
