"""Constrained beam search, batched over users and beams: the trie gives each beam's allowed
next tokens as tensors, applied as a mask on the batched log-probs.

Finished sequences are handled as Hugging Face's beam search does (its defaults:
`length_penalty` 1.0, `early_stopping=False`): each step ranks the 2 x beam best candidates;
a candidate that ends an item (EOS) and ranks among the first `beam` leaves the beam for the
user's pool of finished items, scored sum(log p) / length ** length_penalty (length = tokens
generated, EOS included); the `beam` best unfinished candidates go on. A user stops when the
pool is full and the best running beam, normalised at the current length, cannot beat the
pool's worst. The pool, best first, is the ranking. When every code has the same length (id,
tiger, letter) the normalisation divides every score by the same number and changes nothing;
it matters for titles (`text`), whose lengths differ."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bench.backbones.base import Backbone, Rngs, attention_kernels
from bench.backbones.trie import CodeTrie


@dataclass
class Ranked:
    items: np.ndarray  # [n_users, k] item ids, -1 where fewer than k items were found
    scores: np.ndarray  # [n_users, k] length-normalised sequence log-probabilities
    n_invalid: int  # finished beams that are not a catalogue item (always 0 when constrained)
    # [n_users, beam] the finished codes (trie leaves) in score order, -1 where none: code-level
    # scoring ranks a user's target by its code's place here (several items may share a code)
    leaves: np.ndarray | None = None


@torch.inference_mode()
def beam_search(backbone: Backbone, trie: CodeTrie, histories: list[list[int]], beam: int, k: int,
                length_penalty: float = 1.0, early_stopping: bool = False, rngs: Rngs = None) -> Ranked:
    """Scores are sums of log-softmax over the full vocabulary (masking after normalisation,
    as Hugging Face's prefix_allowed_tokens_fn does), divided by length ** length_penalty.
    `early_stopping=True` stops a user as soon as its pool holds `beam` items (HF's True).
    `rngs`: how each history is segmented (Backbone.collate)."""
    with attention_kernels():
        return _beam_search(backbone, trie, histories, beam, k, length_penalty, early_stopping, rngs)


def _beam_search(backbone: Backbone, trie: CodeTrie, histories: list[list[int]], beam: int, k: int,
                 length_penalty: float, early_stopping: bool, rngs: Rngs) -> Ranked:
    n_users = len(histories)
    n = n_users * beam
    device = backbone.device
    state = backbone.begin(histories, beam, rngs)
    nodes = torch.zeros(n, dtype=torch.long, device=device)
    scores = torch.full((n,), float("-inf"), device=device)
    scores[::beam] = 0.0  # one live beam per user at the start
    pool_scores = torch.full((n_users, beam), float("-inf"), device=device)  # finished, normalised
    pool_nodes = torch.full((n_users, beam), -1, dtype=torch.long, device=device)
    tokens, parents = None, None
    step_live = getattr(backbone, "step_live", None)
    base = torch.arange(n_users, device=device)[:, None] * beam
    rank = torch.arange(2 * beam, device=device)
    for step in range(trie.depth):
        live = torch.isfinite(scores) & (nodes >= 0)
        if not bool(live.any()):
            break
        if step_live is not None:  # backbones that can skip dead rows
            logp = step_live(state, tokens, parents, live)  # [n, V]; rows not live are never read
        else:
            logp = backbone.step(state, tokens, parents)  # [n, V]
        vocab = logp.shape[1]
        # dead rows expand nothing (at the first step all but one beam per user are dead: on a
        # 12k-item ID catalogue expanding them made decoding 3.5x slower)
        rows, edges = trie.edges(torch.where(live, nodes, torch.full_like(nodes, -1)))
        cand = torch.full((n, vocab), float("-inf"), device=device)
        child = torch.full((n, vocab), -1, dtype=torch.long, device=device)
        toks = trie.edge_token[edges]
        cand[rows, toks] = scores[rows] + logp[rows, toks]
        child[rows, toks] = trie.edge_child[edges]
        width = min(2 * beam, beam * vocab)
        top, flat = cand.view(n_users, beam * vocab).topk(width, dim=1)  # [U, width]
        nxt = child.view(n_users, beam * vocab).gather(1, flat)
        ended = trie.is_leaf(nxt.flatten()).view(n_users, width) & torch.isfinite(top)
        # finished candidates among the first `beam` join the pool, which keeps its `beam` best
        length = float(step + 1) ** length_penalty
        joining = torch.where(ended & (rank[:width] < beam), top / length, torch.full_like(top, float("-inf")))
        pool_scores, pick = torch.cat([pool_scores, joining], 1).topk(beam, dim=1)
        pool_nodes = torch.cat([pool_nodes, nxt], 1).gather(1, pick)
        # the `beam` best unfinished candidates go on
        going = torch.where(ended, torch.full_like(top, float("-inf")), top)
        run_scores, run = going.topk(beam, dim=1)  # [U, beam]
        run_flat = flat.gather(1, run)
        parents = (base + run_flat // vocab).flatten()
        tokens = (run_flat % vocab).flatten()
        nodes = nxt.gather(1, run).flatten()
        full = torch.isfinite(pool_scores).all(1)  # [U]
        if early_stopping:
            stop = full
        else:  # HF's heuristic: the best running beam at the current length against the pool's worst
            stop = full & (run_scores[:, 0] / length <= pool_scores[:, -1])
        run_scores = torch.where(stop[:, None], torch.full_like(run_scores, float("-inf")), run_scores)
        scores = run_scores.flatten()
        nodes = torch.where(torch.isfinite(scores), nodes, torch.full_like(nodes, -1))
    return _rank(trie, pool_nodes, pool_scores, k)


def _rank(trie: CodeTrie, nodes: torch.Tensor, scores: torch.Tensor, k: int) -> Ranked:
    """The pool (already sorted by score) to top-k item lists; a leaf with several items (kept
    collisions) contributes them all, in item-id order."""
    items = np.full((len(nodes), k), -1, dtype=np.int64)
    out_scores = np.full((len(nodes), k), -np.inf, dtype=np.float64)
    leaf = trie.is_leaf(nodes).cpu().numpy()
    nodes_np, scores_np = nodes.cpu().numpy(), scores.float().cpu().numpy()
    item_ptr, item_list = trie.item_ptr.cpu().numpy(), trie.item_list.cpu().numpy()
    n_invalid = int((np.isfinite(scores_np) & ~leaf).sum())
    leaves = np.where(leaf & np.isfinite(scores_np), nodes_np, -1)
    for u in range(len(nodes_np)):
        pos = 0
        for b in range(nodes_np.shape[1]):
            if pos >= k or not leaf[u, b]:
                continue
            node = nodes_np[u, b]
            for item in item_list[item_ptr[node]: item_ptr[node + 1]]:
                if pos < k:
                    items[u, pos], out_scores[u, pos] = item, scores_np[u, b]
                    pos += 1
    return Ranked(items, out_scores, n_invalid, leaves)


@torch.inference_mode()
def exact_scores(backbone: Backbone, histories: list[list[int]], chunk: int = 4096,
                 length_penalty: float = 0.0) -> np.ndarray:
    """Teacher-forced log-likelihood of every item for every user: [n_users, n_items], divided
    by (tokens + EOS) ** length_penalty as beam search ranks them. Brute force: for small
    catalogues, to measure what beam search loses."""
    seqs = backbone.item_sequences()
    out = np.zeros((len(histories), len(seqs)), dtype=np.float64)
    lengths = np.array([len(s) + 1 for s in seqs], dtype=np.float64) ** length_penalty
    with attention_kernels():
        for u, history in enumerate(histories):
            for lo in range(0, len(seqs), chunk):
                out[u, lo: lo + chunk] = backbone.sequence_logprob(history, seqs[lo: lo + chunk]).cpu().numpy()
    return out / lengths
