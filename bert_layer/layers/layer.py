"""`BertLayer`: a Keras 3 layer that runs a BERT hub module on raw text."""

from __future__ import annotations

import shutil
import tempfile
import weakref

import keras
import tensorflow as tf

from bert_layer import contract
from bert_layer.choices import DEFAULT_MAX_SEQ_LENGTH, WINDOW_POOLINGS
from bert_layer.contract import (
    INFERENCE_TAGS,
    TOKEN_INPUTS,
    TOKENS_BF16_SIGNATURE,
    TOKENS_SIGNATURE,
    TRAIN_TAGS,
)

# The submodule, not its names: importing this first starts keras, whose registration hook
# (bert_layer/__init__.py) imports this module while module_source is half-initialised.
from bert_layer.layers import module_source
from bert_layer.layers.graph_import import import_signature
from bert_layer.layers.hub_module import HubModule
from bert_layer.layers.pooling import check_pooling, masked_sequence, pool, warn_if_untrained_pooler
from bert_layer.layers.window_pooling import check_window_pooling, pool_windows
from bert_layer.text.packing import Preprocessor, check_max_seq_length
from bert_layer.text.strides import check_stride
from bert_layer.text.tokenizer import make_tokenizer
from bert_layer.text.windows import WINDOW_DOCUMENT, make_preprocessor


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


def _replica_component(variable: tf.Variable) -> tf.Variable:
    """The copy of `variable` that the current replica reads: its component on the replica's
    device under a `tf.distribute` strategy (in cross-replica context, the first local copy),
    `variable` itself otherwise.

    `import_signature` captures variable handles; a distributed variable has no single handle
    (its `.handle` raises outside replica context, as inside `tf.init_scope`).
    """
    if not isinstance(variable, tf.distribute.DistributedValues):
        return variable
    components = tf.distribute.get_strategy().experimental_local_results(variable)
    replica = tf.distribute.get_replica_context()
    if replica is None or len(components) == 1:
        return components[0]
    # `devices` is [device] or [[device]], depending on the strategy.
    device = tf.DeviceSpec.from_string(tf.nest.flatten(replica.devices)[0])
    for component in components:
        if tf.DeviceSpec.from_string(component.device) == device:
            return component
    raise ValueError(f"No copy of {variable.name} on the replica's device {device.to_string()}; "
                     f"copies are on {[c.device for c in components]}.")


