"""All items' token sequences (code + EOS) as a trie in flat arrays, so that beam search finds
every beam's allowed next tokens with tensor indexing only: no per-beam Python."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class CodeTrie:
    """Node 0 is the root. Edges of node n are edge_token/edge_child[indptr[n]:indptr[n+1]].
    A leaf (reached by EOS) holds the items item_list[item_ptr[n]:item_ptr[n+1]]: one item, or
    several when the tokenizer keeps collisions."""

    indptr: torch.Tensor  # [n_nodes + 1]
    edge_token: torch.Tensor  # [n_edges]
    edge_child: torch.Tensor  # [n_edges]
    item_ptr: torch.Tensor  # [n_nodes + 1]
    item_list: torch.Tensor  # [n_items]
    depth: int  # longest sequence, EOS included

    @property
    def n_nodes(self) -> int:
        return len(self.indptr) - 1

    @classmethod
    def build(cls, sequences: list[tuple[int, ...]], eos: int) -> "CodeTrie":
        """`sequences[i]` is item i's tokens in model ids; EOS is appended here."""
        children: list[dict[int, int]] = [{}]
        leaf_items: dict[int, list[int]] = {}
        for item, seq in enumerate(sequences):
            node = 0
            for token in (*seq, eos):
                nxt = children[node].get(token)
                if nxt is None:
                    nxt = len(children)
                    children[node][token] = nxt
                    children.append({})
                node = nxt
            leaf_items.setdefault(node, []).append(item)
        indptr, tokens, childs, item_ptr, items = [0], [], [], [0], []
        for node, edges in enumerate(children):
            for token in sorted(edges):
                tokens.append(token)
                childs.append(edges[token])
            indptr.append(len(tokens))
            items += leaf_items.get(node, [])
            item_ptr.append(len(items))
        as_long = lambda x: torch.tensor(x, dtype=torch.long)  # noqa: E731
        depth = max(len(s) for s in sequences) + 1
        return cls(as_long(indptr), as_long(tokens), as_long(childs), as_long(item_ptr), as_long(items), depth)

    def to(self, device: torch.device | str) -> "CodeTrie":
        return CodeTrie(*(t.to(device) for t in (self.indptr, self.edge_token, self.edge_child,
                                                  self.item_ptr, self.item_list)), self.depth)

    def is_leaf(self, nodes: torch.Tensor) -> torch.Tensor:
        safe = nodes.clamp(min=0)
        return (nodes >= 0) & (self.item_ptr[safe + 1] > self.item_ptr[safe])

    def edges(self, nodes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Flattened edges of `nodes` ([N], -1 = dead beam): (row in nodes, edge index)."""
        safe = nodes.clamp(min=0)
        start = self.indptr[safe]
        counts = torch.where(nodes >= 0, self.indptr[safe + 1] - start, torch.zeros_like(start))
        rows = torch.repeat_interleave(torch.arange(len(nodes), device=nodes.device), counts)
        first = torch.cumsum(counts, 0) - counts  # position of each row's first edge in the flat list
        offsets = torch.arange(len(rows), device=nodes.device) - first[rows]
        return rows, start[rows] + offsets

    def item_leaves(self, n_items: int) -> np.ndarray:
        """The leaf (code) of every item [n_items]."""
        out = np.full(n_items, -1, dtype=np.int64)
        ptr, items = self.item_ptr.cpu().numpy(), self.item_list.cpu().numpy()
        for node in np.flatnonzero(np.diff(ptr)):
            out[items[ptr[node]: ptr[node + 1]]] = node
        return out

    def items_of(self, node: int) -> list[int]:
        return self.item_list[self.item_ptr[node]: self.item_ptr[node + 1]].tolist()

    def follow(self, tokens: list[int]) -> int:
        """The node reached by `tokens` from the root, or -1 (used to check foreign generations)."""
        node = 0
        for token in tokens:
            lo, hi = int(self.indptr[node]), int(self.indptr[node + 1])
            match = (self.edge_token[lo:hi] == token).nonzero()
            if len(match) == 0:
                return -1
            node = int(self.edge_child[lo + int(match[0])])
        return node
