"""Constrained beam search, batched over users and beams: the trie gives each beam's allowed
next tokens as tensors, applied as a mask on the batched log-probs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bench.backbones.base import PAD, Backbone, attention_kernels
from bench.backbones.trie import CodeTrie


@dataclass
class Ranked:
    items: np.ndarray  # [n_users, k] item ids, -1 where fewer than k items were found
    scores: np.ndarray  # [n_users, k] sequence log-probabilities
    n_invalid: int  # finished beams that are not a catalogue item (always 0 when constrained)


@torch.inference_mode()
def beam_search(backbone: Backbone, trie: CodeTrie, histories: list[list[int]], beam: int, k: int) -> Ranked:
    """Scores are sums of log-softmax over the full vocabulary (masking after normalisation,
    as Hugging Face's prefix_allowed_tokens_fn does). Finished beams (at a leaf) carry their
    score forward with a PAD token, so sequences of different lengths compete fairly."""
    with attention_kernels():
        return _beam_search(backbone, trie, histories, beam, k)


def _beam_search(backbone: Backbone, trie: CodeTrie, histories: list[list[int]], beam: int, k: int) -> Ranked:
    n_users = len(histories)
    n = n_users * beam
    device = backbone.device
    state = backbone.begin(histories, beam)
    nodes = torch.zeros(n, dtype=torch.long, device=device)
    scores = torch.full((n,), float("-inf"), device=device)
    scores[::beam] = 0.0  # one live beam per user at the start
    tokens, parents = None, None
    step_live = getattr(backbone, "step_live", None)
    for _ in range(trie.depth):
        done = trie.is_leaf(nodes)
        if bool(done.all()):
            break
        live = ~done & torch.isfinite(scores)
        if step_live is not None:  # backbones that can skip finished and dead rows
            logp = step_live(state, tokens, parents, live)  # [n, V]; rows not live are never read
        else:
            logp = backbone.step(state, tokens, parents)  # [n, V]
        vocab = logp.shape[1]
        # finished and dead rows expand nothing (at the first step all but one beam per user
        # are dead: on a 12k-item ID catalogue expanding them made decoding 3.5x slower)
        rows, edges = trie.edges(torch.where(live, nodes, torch.full_like(nodes, -1)))
        cand = torch.full((n, vocab), float("-inf"), device=device)
        child = torch.full((n, vocab), -1, dtype=torch.long, device=device)
        toks = trie.edge_token[edges]
        cand[rows, toks] = scores[rows] + logp[rows, toks]
        child[rows, toks] = trie.edge_child[edges]
        cand[done, PAD] = scores[done]
        child[done, PAD] = nodes[done]
        top, flat = cand.view(n_users, beam * vocab).topk(beam, dim=1)  # [U, beam]
        base = torch.arange(n_users, device=device)[:, None] * beam
        parents = (base + flat // vocab).flatten()
        tokens = (flat % vocab).flatten()
        scores = top.flatten()
        nodes = child[parents, tokens]
        nodes = torch.where(torch.isfinite(scores), nodes, torch.full_like(nodes, -1))
    return _rank(trie, nodes.view(n_users, beam), scores.view(n_users, beam), k)


def _rank(trie: CodeTrie, nodes: torch.Tensor, scores: torch.Tensor, k: int) -> Ranked:
    """Beams (already sorted by score) to top-k item lists; a leaf with several items (kept
    collisions) contributes them all, in item-id order."""
    items = np.full((len(nodes), k), -1, dtype=np.int64)
    out_scores = np.full((len(nodes), k), -np.inf, dtype=np.float64)
    leaf = trie.is_leaf(nodes).cpu().numpy()
    nodes_np, scores_np = nodes.cpu().numpy(), scores.float().cpu().numpy()
    item_ptr, item_list = trie.item_ptr.cpu().numpy(), trie.item_list.cpu().numpy()
    n_invalid = int((np.isfinite(scores_np) & ~leaf).sum())
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
    return Ranked(items, out_scores, n_invalid)


@torch.inference_mode()
def exact_scores(backbone: Backbone, histories: list[list[int]], chunk: int = 4096) -> np.ndarray:
    """Teacher-forced log-likelihood of every item for every user: [n_users, n_items].
    Brute force: for small catalogues, to measure what beam search loses."""
    seqs = backbone.item_sequences()
    out = np.zeros((len(histories), len(seqs)), dtype=np.float64)
    with attention_kernels():
        for u, history in enumerate(histories):
            for lo in range(0, len(seqs), chunk):
                out[u, lo: lo + chunk] = backbone.sequence_logprob(history, seqs[lo: lo + chunk]).cpu().numpy()
    return out
