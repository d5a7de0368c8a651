"""`opq`: product quantisation with a learned rotation (OPQ) over text embeddings, the item codes
of VQ-Rec (Hou et al., WWW 2023) and RPG (Hou et al., KDD 2025, "Generating Long Semantic IDs
in Parallel for Recommendation").

As RPG's release (facebookresearch/RPG_KDD2025, genrec/models/RPG/tokenizer.py): a faiss
`index_factory(d, "OPQ{m},IVF1,PQ{m}x{log2 K}", METRIC_INNER_PRODUCT)` is trained on the text
embeddings of the items of the training split only, then every item is added and its code is
the m PQ sub-codes stored in the single inverted list (m digits of K = 2**nbits codes; RPG:
32 x 256), after a whitened PCA (`pca_dim`, the release's sklearn `PCA(whiten=True)`).

Leakage rule: the quantiser (PCA, OPQ rotation, coarse centroid, PQ codebooks) sees only the
items of the training split's sequences (`Split.train_item_counts > 0`, the release's
`_get_items_for_training` over split_data['train']); items seen only in validation or test,
or never, are encoded with it but shape nothing.

Scope: RPG predicts all digits at once with a parallel head and decodes through a graph of
codes; here the codes are decoded by the benchmark's shared autoregressive backbone, one level
per digit, like every other tokenizer. RPG's parallel decoding is out of scope.

Deviations from the release, each named:
- PCA (whitened, exact SVD) is fitted on the training-split items only (the release fits
  sklearn's PCA on all items). Its size: the release reduces text-embedding-3-large's 3072 dims
  to 512, or, in its config for a sentence-transformers encoder (sentence-t5-base, 768-d), to
  128; our encoder (all-MiniLM-L6-v2, 384-d) is a sentence-transformers one, so 128 at every
  preset (ActionPiece's features, from the same authors, use 128 too). `pca_dim=0` skips it.
- faiss's polysemous training (on by default for `PQ` in index_factory) is turned off: it only
  permutes each sub-quantizer's code labels (to make Hamming distances meaningful for faiss's
  search), which changes no item's grouping and nothing the backbone can see, as each token
  gets its own embedding; it costs minutes of CPU for 32 digits.
- Seeding: faiss seeds OPQ with constants (initial rotation 1234, its inner PQ 1234); we start
  the rotation from a random orthogonal matrix drawn from the run's seed and seed every
  k-means (OPQ's inner PQ, the coarse quantizer, the final PQ) with it, so seeds vary the codes.
  Codes are deterministic for a seed and thread count (faiss's BLAS/LAPACK calls may differ in
  the last bits across thread counts).
- OPQ's inner PQ (which its rotation is optimised for) is given the index's own codebook size;
  faiss's default is always 8 bits, so the two agree at RPG's K = 256 and differ only for
  smaller codebooks (the `quick` preset), where faiss would also need 256 training items.
- Fewer training items than embedding dimensions is an error naming `pca_dim`: faiss's
  OPQMatrix training corrupts the heap there and aborts the process (faiss issue #2637), where
  the release would crash. faiss runs on one thread in the fit (FAISS_THREADS).
- faiss's per-k-means warning about fewer than 39 training points per code is silenced (it
  would print once per OPQ iteration and digit); we log one line instead.
- Collisions: the release keeps items that share all m digits identical; here `collisions`
  (bench/tokenizers/collisions.py) decides, default `suffix` (a numbering token). With m x 8
  bits collisions are rare.

Codes are read from the index's inverted list as the release does (all 8-bit digits are one
byte; other widths unpacked as faiss packs them). The last digit's distances for `sinkhorn` and
`reassign` are those faiss's PQ minimises: the OPQ-rotated vector, minus the coarse centroid
(IndexIVFPQ encodes residuals; with the inner-product metric faiss trains that one centroid
spherically, so it is the unit-norm mean direction, not the mean), sliced to the last
sub-vector, against the last sub-codebook.
Token spelling: LETTER's <a_12>, <b_3>, ... (as tiger and letter) when digits <= 25; beyond
that the alphabet runs out (base.level_token), so digit j's code k is <d{j}_{k}> and the
numbering token <d{m}_{k}>, with the same collision semantics (`resolve_codes(..., spell=)`).

Presets: `paper` is RPG's 32 digits x 256 codes. `cpu` (ML-100K: 1,682 items, ~1,650 in the
training split, 384-d MiniLM) uses 4 digits x 256, the same 4 tokens per item and 256 codes per
level as tiger (3 levels + its numbering token) and letter (4 levels): the backbone's sequence
length and decoding steps, hence its cost, then match, so differences come from the codes. RPG's
long codes pay off with its parallel head; with autoregressive decoding 32 digits cost 8x the
decoding steps and 8x the history tokens. `quick` (400 synthetic items) uses 4 x 32 codes, the
codebook size tiger and letter use there.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from bench.errors import BenchError
from bench.options import check
from bench.tokenizers.base import FitContext, Tokenizer
from bench.tokenizers.collisions import COLLISION_POLICIES, resolve_codes
from bench.tokenizers.rqvae import checked_embeddings

MAX_LETTER_DIGITS = 25  # one letter per digit plus the numbering token's (base.level_token)
FAISS_MIN_POINTS_PER_CODE = 39  # faiss's Clustering.min_points_per_centroid, below which it warns
# The fit runs faiss on one thread: when other work holds the cores, its spinning OpenMP threads
# made a fit of seconds take minutes (400 items, 384-d: 31 s on one thread, over 100 s on two).
FAISS_THREADS = 1


@dataclass
class QuantiserOptions:
    """The OPQ quantiser's settings, shared with actionpiece (its item features)."""

    digits: int = 32  # m sub-quantizers = tokens per item; RPG default 32 (its best runs: 16..64)
    codebook_size: int = 256  # K codes per digit, a power of two (2**nbits); RPG: 256
    pca_dim: int = 0  # 0 = no PCA; else whitened PCA to this many dims, fitted on training items

    def __post_init__(self) -> None:
        check(self.digits >= 1, "digits must be >= 1")
        check(self.codebook_size >= 2 and self.codebook_size & (self.codebook_size - 1) == 0,
              f"codebook_size must be a power of two >= 2 (faiss PQ uses log2 of it bits), got {self.codebook_size}")
        check(self.codebook_size <= 1 << 16, "codebook_size must be <= 65536 (16 bits per digit)")
        check(self.pca_dim >= 0, "pca_dim must be >= 0 (0 = no PCA)")

    @property
    def nbits(self) -> int:
        return int(self.codebook_size).bit_length() - 1


