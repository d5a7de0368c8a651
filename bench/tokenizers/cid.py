"""`cid`: collaborative indexing (CID), Hua, Xu, Ge and Zhang, "How to Index Item IDs for
Recommendation Foundation Models", SIGIR-AP 2023 (arXiv:2305.06569). Reference code: the
authors' OpenP5 (github.com/agiresearch/OpenP5, src/utils/indexing.py,
`generate_collaborative_id`) and the paper's own repository (github.com/Wenyueh/LLM-RecSys-ID,
CID_generation.py). We follow OpenP5's version, the cleaner of the two; differences below.

Algorithm:
1. Co-occurrence graph from the TRAINING split only: `Split.train_sequences` (per kept user,
   the sequence without its validation and test items: s[:-2] under leave-one-out, the part
   before the first cut-off under the temporal split). As in both releases, every pair of
   positions in a user's training sequence adds 1 to both directions of the pair's entry
   (`itertools.combinations(seq, 2)`), so A[a, b] = sum over users of count_u(a) * count_u(b);
   the diagonal is dropped (scipy's Laplacian ignores self-loops anyway). Users too short to
   have a training part contribute nothing, as in the releases. Validation and test
   targets never enter the graph: changing them changes no code.
2. Recursive spectral clustering, breadth first: the root (all items) is split into
   `n_clusters` clusters with scikit-learn's `SpectralClustering(affinity="precomputed",
   assign_labels="cluster_qr")` on A; every cluster of more than `cluster_size` items is split
   again the same way on its own sub-matrix A[cluster, cluster] (edges to other clusters are
   dropped); a cluster of at most `cluster_size` items is a leaf.
3. Tokens: one shared pool of `cluster_size` tokens `<CI0>` .. `<CI{cluster_size-1}>` used at
   every position (OpenP5's spelling; the vocabulary is exactly `cluster_size` tokens). Child
   clusters get pool tokens from one counter that runs over the whole tree in breadth-first
   order, modulo `cluster_size` (OpenP5's `add_token_to_indexing`): siblings always get
   distinct tokens (a split has at most n_clusters + 1 <= cluster_size children), and until the
   counter wraps every cluster has its own token. Each item in a leaf cluster then gets a last
   token, distinct within the leaf: `last_token=sequential` (OpenP5's default, which its
   ML-100K script keeps) numbers the leaf's items <CI0>, <CI1>, ... in item-id order;
   `random` draws them without replacement from the pool (OpenP5's other choice), seeded. An
   item's code is its path of cluster tokens from the root plus that last token: 2 tokens for
   a leaf at depth 1, 3 at depth 2, ...; codes differ in length between branches.

Codes are unique and prefix-free by construction: they are the root-to-leaf paths of a tree
whose sibling edges carry distinct tokens, and internal nodes hold no item. The decoding trie
(bench/backbones/trie.py) would not need prefix-freeness (it appends EOS, so a code that is a
prefix of another is still its own leaf), but it keeps a history of concatenated codes
parseable without a separator, so `history_tokens` is the plain code. No collisions, so no
`collisions` option; `n_collisions` is 0.

Items with no co-occurrence (an item absent from the training sequences, e.g. seen only as a
validation or test target, or one whose only co-occurrences were cut by an earlier split) have
degree 0 in the (sub)graph being split. Spectral clustering would give each of them its own
zero eigenvalue, so its embedding is arbitrary. At each split they are taken out before the
spectral step and become one extra child cluster, after the spectral ones. When that group
is larger than `cluster_size` it is split like any other cluster, and since it has no edges
that split is the deterministic fallback below. Fallback: a cluster that spectral clustering
cannot split (its connected part has at most `n_clusters` items, or every item gets the same
label) is cut into `n_clusters` contiguous, near-equal chunks in item-id order. The log line
counts these fallback splits and the items with no training co-occurrence at all. Other
disconnected graphs, e.g. groups of items that never co-occur, are clustered as they are:
scikit-learn's "graph is not fully connected" warning is silenced. Each component then has
its own zero eigenvalue, so with at most `n_clusters` components no cluster spans two of them
(the tests check that groups that never co-occur come out as separate first-level clusters).

Deviations from the reference code, and why:
- `random_state` is the run's seed (both releases fix 0). It only seeds ARPACK's starting
  vector, and `cluster_qr` is deterministic, so the codes barely depend on it: on ML-100K seeds
  0, 1 and 2 give the same codes, byte for byte, and cid's seed spread is the backbone's alone.
  Random last tokens (`last_token=random`) come from numpy's generator seeded by the run's
  seed, where OpenP5 uses Python's `random` under its own fixed seed.
- Within a leaf, sequential last tokens follow item-id order; OpenP5 follows the order its
  cluster lists hold the items in (its item list is built from a Python set).
- Items that never occur in training: OpenP5 gives each a single random pool token, which can
  equal another such item's token or be the first token of a trained item's code. Here they
  join the degree-0 group above, so every code stays unique and prefix-free.
- Degree-0 items inside a sub-cluster and clusters that cannot be split: OpenP5 passes them to
  scikit-learn unchanged (arbitrary embeddings; an unsplittable cluster loops forever). Here
  they are handled as above.
- The root is split only if it has more than `n_clusters` items (scikit-learn needs more
  samples than clusters); a smaller catalogue is one leaf and gets one token per item.
- Sparse matrices instead of dense ones (an 18k-item Amazon catalogue needs 2.6 GB dense).
  The clustering is the same; ARPACK's numerics may differ in the last digits.
- Pair counts are added into one symmetric matrix, as OpenP5 does. The LLM-RecSys-ID script
  stores (a, b) and (b, a) under separate keys and the later one overwrites the earlier.
- Children of a split are ordered by their lowest item id, then the degree-0 group; this
  only decides which pool token each child gets. OpenP5 orders them by first appearance in
  its own item list, which is built from a Python set.
- Options beyond the paper's N and k: `assign_labels` and `eigen_solver` (scikit-learn's
  settings). Their defaults are the releases' values: cluster_qr, and ARPACK, scikit-learn's
  default.

Presets: the paper used N = 20 clusters and k = 500 items per leaf on Amazon Beauty, Sports
and Toys (12k-18k items), and OpenP5's ML-100K script keeps them; on ML-100K that splits the
root once into 21 clusters of at most 154 items, so every code is 2 tokens and the clustering
has no hierarchy below the first level (hence the `cpu` preset's k below; `bench codes fit cid
--set cid.cluster_size=500`, seed 0). Our run on LETTER's Beauty (12,101 items) with those values
gives first-level clusters of 7 to 5,042 items. Codes are 2, 3 or 4 tokens for 20%, 58% and 22% of
the items. The breadth-first counter draws 183 cluster tokens from the pool of 500, so no
cluster shares a token. The fit took 479 s on a loaded 2-core machine, almost all in
ARPACK's shift-invert on the 12k root (about 5 min). `eigen_solver=lobpcg` embeds that root
in 2 s; whether its clusters match ARPACK's is untested. Smaller catalogues
scale N and k down. The aims: most items below one or two splits (codes of 2-3 tokens), and
few more cluster tokens than the pool holds, as on Beauty. A much smaller k would wrap the
counter several times, and unrelated clusters would share tokens. `quick` (400 synthetic
items): N = 8, k = 50. Codes are 2 and 3 tokens for 55% and 45% of the items; 25 cluster
tokens from a pool of 50. `cpu` (ML-100K, 1,682 items): N = 20 (the paper's), k = 100. Codes
are 2 and 3 tokens for 69% and 31% of the items; 101 cluster tokens from a pool of 100. With
k = 70 the counter would draw 281 tokens from a pool of 70.
"""

