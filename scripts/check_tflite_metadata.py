"""Checks a `.tflite` from `bert-layer freeze --format tflite` with tflite-support itself: its
metadata parser reads the metadata and associated files, and the Task Library's
BertNLClassifier classifies raw text with the file alone.

tflite-support pins protobuf < 4, which TensorFlow 2.21 cannot load beside: run this in an
environment of its own (no TensorFlow needed), e.g.
    python -m venv /tmp/tfls && /tmp/tfls/bin/pip install tflite-support==0.4.4 "numpy<2"
    /tmp/tfls/bin/python scripts/check_tflite_metadata.py model.tflite "a fine film" ...
(its native library needs libusb-1.0: `apt-get install libusb-1.0-0`). Prints one JSON object:
the metadata as tflite-support reads it, the packed files, and the classifier's
categories per text.
"""

from __future__ import annotations

import json
import sys


def main(path: str, texts: list[str]) -> dict:
    from tflite_support import metadata
    from tflite_support.task import text

    displayer = metadata.MetadataDisplayer.with_model_file(path)
    classifier = text.BertNLClassifier.create_from_file(path)
    results = []
    for sentence in texts:
        categories = classifier.classify(sentence).classifications[0].categories
        results.append({c.category_name: c.score for c in categories})
    return {"metadata": json.loads(displayer.get_metadata_json()),
            "packed_files": sorted(displayer.get_packed_associated_file_list()),
            "classifications": results}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2:]), indent=1))