@dataclass
class OPQOptions(QuantiserOptions):
    # whitened PCA first, as the release always does (sent_emb_pca: 128 in its config for
    # sentence-transformers' sentence-t5, 512 for text-embedding-3-large); 0 = none
    pca_dim: int = 128
    collisions: str = "suffix"  # see collisions.py; the release keeps collisions (`keep`)

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.collisions in COLLISION_POLICIES, f"collisions must be one of {COLLISION_POLICIES}")


PRESET_OPTIONS: dict[str, dict[str, object]] = {
    "quick": {"digits": 4, "codebook_size": 32},  # 400 synthetic items: tiger's quick codebook size
    "cpu": {"digits": 4, "codebook_size": 256},  # ML-100K: 4 tokens x 256 codes, as tiger and letter
    "paper": {"digits": 32, "codebook_size": 256},  # RPG's defaults
}


class OPQTokenizer(Tokenizer):
    name = "opq"
    Options = OPQOptions
    needs_text = True

    def __init__(self, argument: str | None = None, **options: Any):
        super().__init__(argument, **options)
        self.train_items = 0  # items the quantiser was trained on
        self.index: Any = None  # the trained faiss index, after fit (not saved)
        self.pca: dict[str, np.ndarray] | None = None  # the fitted PCA when pca_dim > 0 (not saved)

    def fit(self, ctx: FitContext) -> None:
        o: OPQOptions = self.options
        n = ctx.data.n_items
        x = checked_embeddings(ctx.text_embeddings(), n, "text", self.name)
        train = training_items(ctx)
        self.train_items = int(len(train))
        self.index, x, self.pca, levels = quantise(x, train, o, ctx.seed, self.name, ctx.log)
        with faiss_threads(FAISS_THREADS):
            last_costs = last_digit_costs(self.index, x)
            err = relative_error(self.index, x, levels)
        K, m = o.codebook_size, o.digits
        spell = None if m <= MAX_LETTER_DIGITS else digit_token  # letters run out beyond 25 digits
        self.vocab, self.codes, c = resolve_codes(levels, last_costs, o.collisions, [K] * m, spell=spell)
        self.collisions_before, self.n_collisions = c.before, c.after
        ctx.log(f"{self.name}: OPQ{m},IVF1,PQ{m}x{o.nbits} trained on {len(train)} of {n} items (training split), "
                f"{x.shape[1]}-d; relative reconstruction error {err:.3f}; {c.before} colliding items, "
                f"{c.after} after policy {o.collisions}")

    def extra_state(self) -> dict[str, Any]:
        return {"train_items": self.train_items}

    def load_extra_state(self, extra: dict[str, Any]) -> None:
        self.train_items = int(extra.get("train_items", 0))


# -- the quantiser ------------------------------------------------------------------------------
def training_items(ctx: FitContext) -> np.ndarray:
    """Ids of the items in the training split's sequences (sorted): all the quantiser may see."""
    return np.flatnonzero(ctx.split.train_item_counts(ctx.data.n_items) > 0)


