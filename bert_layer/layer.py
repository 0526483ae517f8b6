"""`BertLayer`: a Keras 3 layer that runs a BERT hub module on raw text."""

from __future__ import annotations

import keras
import tensorflow as tf

from bert_layer import contract
from bert_layer.contract import (INFERENCE_TAGS, TOKEN_INPUTS, TOKENS_BF16_SIGNATURE,
                                 TOKENS_SIGNATURE, TRAIN_TAGS)
from bert_layer.graph_import import import_signature
from bert_layer.module import HubModule
from bert_layer.pooling import check_pooling, masked_sequence, pool
from bert_layer.text.packing import Preprocessor, check_max_seq_length
from bert_layer.text.tokenizer import make_tokenizer


def keras_weight_name(module_name: str) -> str:
    """Keras 3 forbids '/' in weight names: `bert/pooler/dense/kernel` becomes
    `bert.pooler.dense.kernel`."""
    return module_name.replace("/", ".")


# Keras compute dtype -> the module signature that computes in it (outputs are float32).
COMPUTE_SIGNATURES = {"float32": TOKENS_SIGNATURE, "bfloat16": TOKENS_BF16_SIGNATURE}


def _check_text_dtype(dtype: str) -> None:
    if dtype != "string":
        raise TypeError(
            f"BertLayer with do_preprocessing=True expects a string tensor of shape [batch] "
            f"(texts, pairs written 'a ||| b'); received dtype {dtype}. For token ids pass "
            f"do_preprocessing=False and (input_ids, input_mask, segment_ids).")