@keras.saving.register_keras_serializable(package="bert_layer")
class BertLayer(keras.layers.Layer):
    """BERT from a TF1 Hub module, as a Keras layer that owns and fine-tunes its weights.

    Args:
      module: str. The module folder (as written by `bert-layer export`, or any TF1
        Hub module with `tokens` and `tokenization_info` signatures). Kept as given in the
        config; a saved `.keras` model carries the module's graph and vocabulary itself
        (`save_assets`), so it loads without this folder. Models saved before that look
        for the folder relative to the working folder, then to `module_search_dirs`.
        (Named `bert_path` before; configs with that name still load.)
      max_seq_length: int. Longest packed sequence; batches are padded only to their own
        longest sequence, never to this length.
      pooling: "cls" (the module's pooled output: BERT's pooler, tanh(dense([CLS]))),
        "first" (the raw [CLS] state: what sentence-transformers and bge call CLS pooling),
        "mean" or "max" (over real tokens), or None (the sequence output, padding positions
        zeroed). A module without pooler weights warns on "cls": use "first".
      normalize: bool. Scale each pooled vector to unit L2 norm, as embedding models do
        (sentence-transformers' `normalize_embeddings=True`). Needs a pooling.
      n_fine_tune_layers: int. How many of the last encoder layers train; 0 freezes the
        encoder, -1 trains every weight. ALBERT's layers share one set of weights, applied
        at every depth: there any value >= 1 trains that shared layer (so every depth
        changes, the last N alone cannot), 0 freezes it.
      tune_embeddings: bool. Also train the embeddings (and ELECTRA's and ALBERT's projection
        of them to the hidden size).
      do_preprocessing: bool. Inputs are strings `[batch]` (pairs written `a ||| b`) when
        True, else the tuple `(input_ids, input_mask, segment_ids)` of int32 `[batch, seq]`.
      tokenizer: "graph" (tensorflow-text's FastWordpiece op, serializable and freezable),
        "core" (core TensorFlow ops only: frozen graphs load without tensorflow_text) or
        "numpy" (Google's FullTokenizer through `tf.numpy_function`). All give identical ids.
      as_dict: bool. Return `{"pooled_output", "sequence_output", "input_mask"}` instead
        of the pooled tensor (with `stride`: one row per window, and `window_document`, int32
        [windows], the text each window comes from).
      stride: int or None. None cuts texts at `max_seq_length` wordpieces; an int reads a
        longer text as overlapping windows sharing `stride` wordpieces (as a Hugging Face fast
        tokenizer's `stride`; see bert_layer.text.windows), and the pooled output is one
        vector per text: the `window_pooling` of its windows' vectors.
      window_pooling: "mean" or "max" of the windows' (normalized, if asked) vectors,
        normalized again with `normalize`.

    Call arguments:
      inputs: see `do_preprocessing`.
      training: bool. True runs the module's {"train"} graph (dropout), False its {} graph.
        A layer with nothing to train (`trainable=False`, or no weight selected by
        `n_fine_tune_layers`/`tune_embeddings`/a trained pooler) runs the {} graph even
        when training, as Keras's frozen layers (BatchNormalization) do: dropout
        regularizes weights that learn, and a frozen encoder is a fixed feature extractor.

    The weights start as the module's values however the layer is built (functional,
    sequential, inside a subclassed model's first call, under `tf.function`).

    Precision follows the Keras dtype policy (`dtype="mixed_bfloat16"`, or
    `keras.mixed_precision.set_global_policy`): with a bfloat16 compute dtype the layer runs
    the module's `tokens_bf16` signature (bfloat16 matmuls; LayerNorm, softmax and the
    outputs float32). Weights stay float32 under every policy.

    Note: weights are named as in the module with '/' written '.', because Keras 3 forbids
    '/' in weight names; `module_variable_names` maps them back.
    """

    def __init__(self, module: str | None = None, *, max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH,
                 pooling: str | None = "cls", normalize: bool = False,
                 n_fine_tune_layers: int = 3, tune_embeddings: bool = False,
                 do_preprocessing: bool = True, tokenizer: str = "graph", as_dict: bool = False,
                 stride: int | None = None, window_pooling: str = WINDOW_POOLINGS[0],
                 bert_path: str | None = None, _open_module: bool = True, **kwargs):
        super().__init__(**kwargs)
        check_pooling(pooling, normalize)
        check_stride(stride, max_seq_length)
        check_window_pooling(window_pooling)
        if stride is not None and not do_preprocessing:
            raise ValueError("stride reads texts as windows: it needs do_preprocessing=True.")
        if stride is not None and pooling is None and not as_dict:
            raise ValueError("stride gives one vector per text from its windows: it needs a "
                             "pooling, or as_dict=True for the windows' sequence outputs.")
        self.module = module_source.module_argument(module, bert_path)
        self.max_seq_length = max_seq_length
        self.pooling = pooling
        self.normalize = normalize
        self.n_fine_tune_layers = n_fine_tune_layers
        self.tune_embeddings = tune_embeddings
        self.do_preprocessing = do_preprocessing
        self.tokenizer = tokenizer
        self.as_dict = as_dict
        self.stride = stride
        self.window_pooling = window_pooling

        self._module: HubModule | None = None
        self._preprocessor = None
        self._variable_shapes: dict[str, tuple[int, ...]] = {}
        self._hidden_size: int | None = None
        self._awaiting_weights = False  # Built from a saved config; load_own_variables fills.
        self._signatures: dict[tuple[bool, str], object] = {}
        # The signature of the dtype policy (tokens or tokens_bf16), once the module is known.
        self._compute_signature: str | None = None
        self.module_variable_names: dict[str, str] = {}
        if _open_module:  # from_config defers: a saved model may carry its module.
            self._attach_module(HubModule(module_source.resolve_module(self.module)))

    @classmethod
    def from_config(cls, config: dict) -> "BertLayer":
        """The module is opened when first needed: at build, or from the `.keras` file's
        assets (`load_assets`), which Keras reads only after building the layer."""
        return cls(**config, _open_module=False)

    def _attach_module(self, module: HubModule) -> None:
        """Uses `module` for the graph and vocabulary; checks the settings against it."""
        with tf.init_scope():  # Lookup tables belong outside any function being traced.
            self._compute_signature = self._signature_for_policy(module)
            if not self._variable_shapes:
                self._set_variable_shapes(module_source.module_variable_shapes(module))
            self._module = module
            sig = module.meta_graph(INFERENCE_TAGS).signature_def[TOKENS_SIGNATURE]
            self._hidden_size = sig.outputs["pooled_output"].tensor_shape.dim[-1].size
            self._preprocessor = None
            if self.do_preprocessing:
                info = module.tokenization_info()
                self._preprocessor = make_preprocessor(
                    make_tokenizer(self.tokenizer, info.vocab_file, info.do_lower_case,
                                   info.keep_accents, special_tokens=info.special_tokens),
                    self.max_seq_length, self.stride)
            self._signatures = {}

    def _ensure_module(self) -> HubModule:
        if self._module is None:
            self._attach_module(HubModule(module_source.resolve_module(self.module)))
        return self._module

    def _set_variable_shapes(self, shapes: dict[str, tuple[int, ...]]) -> None:
        self._variable_shapes = shapes
        self.num_encoder_layers = self._count_encoder_layers()
        warn_if_untrained_pooler(
            self.pooling, any(contract.POOLER.search(n) for n in shapes),
            source=f"The module {self.module}")
        if self.shares_layers and self.n_fine_tune_layers >= -1:
            pass  # Any depth trains the one shared layer (see the class docstring).
        elif not -1 <= self.n_fine_tune_layers <= self.num_encoder_layers:
            raise ValueError(
                f"n_fine_tune_layers must be -1 (all), 0 (none) or up to the module's "
                f"{self.num_encoder_layers} encoder layers. Received: {self.n_fine_tune_layers}")
        if self.do_preprocessing:
            self._check_max_seq_length()

    def _signature_for_policy(self, module: HubModule) -> str:
        """The signature that computes in this layer's compute dtype (checked in `module`)."""
        dtype = self.compute_dtype
        if dtype not in COMPUTE_SIGNATURES:
            raise ValueError(
                f"BertLayer computes in float32 or bfloat16; the dtype policy "
                f"{self.dtype_policy.name!r} asks for {dtype}. Use dtype='float32' or "
                f"'mixed_bfloat16'.")
        name = COMPUTE_SIGNATURES[dtype]
        if not module.has_signature(name):
            raise ValueError(
                f"{self.module} has no `{name}` signature, which BertLayer runs under the "
                f"{self.dtype_policy.name!r} dtype policy. Modules exported by bert_layer have "
                f"it (re-export the checkpoint with `bert-layer export`); other modules do not: "
                f"use dtype='float32' for them.")
        module.check_token_signature(name)
        return name

    # === Weights ===

    def _count_encoder_layers(self) -> int:
        """Encoder layers with weights of their own (`layer_N` scopes); a module whose layers
        share one set of weights (ALBERT) counts that one."""
        indexes = {int(m.group(1)) for name in self._variable_shapes
                   if (m := contract.LAYER_INDEX.search(name))}
        if indexes:
            return max(indexes) + 1
        return 1 if self.shares_layers else 0

    @property
    def shares_layers(self) -> bool:
        """True for a module whose encoder layers share one set of weights (ALBERT)."""
        return any(contract.SHARED_LAYER_GROUP.search(n) for n in self._variable_shapes)

    def _check_max_seq_length(self) -> None:
        """Longer packed rows would index past the position embeddings, failing at run time."""
        positions = [shape[0] for name, shape in self._variable_shapes.items()
                     if contract.POSITION_EMBEDDINGS.search(name)]
        check_max_seq_length(self.max_seq_length, positions[0] if positions else None,
                             source=f"the module {self.module}")

    def _is_trainable(self, name: str) -> bool:
        if self.n_fine_tune_layers == -1:
            return True
        if contract.EMBEDDINGS.search(name) or contract.EMBEDDING_PROJECTION.search(name):
            return self.tune_embeddings
        if contract.SHARED_LAYER_GROUP.search(name):  # Used at every depth, the last too.
            return self.n_fine_tune_layers > 0
        if contract.POOLER.search(name):
            return self.pooling == "cls" and self.n_fine_tune_layers > 0
        match = contract.LAYER_INDEX.search(name)
        first_tuned = self.num_encoder_layers - self.n_fine_tune_layers
        return match is not None and int(match.group(1)) >= first_tuned

    def build(self, input_shape=None):
        values = {} if self._awaiting_weights else self._ensure_module().variable_values()
        self._module_weights = {}
        for name, shape in self._variable_shapes.items():
            # Awaiting: shapes from the saved config, values loaded from the file next.
            value = values.get(name)
            # autocast=False: the module's graph casts the float32 weights where it computes
            # in bfloat16; Keras must hand it the variables themselves.
            weight = self.add_weight(
                name=keras_weight_name(name), shape=shape,
                dtype="float32" if value is None else value.dtype.name,
                initializer="zeros" if value is None else module_source.ModuleValue(value),
                trainable=self._is_trainable(name), autocast=False)
            self._module_weights[name] = weight
            self.module_variable_names[weight.path] = name
        self.built = True

    # === Saving: the shapes in the build config, the module's graph in the assets ===

    def get_build_config(self) -> dict | None:
        config = super().get_build_config()
        if self.built:
            config = dict(config or {}, hidden_size=self.hidden_size, module_variables={
                name: list(shape) for name, shape in self._variable_shapes.items()})
        return config

    def build_from_config(self, config: dict) -> None:
        """Creates the weights from the saved shapes, without the module: Keras loads
        their values, then the module's graph (`load_assets`), after building."""
        if "module_variables" in config and self._module is None:
            self._set_variable_shapes(
                {name: tuple(shape) for name, shape in config["module_variables"].items()})
            self._hidden_size = config["hidden_size"]
            self._awaiting_weights = True
        self.build(config.get("input_shape"))

    def load_own_variables(self, store) -> None:
        super().load_own_variables(store)
        self._awaiting_weights = False

    def save_assets(self, dir_path: str) -> None:
        """Writes the module's graphs and vocabulary (its variables are this layer's
        weights, saved by Keras)."""
        module_source.copy_module_graph(self._ensure_module().path, dir_path)

    def load_assets(self, dir_path: str) -> None:
        """Runs the module saved with the model. Keras deletes `dir_path` after loading,
        so the layer keeps a copy of its own, removed with the layer."""
        if not module_source.has_module_graph(dir_path):
            return  # Saved without its module: the path in the config names it.
        copy = tempfile.mkdtemp(prefix="bert_layer_module_")
        weakref.finalize(self, shutil.rmtree, copy, ignore_errors=True)
        module_source.copy_module_graph(dir_path, copy)
        self._attach_module(HubModule(copy))

    def _signature(self, training: bool):
        """The module's `tokens` graph (or `tokens_bf16`, by the dtype policy) for the tag
        set, reading the weights of the current replica: imported once per (tag set, replica
        device) and reused.

        Under a `tf.distribute` strategy each weight is a mirrored variable with one copy per
        device; each replica's graph must capture its own copy (the strategy then aggregates
        their gradients), so one graph is kept per device.
        """
        if self._awaiting_weights:
            raise ValueError(
                f"BertLayer '{self.name}' was rebuilt from a saved config but its weights "
                f"were never loaded: load the model with keras.models.load_model, or call "
                f"load_weights, before running it.")
        module = self._ensure_module()
        weights = {name: _replica_component(w.value) for name, w in self._module_weights.items()}
        key = (training, next(iter(weights.values())).device if weights else "")
        if key not in self._signatures:
            specs = {name: tf.TensorSpec([None, None], tf.int32, name=name)
                     for name in TOKEN_INPUTS}
            with tf.init_scope():
                self._signatures[key] = import_signature(
                    module, TRAIN_TAGS if training else INFERENCE_TAGS,
                    self._compute_signature, specs, weights)
        return self._signatures[key]

    @property
    def preprocessor(self) -> Preprocessor | None:
        """Strings -> ids as this layer does it (None when do_preprocessing=False)."""
        if self.do_preprocessing:
            self._ensure_module()
        return self._preprocessor

    # === Call ===

    def preprocess(self, texts: tf.Tensor) -> dict[str, tf.Tensor]:
        """Strings [batch] -> int32 `input_ids`, `input_mask`, `segment_ids` [batch, seq]
        (with `stride`: [windows, seq], and `window_document` [windows])."""
        if not self.do_preprocessing:
            raise ValueError("This BertLayer was built with do_preprocessing=False.")
        self._ensure_module()
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
        features = self._token_inputs(inputs)
        outputs = self.encode(features, training=training)
        if WINDOW_DOCUMENT not in features:
            return outputs
        document = features[WINDOW_DOCUMENT]
        if self.as_dict:
            return {**outputs, WINDOW_DOCUMENT: document}
        return pool_windows(outputs, document, self.window_pooling, normalize=self.normalize)

    def encode(self, features: dict[str, tf.Tensor], training=None):
        """The layer's output for already tokenized `input_ids`, `input_mask`, `segment_ids`."""
        dropout = bool(training) and bool(self.trainable_weights)  # See the class docstring.
        outputs = self._signature(dropout)(*[features[n] for n in TOKEN_INPUTS])
        mask = features["input_mask"]
        pooled = pool(self.pooling, outputs["pooled_output"], outputs["sequence_output"], mask,
                      normalize=self.normalize)
        if not self.as_dict:
            return pooled
        return {"pooled_output": pooled,
                "sequence_output": masked_sequence(outputs["sequence_output"], mask),
                "input_mask": mask}

    # === Shapes and config ===

    @property
    def hidden_size(self) -> int:
        if self._hidden_size is None:
            self._ensure_module()
        return self._hidden_size

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
        if self.stride is not None:  # One row per window.
            return {"pooled_output": keras.KerasTensor((None, *pooled.shape[1:]), "float32"),
                    "sequence_output": keras.KerasTensor((None, None, h), dtype="float32"),
                    "input_mask": keras.KerasTensor((None, None), dtype="int32"),
                    WINDOW_DOCUMENT: keras.KerasTensor((None,), dtype="int32")}
        return {"pooled_output": pooled, "sequence_output": sequence,
                "input_mask": keras.KerasTensor((batch, None), dtype="int32")}

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(module=self.module, max_seq_length=self.max_seq_length,
                      pooling=self.pooling, normalize=self.normalize,
                      n_fine_tune_layers=self.n_fine_tune_layers,
                      tune_embeddings=self.tune_embeddings,
                      do_preprocessing=self.do_preprocessing, tokenizer=self.tokenizer,
                      as_dict=self.as_dict)
        if self.stride is not None:  # Configs without them load as before.
            config.update(stride=self.stride, window_pooling=self.window_pooling)
        return config