def quantise(x: np.ndarray, train: np.ndarray, o: QuantiserOptions, seed: int, owner: str,
             log: Callable[[str], None]) -> tuple[Any, np.ndarray, dict[str, np.ndarray] | None, np.ndarray]:
    """Every item's digits from a quantiser trained on the training items `train`: the checks,
    the optional PCA, the faiss index (on FAISS_THREADS). Returns (index, the vectors as the
    index sees them, the PCA or None, digits [n, m])."""
    if len(train) < o.codebook_size:
        raise BenchError(f"{owner}: only {len(train)} items in the training split to train "
                         f"{o.codebook_size} codes per digit; set codebook_size to at most "
                         f"{1 << max(1, int(len(train)).bit_length() - 1)}")
    x, pca = reduce_dim(x, train, o.pca_dim, owner)
    if x.shape[1] % o.digits:
        raise BenchError(f"{owner}: the embedding dimension {x.shape[1]}{' (after PCA)' if o.pca_dim else ''} "
                         f"is not divisible by digits={o.digits}; choose digits dividing it or set pca_dim")
    if len(train) < FAISS_MIN_POINTS_PER_CODE * o.codebook_size:
        log(f"{owner}: {len(train)} training items for {o.codebook_size} codes per digit "
            f"(faiss recommends {FAISS_MIN_POINTS_PER_CODE * o.codebook_size}); codebooks may be noisy")
    with faiss_threads(FAISS_THREADS):
        index = train_index(x[train], o.digits, o.nbits, seed, owner)
        levels = index_codes(index, x)
    return index, x, pca, levels


def reduce_dim(x: np.ndarray, train: np.ndarray, dim: int,
               owner: str) -> tuple[np.ndarray, dict[str, np.ndarray] | None]:
    """Whitened PCA to `dim` dims fitted on the training items: what the release's
    sklearn PCA(whiten=True) computes with its exact solver (up to each axis's sign), in numpy,
    as sklearn's import alone takes seconds; the release fits it on all items. `dim` 0 leaves
    x as it is. Returns the projected x and {mean, components [dim, d], scale [dim]}."""
    if dim == 0:
        return x, None
    if dim > min(x.shape[1], len(train) - 1):
        raise BenchError(f"{owner}: pca_dim={dim} exceeds the embedding dimension ({x.shape[1]}) or the number of "
                         f"training items less one ({len(train) - 1}); set pca_dim to at most "
                         f"{min(x.shape[1], len(train) - 1)}")
    fit = x[train].astype(np.float64)
    mean = fit.mean(0)
    _, singular, vt = np.linalg.svd(fit - mean, full_matrices=False)
    scale = singular[:dim] / np.sqrt(len(train) - 1)  # each component's standard deviation
    if scale[-1] <= 1e-6 * scale[0]:
        raise BenchError(f"{owner}: the training items' embeddings span fewer than pca_dim={dim} dimensions; "
                         "lower pca_dim")
    pca = {"mean": mean, "components": vt[:dim], "scale": scale}
    return np.ascontiguousarray((x - mean) @ vt[:dim].T / scale, dtype=np.float32), pca


def train_index(x_train: np.ndarray, digits: int, nbits: int, seed: int, owner: str = "opq") -> Any:
    """RPG's faiss index, trained on `x_train` only (see the module docstring for what differs
    from a bare index_factory: seeds, polysemous training off, OPQ's inner PQ width). Fewer
    training vectors than dimensions is refused: faiss's OPQMatrix training then corrupts the
    heap and aborts the process (faiss issue #2637; 380 x 384 aborts, 384 x 384 trains)."""
    import faiss

    x_train = np.ascontiguousarray(x_train, dtype=np.float32)
    d = x_train.shape[1]
    if len(x_train) < d:
        raise BenchError(f"{owner}: OPQ needs at least as many training items as embedding dimensions ({len(x_train)} "
                         f"items, {d} dimensions; below that faiss corrupts memory); set pca_dim to at most {len(x_train)}")
    index = faiss.index_factory(d, f"OPQ{digits},IVF1,PQ{digits}x{nbits}", faiss.METRIC_INNER_PRODUCT)
    opq = faiss.downcast_VectorTransform(index.chain.at(0))
    ivf = faiss.downcast_index(index.index)
    ivf.do_polysemous_training = False  # relabels codes only (docstring)
    rotation, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    faiss.copy_array_to_vector(np.ascontiguousarray(rotation, dtype=np.float32).ravel(), opq.A)
    inner = faiss.ProductQuantizer(d, digits, nbits)  # OPQ trains its rotation for this PQ
    for cp in (inner.cp, ivf.pq.cp, ivf.cp):
        cp.seed = seed
        cp.min_points_per_centroid = 1  # silence faiss's per-k-means warning (we log one line)
    opq.pq = inner
    try:
        index.train(x_train)
    finally:
        opq.pq = None  # `inner` is Python-owned: leave no pointer to it in the index
    return index