from __future__ import annotations

import warnings
from collections import deque
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from bench.options import check
from bench.tokenizers.base import FitContext, Tokenizer

ASSIGN_LABELS = ("cluster_qr", "kmeans", "discretize")
EIGEN_SOLVERS = ("arpack", "lobpcg", "amg")  # amg needs pyamg
LAST_TOKENS = ("sequential", "random")


@dataclass
class CIDOptions:
    n_clusters: int = 20  # N: clusters per split (paper: 20)
    cluster_size: int = 500  # k: most items in a leaf cluster, and the token pool's size (paper: 500)
    assign_labels: str = "cluster_qr"  # scikit-learn's label assignment; both releases use cluster_qr
    eigen_solver: str = "arpack"  # scikit-learn's default, as both releases; lobpcg is far faster on 10k+ items
    last_token: str = "sequential"  # a leaf's items numbered in order (OpenP5's default) or `random` pool tokens

    def __post_init__(self) -> None:
        check(self.n_clusters >= 2, "n_clusters must be >= 2")
        check(self.cluster_size > self.n_clusters,
              "cluster_size must be > n_clusters (a split's children, plus the group of unconnected "
              "items, take distinct tokens from a pool of cluster_size)")
        check(self.assign_labels in ASSIGN_LABELS, f"assign_labels must be one of {ASSIGN_LABELS}")
        check(self.eigen_solver in EIGEN_SOLVERS, f"eigen_solver must be one of {EIGEN_SOLVERS}")
        check(self.last_token in LAST_TOKENS, f"last_token must be one of {LAST_TOKENS}")


