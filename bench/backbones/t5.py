"""TIGER / LETTER-TIGER setting: a T5 encoder-decoder trained from scratch whose vocabulary
is the special tokens plus the tokenizer's tokens only."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from transformers import T5Config, T5ForConditionalGeneration
from transformers.cache_utils import DynamicCache, EncoderDecoderCache
from transformers.modeling_outputs import BaseModelOutput

from bench.backbones.base import EOS, PAD, Backbone, Rngs, ce_loss, pad_sequences, per_history
from bench.backbones.cpu_dropout import use_cpu_dropout
from bench.config import T5Size
from bench.tokenizers.base import Tokenizer

# transformers renamed `past_key_values` to `cache` in the 5.x series
_CACHE_ARG = "cache" if "cache" in inspect.signature(T5ForConditionalGeneration.forward).parameters else "past_key_values"


@dataclass
class T5State:
    """Hugging Face decoding state (the reference path): everything is one row per beam."""

    encoder: BaseModelOutput  # [N, S, d], one row per beam
    mask: torch.Tensor  # [N, S]
    cache: EncoderDecoderCache


@dataclass
class FastT5State:
    """Fast path: cross-attention keys/values once per user (all beams of a user share them,
    so they are neither copied per beam nor reordered), a self-attention cache of at most
    `depth` positions, and a first step run on one row per user (all beams start equal)."""

    n_users: int
    beam: int
    cross: list[tuple[torch.Tensor, torch.Tensor]]  # per decoder layer: K, V [U, H, S, dk]
    cross_bias: torch.Tensor  # [U, 1, 1, S] additive: 0 or -inf at padding
    qkv: list[torch.Tensor]  # per layer: self-attention q, k, v weights stacked (one matmul)
    keys: list[torch.Tensor] = field(default_factory=list)  # per layer [R, H, t, dk], R = U or U * beam
    values: list[torch.Tensor] = field(default_factory=list)
    t: int = 0  # decoded positions so far


class T5Backbone(Backbone):
    name = "t5"

    def __init__(self, tokenizer: Tokenizer, size: T5Size, fast_decoding: bool = True):
        super().__init__(tokenizer)
        self.fast_decoding = fast_decoding  # False: Hugging Face's forward with its cache (reference)
        config = T5Config(
            vocab_size=self.offset + len(tokenizer.vocab),
            d_model=size.d_model, d_ff=size.d_ff, d_kv=size.d_kv, num_heads=size.num_heads,
            num_layers=size.num_layers, num_decoder_layers=size.num_decoder_layers,
            dropout_rate=size.dropout, feed_forward_proj="relu",
            pad_token_id=PAD, eos_token_id=EOS, decoder_start_token_id=PAD,
        )
        self.model = T5ForConditionalGeneration(config)
        use_cpu_dropout(self.model)  # PyTorch's CPU dropout mask was a quarter of a training step

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def encode_inputs(self, histories: list[list[int]], rngs: Rngs = None) -> tuple[torch.Tensor, torch.Tensor]:
        rows = [self.history_ids(h, r) + [EOS] for h, r in zip(histories, per_history(rngs, len(histories)), strict=True)]
        ids = pad_sequences(rows, PAD).to(self.device)
        return ids, (ids != PAD).long()

    def collate(self, histories: list[list[int]], targets: list[int], rngs: Rngs = None) -> dict[str, torch.Tensor]:
        ids, mask = self.encode_inputs(histories, rngs)
        codes = self.item_sequences()
        labels = pad_sequences([list(codes[t]) + [EOS] for t in targets], -100).to(self.device)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    def loss(self, batch: dict[str, torch.Tensor], tau: float = 1.0) -> torch.Tensor:
        labels = batch["labels"]
        decoder_input = self.model._shift_right(labels.masked_fill(labels == -100, PAD))
        out = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                         decoder_input_ids=decoder_input, use_cache=False)
        return ce_loss(out.logits, labels, tau)

    def begin(self, histories: list[list[int]], beam: int, rngs: Rngs = None) -> T5State | FastT5State:
        ids, mask = self.encode_inputs(histories, rngs)
        hidden = self.model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        if self.fast_decoding:
            cross = []
            for block in self.model.decoder.block:
                attn = block.layer[1].EncDecAttention
                cross.append((_heads(attn.k(hidden), attn.key_value_proj_dim), _heads(attn.v(hidden), attn.key_value_proj_dim)))
            bias = torch.zeros(mask.shape, dtype=cross[0][0].dtype, device=self.device)
            bias = bias.masked_fill(mask == 0, float("-inf"))[:, None, None, :]
            qkv = [torch.cat([b.layer[0].SelfAttention.q.weight, b.layer[0].SelfAttention.k.weight,
                              b.layer[0].SelfAttention.v.weight]) for b in self.model.decoder.block]
            return FastT5State(len(histories), beam, cross, bias, qkv)
        hidden = hidden.repeat_interleave(beam, dim=0)
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        return T5State(BaseModelOutput(last_hidden_state=hidden), mask.repeat_interleave(beam, dim=0), cache)

    def step(self, state: T5State | FastT5State, tokens: torch.Tensor | None, parents: torch.Tensor | None) -> torch.Tensor:
        return self.step_live(state, tokens, parents, None)

    def step_live(self, state: T5State | FastT5State, tokens: torch.Tensor | None, parents: torch.Tensor | None,
                  live: torch.Tensor | None) -> torch.Tensor:
        """`step`, told which rows still need log-probs (`live`, [N] bool; finished and dead
        beams do not): when few are live, only those rows are computed, the rest are 0."""
        if isinstance(state, FastT5State):
            return self._fast_step(state, tokens, parents, live)
        n = state.mask.shape[0]
        if tokens is None:
            tokens = torch.full((n,), PAD, dtype=torch.long, device=self.device)
        if parents is not None:
            state.cache.reorder_cache(parents)
        kwargs: dict[str, Any] = {_CACHE_ARG: state.cache}
        out = self.model(encoder_outputs=state.encoder, attention_mask=state.mask,
                         decoder_input_ids=tokens[:, None], use_cache=True, **kwargs)
        return torch.log_softmax(out.logits[:, -1].float(), dim=-1)

    def _fast_step(self, state: FastT5State, tokens: torch.Tensor | None, parents: torch.Tensor | None,
                   live: torch.Tensor | None = None) -> torch.Tensor:
        """One decoder position for every row, written with the model's own modules and
        weights; equals Hugging Face's forward (checked in tests/test_decoding.py)."""
        decoder, n_users, beam = self.model.decoder, state.n_users, state.beam
        if tokens is None:  # first position: every beam of a user is the same, run one row per user
            tokens = torch.full((n_users,), PAD, dtype=torch.long, device=self.device)
        elif parents is not None and state.keys:
            index = parents // beam if state.keys[0].shape[0] == n_users else parents
            state.keys = [k.index_select(0, index) for k in state.keys]
            state.values = [v.index_select(0, index) for v in state.values]
        n_rows = len(tokens)
        subset = None  # rows computed, when only a few are live
        if live is not None and n_rows == n_users * beam and int(live.sum()) * 2 < n_rows:
            subset = live.nonzero()[:, 0]
            tokens = tokens[subset]
        rows = len(tokens)
        t = state.t
        first = decoder.block[0].layer[0].SelfAttention
        position_bias = first.compute_bias(t + 1, t + 1, device=self.device)[:, :, -1:, :]  # [1, H, 1, t + 1]
        x = decoder.embed_tokens(tokens)  # [R, d]
        for i, block in enumerate(decoder.block):
            self_attn, cross_attn, ff = block.layer[0], block.layer[1], block.layer[2]
            a, dk = self_attn.SelfAttention, self_attn.SelfAttention.key_value_proj_dim
            q, k, v = nn.functional.linear(self_attn.layer_norm(x), state.qkv[i]).view(rows, 3, -1, 1, dk).unbind(1)
            if subset is not None:  # keep a full-height cache; rows not computed are never read again
                k = state.keys[i].new_zeros((n_rows, *k.shape[1:])).index_copy_(0, subset, k)
                v = state.values[i].new_zeros((n_rows, *v.shape[1:])).index_copy_(0, subset, v)
            if len(state.keys) > i:
                state.keys[i] = torch.cat([state.keys[i], k], 2)
                state.values[i] = torch.cat([state.values[i], v], 2)
            else:
                state.keys.append(k)
                state.values.append(v)
            k, v = state.keys[i], state.values[i]
            if subset is not None:
                k, v = k[subset], v[subset]
            x = x + a.o(_attend(q, k, v, position_bias).reshape(rows, -1))
            c = cross_attn.EncDecAttention
            ck, cv = state.cross[i]
            q = c.q(cross_attn.layer_norm(x))
            if subset is None:
                group = rows // n_users  # rows per user: 1 on the first step, then beam
                q = q.view(n_users, group, -1, dk).transpose(1, 2)  # [U, H, g, dk]
                out = _attend(q, ck, cv, state.cross_bias).transpose(1, 2)  # [U, g, H, dk]
            else:
                user = subset // beam
                out = _attend(q.view(rows, -1, 1, dk), ck[user], cv[user], state.cross_bias[user])  # [R, H, 1, dk]
            x = x + c.o(out.reshape(rows, -1))
            x = x + ff.DenseReluDense(ff.layer_norm(x))
        x = decoder.final_layer_norm(x)
        if getattr(self.model.config, "scale_decoder_outputs", self.model.config.tie_word_embeddings):
            x = x * (self.model.model_dim ** -0.5)
        state.t += 1
        logp = torch.log_softmax(self.model.lm_head(x).float(), dim=-1)
        if subset is not None:
            return logp.new_zeros((n_rows, logp.shape[1])).index_copy_(0, subset, logp)
        if rows == n_users and beam > 1:
            logp = logp.repeat_interleave(beam, dim=0)
        return logp

    def sequence_logprob(self, history: list[int], sequences: list[tuple[int, ...]]) -> torch.Tensor:
        ids, mask = self.encode_inputs([history])
        labels = pad_sequences([list(s) + [EOS] for s in sequences], -100).to(self.device)
        decoder_input = self.model._shift_right(labels.masked_fill(labels == -100, PAD))
        n = len(sequences)
        out = self.model(input_ids=ids.expand(n, -1), attention_mask=mask.expand(n, -1),
                         decoder_input_ids=decoder_input, use_cache=False)
        logp = torch.log_softmax(out.logits.float(), dim=-1)
        picked = logp.gather(-1, labels.clamp(min=0)[..., None])[..., 0]
        return (picked * (labels != -100)).sum(-1)


def _heads(x: torch.Tensor, dk: int) -> torch.Tensor:
    """[B, S, H * dk] -> [B, H, S, dk]"""
    return x.view(x.shape[0], x.shape[1], -1, dk).transpose(1, 2)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """T5 attention: no 1/sqrt(d) scaling, additive bias, softmax in fp32 as Hugging Face's."""
    scores = torch.matmul(q, k.transpose(-1, -2)) + bias
    weights = torch.softmax(scores.float(), dim=-1).to(v.dtype)
    return torch.matmul(weights, v)