@contextmanager
def faiss_threads(n: int) -> Iterator[None]:
    """Run faiss (and its OpenBLAS) on `n` OpenMP threads inside the block."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _parts(index: Any) -> tuple[Any, Any]:
    import faiss

    return faiss.downcast_VectorTransform(index.chain.at(0)), faiss.downcast_index(index.index)


def index_codes(index: Any, x: np.ndarray) -> np.ndarray:
    """Per-item digits [n, m] as the release reads them: add every item, then unpack the codes
    faiss stored in inverted list 0 (ordered by the ids faiss gave, 0..n-1)."""
    import faiss

    _, ivf = _parts(index)
    index.reset()
    index.add(np.ascontiguousarray(x, dtype=np.float32))
    lists = ivf.invlists
    size, code_size = lists.list_size(0), lists.code_size
    packed = faiss.rev_swig_ptr(lists.get_codes(0), size * code_size).reshape(size, code_size).copy()
    ids = faiss.rev_swig_ptr(lists.get_ids(0), size).copy()
    if size != len(x) or sorted(ids.tolist()) != list(range(len(x))):
        raise RuntimeError(f"faiss stored {size} codes with unexpected ids for {len(x)} items")
    levels = np.empty((len(x), ivf.pq.M), dtype=np.int64)
    levels[ids] = unpack(packed, ivf.pq.M, ivf.pq.nbits)
    return levels


def unpack(packed: np.ndarray, m: int, nbits: int) -> np.ndarray:
    """[n, code_size] uint8 -> [n, m] int64 (faiss packs digits little-endian, bit by bit)."""
    import faiss

    if nbits == 8:
        return packed.astype(np.int64)
    return np.asarray(faiss.unpack_bitstrings(np.ascontiguousarray(packed), m, nbits), dtype=np.int64)


def encoder_input(index: Any, x: np.ndarray) -> np.ndarray:
    """What the PQ encodes: the OPQ-rotated vector, minus the coarse centroid when the IVF
    encodes residuals (IndexIVFPQ's default, by_residual)."""
    opq, ivf = _parts(index)
    z = opq.apply_py(np.ascontiguousarray(x, dtype=np.float32))
    if ivf.by_residual:
        z = z - ivf.quantizer.reconstruct(0)[None, :]
    return z


def codebooks(index: Any) -> np.ndarray:
    """The PQ's sub-codebooks [m, K, dsub]."""
    import faiss

    _, ivf = _parts(index)
    pq = ivf.pq
    return faiss.vector_to_array(pq.centroids).reshape(pq.M, pq.ksub, pq.dsub)


def last_digit_costs(index: Any, x: np.ndarray) -> np.ndarray:
    """[n, K] squared distances of each item's last sub-vector (what the last sub-quantizer
    encodes) to that sub-quantizer's K centroids."""
    centres = codebooks(index)[-1].astype(np.float64)
    sub = encoder_input(index, x)[:, -centres.shape[1]:].astype(np.float64)
    return np.maximum((sub**2).sum(1, keepdims=True) - 2 * sub @ centres.T + (centres**2).sum(1)[None, :], 0.0)


def decode_levels(index: Any, levels: np.ndarray) -> np.ndarray:
    """Vectors [n, d] (in the space the index was trained in) rebuilt from digits [n, m]: PQ
    decode, plus the coarse centroid, then the inverse rotation."""
    import faiss

    opq, ivf = _parts(index)
    pq = ivf.pq
    levels = np.asarray(levels, dtype=np.int64)
    packed = (levels.astype(np.uint8) if pq.nbits == 8
              else faiss.pack_bitstrings(np.ascontiguousarray(levels, dtype=np.int32), pq.nbits))
    z = pq.decode(np.ascontiguousarray(packed))
    if ivf.by_residual:
        z = z + ivf.quantizer.reconstruct(0)[None, :]
    return opq.reverse_transform(np.ascontiguousarray(z, dtype=np.float32))


def relative_error(index: Any, x: np.ndarray, levels: np.ndarray) -> float:
    """sum ||x - decode(code(x))||^2 / sum ||x - mean(x)||^2 over all items."""
    centred = ((x - x.mean(0)) ** 2).sum()
    return float(((x - decode_levels(index, levels)) ** 2).sum() / max(centred, 1e-12))


# -- codes and collisions beyond 25 digits --------------------------------------------------------
def digit_token(digit: int, code: int) -> str:
    """Token spelling when the letters run out: digit 0's code 12 -> <d0_12>."""
    return f"<d{digit}_{code}>"


__all__ = ["OPQOptions", "OPQTokenizer", "PRESET_OPTIONS", "QuantiserOptions", "quantise"]
