"""Batch inference on Apache Beam: a RunInference `ModelHandler` for the project's classifiers
and a ready pipeline (file in, predictions out, in input order).

Needs the optional extra: `pip install "bert_layer[beam]"`. Any model `load_classifier` reads
(frozen graph `.pb`, Keras `.keras`, ...) works: the handler only uses the `Classifier` protocol.
Each batch Beam hands to the model is split into length-grouped sub-batches, as
`bert-layer predict` does, so padding stays small.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import (
    KeyedModelHandler,
    ModelHandler,
    PredictionResult,
    RunInference,
)
from apache_beam.options.pipeline_options import PipelineOptions

from bert_layer.inference.predict import predict_probabilities, write_predictions
from bert_layer.inference.runtimes import Classifier, load_classifier
from bert_layer.outputs import atomic_output

# Beam batches hold this many length-grouped sub-batches at most: enough texts to group.
SUB_BATCHES_PER_BEAM_BATCH = 8


class Prediction(NamedTuple):
    """One text's result: float32 probabilities (a regressor's scores) [C] and what they
    mean."""

    probabilities: np.ndarray
    class_names: tuple[str, ...]
    multi_label: bool
    task: str = "classify"


class ClassifierModelHandler(ModelHandler[str, PredictionResult, Classifier]):
    """Texts in, `PredictionResult(example=text, inference=Prediction)` out.

    Args:
      model_path: any file `bert_layer.inference.runtimes.load_classifier` reads; every worker
        loads it once (local paths must exist on the workers).
      batch_size: texts per model call; each Beam batch is cut into length-grouped
        sub-batches of this size.
      max_batch_size: texts per Beam batch (default `SUB_BATCHES_PER_BEAM_BATCH` sub-batches).
    """

    def __init__(self, model_path: str, *, batch_size: int = 32,
                 max_batch_size: int | None = None):
        max_batch_size = max_batch_size or batch_size * SUB_BATCHES_PER_BEAM_BATCH
        super().__init__(min_batch_size=1, max_batch_size=max_batch_size)
        self.model_path = model_path
        self.batch_size = batch_size

    def load_model(self) -> Classifier:
        return load_classifier(self.model_path)

    def run_inference(self, batch: Sequence[str], model: Classifier,
                      inference_args: dict[str, Any] | None = None
                      ) -> Iterable[PredictionResult]:
        texts = list(batch)
        probabilities = predict_probabilities(model, texts, batch_size=self.batch_size)
        names, multi = tuple(model.class_names), bool(model.multi_label)
        task = getattr(model, "task", "classify")
        return [PredictionResult(text, Prediction(row, names, multi, task), self.model_path)
                for text, row in zip(texts, probabilities)]

    def get_num_bytes(self, batch: Sequence[str]) -> int:
        return sum(len(text.encode("utf-8")) for text in batch)

    def get_metrics_namespace(self) -> str:
        return "bert_layer"


def indexed_predictions(texts: beam.PCollection, handler: ClassifierModelHandler
                        ) -> beam.PCollection:
    """(index, text) -> (index, PredictionResult(text, Prediction)). `Reshuffle` spreads the
    texts over the workers (without it a single source split sends every text to one
    worker)."""
    return (texts
            | "Spread" >> beam.Reshuffle()
            | "Classify" >> RunInference(KeyedModelHandler(handler)))


def _write_in_input_order(indexed: list[tuple[int, PredictionResult]], n_texts: int,
                          output: str, fmt: str, overwrite: bool) -> None:
    """Writes every prediction, sorted back into input order, as `bert-layer predict` does."""
    indexed = sorted(indexed, key=lambda pair: pair[0])
    if [index for index, _ in indexed] != list(range(n_texts)):
        raise ValueError(f"The pipeline returned {len(indexed)} predictions for {n_texts} "
                         f"texts.")
    texts = [result.example for _, result in indexed]
    probabilities = np.stack([result.inference.probabilities for _, result in indexed])
    first = indexed[0][1].inference
    with atomic_output(output, overwrite=overwrite, is_dir=False) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            write_predictions(f, texts, probabilities.astype(np.float32),
                              list(first.class_names), first.multi_label, fmt, first.task)


def run_predict_pipeline(model_path: str, texts: list[str], output: str, *, fmt: str,
                         batch_size: int = 32, beam_args: Sequence[str] = (),
                         overwrite: bool = False) -> None:
    """Classifies `texts` with Beam (runner and its options from `beam_args`, e.g.
    ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]) and writes
    `output` (csv or jsonl) in input order. The texts travel with their index; one worker
    gathers the results and writes the file (atomically: a failed run leaves nothing)."""
    if not texts:
        raise ValueError("No texts to classify.")
    handler = ClassifierModelHandler(os.fspath(model_path), batch_size=batch_size)
    options = PipelineOptions(list(beam_args))
    output = os.path.abspath(output)
    with beam.Pipeline(options=options) as pipeline:
        # reshuffle=False: `indexed_predictions` reshuffles, whatever the source.
        indexed = pipeline | "Texts" >> beam.Create(list(enumerate(texts)), reshuffle=False)
        _ = (indexed_predictions(indexed, handler)
             | "Gather" >> beam.combiners.ToList()
             | "Write" >> beam.Map(_write_in_input_order, n_texts=len(texts), output=output,
                                   fmt=fmt, overwrite=overwrite))