# Per-preset overrides the lead's config passes to the constructor (see the module docstring).
PRESET_OPTIONS: dict[str, dict[str, object]] = {
    "quick": {"n_clusters": 8, "cluster_size": 50},  # 400 synthetic items
    "cpu": {"n_clusters": 20, "cluster_size": 100},  # ML-100K: 1,682 items
    "paper": {"n_clusters": 20, "cluster_size": 500},  # the paper's setting (Amazon, 12k-18k items)
}


def pool_token(k: int) -> str:
    return f"<CI{k}>"


def cooccurrence(sequences: list[list[int]], n_items: int) -> sp.csr_matrix:
    """A[a, b] = number of position pairs (i < j) in one sequence holding a and b, summed over
    sequences (= count_u(a) * count_u(b)); zero diagonal."""
    rows = np.concatenate([np.full(len(s), u, dtype=np.int64) for u, s in enumerate(sequences)] or [np.zeros(0, np.int64)])
    cols = np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences] or [np.zeros(0, np.int64)])
    counts = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(sequences), n_items))  # duplicates summed
    adj = (counts.T @ counts).tocsr()
    adj.setdiag(0)
    adj.eliminate_zeros()
    return adj


class CIDTokenizer(Tokenizer):
    name = "cid"
    Options = CIDOptions
    needs_text = False

    def inputs(self) -> set[str]:
        return set()  # the training interactions only

    def fit(self, ctx: FitContext) -> None:
        o: CIDOptions = self.options
        n = ctx.data.n_items
        adj = cooccurrence(ctx.split.train_sequences, n)
        seed = int(ctx.seed)
        rng = np.random.default_rng(seed)
        paths: list[list[int]] = [[] for _ in range(n)]
        counter = 0
        n_spectral = n_fallback = n_leaves = 0
        queue: deque[tuple[np.ndarray, bool]] = deque([(np.arange(n, dtype=np.int64), True)])
        while queue:
            members, is_root = queue.popleft()
            must_split = len(members) > o.cluster_size or (is_root and len(members) > o.n_clusters)
            if not must_split:
                n_leaves += 1
                members = np.sort(members)
                lasts = (np.arange(len(members)) if o.last_token == "sequential"
                         else rng.choice(o.cluster_size, size=len(members), replace=False))
                for item, last in zip(members, lasts):
                    paths[int(item)].append(int(last))
                continue
            children = self._spectral_split(adj, members, seed)
            if children is None:
                children = [c for c in np.array_split(members, o.n_clusters) if len(c)]
                n_fallback += 1
            else:
                n_spectral += 1
            for child in children:
                token = counter % o.cluster_size
                counter += 1
                for item in child:
                    paths[int(item)].append(token)
                queue.append((child, False))
        self.vocab = [pool_token(k) for k in range(o.cluster_size)]
        self.codes = [tuple(p) for p in paths]
        self.n_collisions = 0
        isolated = int((np.diff(adj.indptr) == 0).sum())
        lengths = np.array([len(c) for c in self.codes])
        ctx.log(f"cid: {n_spectral} spectral splits, {n_fallback} fallback (chunk) splits, {n_leaves} leaf clusters, "
                f"{counter} cluster tokens drawn; {isolated} items with no training co-occurrence; code lengths "
                + ", ".join(f"{k}: {int((lengths == k).sum())}" for k in np.unique(lengths)))

    def _spectral_split(self, adj: sp.csr_matrix, members: np.ndarray, seed: int) -> list[np.ndarray] | None:
        """Spectral clusters of the members that have an edge inside `members` (ordered by their
        lowest item id), then one group of those that have none; None when that cannot split
        `members` in two or more."""
        from sklearn.cluster import SpectralClustering

        o: CIDOptions = self.options
        sub = adj[members][:, members]
        connected = np.diff(sub.indptr) > 0  # zero diagonal, so a stored entry is an edge
        if int(connected.sum()) <= o.n_clusters:
            return None
        inner = sub[connected][:, connected]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Graph is not fully connected")
            labels = SpectralClustering(n_clusters=o.n_clusters, affinity="precomputed", assign_labels=o.assign_labels,
                                        eigen_solver=o.eigen_solver, random_state=seed).fit(inner).labels_
        conn = members[connected]
        children = [conn[labels == label] for label in dict.fromkeys(labels.tolist())]  # first appearance
        if not connected.all():
            children.append(members[~connected])
        return children if len(children) >= 2 else None