@keras.saving.register_keras_serializable(package="bert_layer")
class BertLayer(keras.layers.Layer):
    """BERT from a TF1 Hub module, as a Keras layer that owns and fine-tunes its weights.

    Args:
      bert_path: str. The module folder (as written by `bert-layer export`, or any TF1
        Hub module with `tokens` and `tokenization_info` signatures). Kept as given, so a
        relative path resolves against the working directory when the model is reloaded.
      max_seq_length: int. Longest packed sequence; batches are padded only to their own
        longest sequence, never to this length.
      pooling: "cls" (the module's pooled output), "mean" or "max" (over real tokens), or
        None (the sequence output, padding positions zeroed).
      n_fine_tune_layers: int. How many of the last encoder layers train; 0 freezes the
        encoder, -1 trains every weight.
      tune_embeddings: bool. Also train the embeddings.
      do_preprocessing: bool. Inputs are strings `[batch]` (pairs written `a ||| b`) when
        True, else the tuple `(input_ids, input_mask, segment_ids)` of int32 `[batch, seq]`.
      tokenizer: "graph" (tensorflow-text ops, serializable and freezable) or "numpy"
        (Google's FullTokenizer through `tf.numpy_function`). Both give identical ids.
      as_dict: bool. Return `{"pooled_output", "sequence_output", "input_mask"}` instead
        of the pooled tensor.

    Call arguments:
      inputs: see `do_preprocessing`.
      training: bool. True runs the module's {"train"} graph (dropout), False its {} graph.

    Precision follows the Keras dtype policy (`dtype="mixed_bfloat16"`, or
    `keras.mixed_precision.set_global_policy`): with a bfloat16 compute dtype the layer runs
    the module's `tokens_bf16` signature (bfloat16 matmuls; LayerNorm, softmax and the
    outputs float32). Weights stay float32 under every policy.

    Note: weights are named as in the module with '/' written '.', because Keras 3 forbids
    '/' in weight names; `module_variable_names` maps them back.
    """

    def __init__(self, bert_path: str, *, max_seq_length: int = 128, pooling: str | None = "cls",
                 n_fine_tune_layers: int = 3, tune_embeddings: bool = False,
                 do_preprocessing: bool = True, tokenizer: str = "graph", as_dict: bool = False,
                 **kwargs):
        super().__init__(**kwargs)
        check_pooling(pooling)
        self.bert_path = bert_path
        self.max_seq_length = max_seq_length
        self.pooling = pooling
        self.n_fine_tune_layers = n_fine_tune_layers
        self.tune_embeddings = tune_embeddings
        self.do_preprocessing = do_preprocessing
        self.tokenizer = tokenizer
        self.as_dict = as_dict

        self._module = HubModule(bert_path)
        self._compute_signature = self._signature_for_policy()
        self._variable_shapes = self._module_variable_shapes()
        self.num_encoder_layers = self._count_encoder_layers()
        if not -1 <= n_fine_tune_layers <= self.num_encoder_layers:
            raise ValueError(
                f"n_fine_tune_layers must be -1 (all), 0 (none) or up to the module's "
                f"{self.num_encoder_layers} encoder layers. Received: {n_fine_tune_layers}")
        self._preprocessor = None
        if do_preprocessing:
            self._check_max_seq_length()
            info = self._module.tokenization_info()
            self._preprocessor = Preprocessor(
                make_tokenizer(tokenizer, info.vocab_file, info.do_lower_case), max_seq_length)
        self._signatures: dict[bool, object] = {}
        self.module_variable_names: dict[str, str] = {}

    def _signature_for_policy(self) -> str:
        """The signature that computes in this layer's compute dtype (checked in the module)."""
        dtype = self.compute_dtype
        if dtype not in COMPUTE_SIGNATURES:
            raise ValueError(
                f"BertLayer computes in float32 or bfloat16; the dtype policy "
                f"{self.dtype_policy.name!r} asks for {dtype}. Use dtype='float32' or "
                f"'mixed_bfloat16'.")
        name = COMPUTE_SIGNATURES[dtype]
        if not self._module.has_signature(name):
            raise ValueError(
                f"{self.bert_path} has no `{name}` signature, which BertLayer runs under the "
                f"{self.dtype_policy.name!r} dtype policy. Modules exported by bert_layer have "
                f"it (re-export the checkpoint with `bert-layer export`); other modules do not: "
                f"use dtype='float32' for them.")
        self._module.check_token_signature(name)
        return name

    # === Weights ===

    def _module_variable_shapes(self) -> dict[str, tuple[int, ...]]:
        graph_nodes = {n.name for n in self._module.signature_graph(
            INFERENCE_TAGS, TOKENS_SIGNATURE)[0].node}
        variables = self._module.variable_nodes(INFERENCE_TAGS)
        shapes = self._module.variable_shapes()
        return {name: shapes[name] for name in sorted(variables)
                if name in graph_nodes and name in shapes}

    def _count_encoder_layers(self) -> int:
        indexes = {int(m.group(1)) for name in self._variable_shapes
                   if (m := contract.LAYER_INDEX.search(name))}
        return max(indexes) + 1 if indexes else 0

    def _check_max_seq_length(self) -> None:
        """Longer packed rows would index past the position embeddings, failing at run time."""
        positions = [shape[0] for name, shape in self._variable_shapes.items()
                     if contract.POSITION_EMBEDDINGS.search(name)]
        check_max_seq_length(self.max_seq_length, positions[0] if positions else None,
                             source=f"the module {self.bert_path}")

    def _is_trainable(self, name: str) -> bool:
        if self.n_fine_tune_layers == -1:
            return True
        if contract.EMBEDDINGS.search(name):
            return self.tune_embeddings
        if contract.POOLER.search(name):
            return self.pooling == "cls" and self.n_fine_tune_layers > 0
        match = contract.LAYER_INDEX.search(name)
        first_tuned = self.num_encoder_layers - self.n_fine_tune_layers
        return match is not None and int(match.group(1)) >= first_tuned

    def build(self, input_shape=None):
        values = self._module.variable_values()
        self._module_weights = {}
        for name in self._variable_shapes:
            # autocast=False: the module's graph casts the float32 weights where it computes
            # in bfloat16; Keras must hand it the variables themselves.
            weight = self.add_weight(
                name=keras_weight_name(name), shape=values[name].shape,
                dtype=values[name].dtype.name, initializer="zeros",
                trainable=self._is_trainable(name), autocast=False)
            weight.assign(values[name])
            self._module_weights[name] = weight
            self.module_variable_names[weight.path] = name
        self.built = True

    def _signature(self, training: bool):
        """The module's `tokens` graph (or `tokens_bf16`, by the dtype policy) for the tag
        set, imported once and reused."""
        if training not in self._signatures:
            specs = {name: tf.TensorSpec([None, None], tf.int32, name=name)
                     for name in TOKEN_INPUTS}
            with tf.init_scope():
                self._signatures[training] = import_signature(
                    self._module, TRAIN_TAGS if training else INFERENCE_TAGS,
                    self._compute_signature, specs,
                    {name: w.value for name, w in self._module_weights.items()})
        return self._signatures[training]

    @property
    def preprocessor(self) -> Preprocessor | None:
        """Strings -> ids as this layer does it (None when do_preprocessing=False)."""
        return self._preprocessor

    # === Call ===

    def preprocess(self, texts: tf.Tensor) -> dict[str, tf.Tensor]:
        """Strings [batch] -> int32 `input_ids`, `input_mask`, `segment_ids` [batch, seq]."""
        if self._preprocessor is None:
            raise ValueError("This BertLayer was built with do_preprocessing=False.")
        texts = tf.convert_to_tensor(texts)
        _check_text_dtype(texts.dtype.name)
        if texts.shape.rank == 2:
            texts = tf.squeeze(texts, axis=1)
        return self._preprocessor(texts)

    def _token_inputs(self, inputs) -> dict[str, tf.Tensor]:
        if self.do_preprocessing:
            return self.preprocess(inputs)
        if isinstance(inputs, dict):
            inputs = [inputs[name] for name in TOKEN_INPUTS]
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 3:
            raise ValueError("BertLayer with do_preprocessing=False expects "
                             f"(input_ids, input_mask, segment_ids); received {inputs!r}.")
        return {name: tf.cast(t, tf.int32) for name, t in zip(TOKEN_INPUTS, inputs)}

    def call(self, inputs, training=None):
        return self.encode(self._token_inputs(inputs), training=training)

    def encode(self, features: dict[str, tf.Tensor], training=None):
        """The layer's output for already tokenized `input_ids`, `input_mask`, `segment_ids`."""
        outputs = self._signature(bool(training))(*[features[n] for n in TOKEN_INPUTS])
        mask = features["input_mask"]
        pooled = pool(self.pooling, outputs["pooled_output"], outputs["sequence_output"], mask)
        if not self.as_dict:
            return pooled
        return {"pooled_output": pooled,
                "sequence_output": masked_sequence(outputs["sequence_output"], mask),
                "input_mask": mask}

    # === Shapes and config ===

    @property
    def hidden_size(self) -> int:
        sig = self._module.meta_graph(INFERENCE_TAGS).signature_def[TOKENS_SIGNATURE]
        return sig.outputs["pooled_output"].tensor_shape.dim[-1].size

    def compute_output_spec(self, inputs, training=None):
        if self.do_preprocessing:
            _check_text_dtype(keras.backend.standardize_dtype(inputs.dtype))
            batch = inputs.shape[0]
        else:
            first = inputs[TOKEN_INPUTS[0]] if isinstance(inputs, dict) else inputs[0]
            batch = first.shape[0]
        h = self.hidden_size
        sequence = keras.KerasTensor((batch, None, h), dtype="float32")
        pooled = sequence if self.pooling is None else keras.KerasTensor((batch, h), "float32")
        if not self.as_dict:
            return pooled
        return {"pooled_output": pooled, "sequence_output": sequence,
                "input_mask": keras.KerasTensor((batch, None), dtype="int32")}

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(bert_path=self.bert_path, max_seq_length=self.max_seq_length,
                      pooling=self.pooling, n_fine_tune_layers=self.n_fine_tune_layers,
                      tune_embeddings=self.tune_embeddings,
                      do_preprocessing=self.do_preprocessing, tokenizer=self.tokenizer,
                      as_dict=self.as_dict)
        return config
