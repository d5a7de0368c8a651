"""LC-Rec setting: a decoder-only LM (any `AutoModelForCausalLM`) reads an instruction prompt
holding the history's item tokens and generates the next item's tokens.

Ids. The LM's vocabulary is its text vocabulary (a pretrained tokenizer's, or a tiny word-level
one for the named random configs) followed by one new row per item token. The shared beam
search and trie keep working in the backbone's small model-id space (PAD, EOS, item tokens):
`step` and `sequence_logprob` normalise over the LM's full vocabulary, then keep only the
columns `columns[model id]` (the LM's pad, its end token, the item tokens). So base.py's PAD
and EOS stay valid, and the beam-search score table is n_items-wide, not 150k-wide."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer as WordTokenizer
from tokenizers import models, pre_tokenizers
from transformers import (AutoModelForCausalLM, AutoTokenizer, GPT2Config, LlamaConfig, PreTrainedModel,
                          PreTrainedTokenizerBase, PreTrainedTokenizerFast, Qwen2Config)
from transformers.cache_utils import DynamicCache

from bench.backbones.base import EOS, N_SPECIAL, PAD, Backbone, Rngs, ce_loss, pad_sequences, per_history
from bench.config import CausalOptions
from bench.errors import BenchError
from bench.tokenizers.base import Tokenizer

PROMPT_HEAD = "Here are the user's historical interactions:"
PROMPT_SEPARATOR = ","
PROMPT_TAIL = "What would the user interact with next? Response:"

TINY_CONFIGS = ("tiny-llama", "tiny-qwen2", "tiny-gpt2")
# LoRA targets by model type; other types fall back to peft's own table
LORA_TARGETS = {"llama": ["q_proj", "k_proj", "v_proj", "o_proj"], "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj"],
                "mistral": ["q_proj", "k_proj", "v_proj", "o_proj"], "gpt2": ["c_attn"]}


def tiny_text_tokenizer() -> PreTrainedTokenizerFast:
    """Named tiny configs have no pretrained tokenizer: a word-level vocabulary of exactly the
    prompt's words (plus <pad>, <unk>, <s>, </s>) stands in for one."""
    split = pre_tokenizers.Whitespace()
    words = [w for text in (PROMPT_HEAD, PROMPT_SEPARATOR, PROMPT_TAIL) for w, _ in split.pre_tokenize_str(text)]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(["<pad>", "</s>", "<s>", "<unk>", *words]))}
    core = WordTokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = split
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="</s>", bos_token="<s>",
                                   unk_token="<unk>")


def tiny_model(name: str, text: PreTrainedTokenizerBase, options: CausalOptions) -> PreTrainedModel:
    """A few layers of hidden size `options.hidden`, random weights: for CPU runs and tests."""
    h, layers, heads = options.hidden, options.layers, options.heads
    vocab_size = len(text)
    ids = {"bos_token_id": text.bos_token_id, "eos_token_id": text.eos_token_id, "pad_token_id": text.pad_token_id}
    if name == "tiny-llama":
        config: Any = LlamaConfig(vocab_size=vocab_size, hidden_size=h, intermediate_size=2 * h, num_hidden_layers=layers,
                                  num_attention_heads=heads, num_key_value_heads=max(1, heads // 2),
                                  max_position_embeddings=2048, tie_word_embeddings=False, **ids)
    elif name == "tiny-qwen2":
        config = Qwen2Config(vocab_size=vocab_size, hidden_size=h, intermediate_size=2 * h, num_hidden_layers=layers,
                             num_attention_heads=heads, num_key_value_heads=max(1, heads // 2),
                             max_position_embeddings=2048, tie_word_embeddings=False, **ids)
    else:
        config = GPT2Config(vocab_size=vocab_size, n_embd=h, n_layer=layers, n_head=heads, n_positions=2048,
                            tie_word_embeddings=True, **ids)
    return AutoModelForCausalLM.from_config(config)


def load_pretrained(spec: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A local folder (never the hub) or a Hugging Face model name."""
    local = Path(spec).expanduser().exists() or spec.startswith((".", "/", "~"))
    if local and not Path(spec).expanduser().is_dir():
        raise BenchError(f"--backbone causal:{spec}: no such model folder")
    path = str(Path(spec).expanduser()) if local else spec
    try:
        text = AutoTokenizer.from_pretrained(path, local_files_only=local)
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=local, dtype=torch.float32)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BenchError(f"--backbone causal:{spec}: cannot load a causal LM and its tokenizer ({first})") from None
    return model, text


@dataclass
class CausalState:
    cache: DynamicCache
    mask: torch.Tensor  # [N, S + steps] attention mask, one row per beam
    positions: torch.Tensor  # [N] position id of each row's last token
    first: torch.Tensor  # [N, n_columns] log-probs of the first response token


class CausalBackbone(Backbone):
    name = "causal"

    def __init__(self, tokenizer: Tokenizer, spec: str, options: CausalOptions):
        super().__init__(tokenizer)
        self.options = options
        if spec in TINY_CONFIGS:
            text = tiny_text_tokenizer()
            model = tiny_model(spec, text, options)
        else:
            model, text = load_pretrained(spec)
        self._cache_arg = "cache" if "cache" in inspect.signature(type(model).forward).parameters else "past_key_values"
        base = len(text)
        eos = text.eos_token_id
        n_new = len(tokenizer.vocab) + (1 if eos is None else 0)
        if eos is None:  # an end token of our own after the item tokens
            eos = base + len(tokenizer.vocab)
        pad = text.pad_token_id if text.pad_token_id is not None else eos
        self._add_rows(model, base, n_new)
        # model id -> LM id: PAD, EOS, then item token t at base + t
        self.register_buffer("columns", torch.tensor([pad, eos, *range(base, base + len(tokenizer.vocab))]), persistent=False)
        self.lm_pad, self.lm_eos = pad, eos
        bos = [text.bos_token_id] if text.bos_token_id is not None else []
        encode = lambda s: text.encode(s, add_special_tokens=False)  # noqa: E731
        self.head = bos + encode(PROMPT_HEAD)
        self.separator = encode(PROMPT_SEPARATOR)
        self.tail = encode(" " + PROMPT_TAIL)
        self.item_base = base  # LM id of item token 0
        self.item_ids = [[base + t for t in tokenizer.history_tokens(i)] for i in range(len(tokenizer.codes))]
        self.target_ids = [[base + t for t in code] + [eos] for code in tokenizer.codes]
        if options.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.model = self._with_lora(model) if options.lora else model

    @staticmethod
    def _add_rows(model: PreTrainedModel, base: int, n_new: int) -> None:
        """Rows base .. base + n_new - 1 become the new tokens' embeddings (and head rows when
        untied): the mean of the text rows plus noise of the model's init std. Rows beyond the
        tokenizer that a model already has (vocabularies padded to a multiple) are reused."""
        size = max(model.get_input_embeddings().weight.shape[0], base + n_new)
        model.resize_token_embeddings(size, mean_resizing=False)
        std = float(getattr(model.config, "initializer_range", 0.02))
        with torch.no_grad():
            tables = [model.get_input_embeddings().weight]
            head = model.get_output_embeddings()
            if head is not None and head.weight.data_ptr() != tables[0].data_ptr():
                tables.append(head.weight)
            for weight in tables:
                mean = weight[:base].mean(0)
                weight[base: base + n_new] = mean + std * torch.randn(n_new, weight.shape[1], dtype=weight.dtype)

    def _with_lora(self, model: PreTrainedModel) -> torch.nn.Module:
        """LoRA on the attention projections; the embeddings and head (which hold the new item
        tokens) are trained in full, as LC-Rec does."""
        from peft import LoraConfig, get_peft_model

        names = {id(m): n for n, m in model.named_modules()}
        save = [names[id(model.get_input_embeddings())].split(".")[-1]]
        head = model.get_output_embeddings()
        tied = head is not None and head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
        if head is not None:
            save.append(names[id(head)].split(".")[-1])
        o = self.options
        config = LoraConfig(r=o.lora_r, lora_alpha=o.lora_alpha, lora_dropout=o.lora_dropout, task_type="CAUSAL_LM",
                            target_modules=LORA_TARGETS.get(model.config.model_type), modules_to_save=save,
                            ensure_weight_tying=tied, fan_in_fan_out=model.config.model_type == "gpt2")
        return get_peft_model(model, config)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # -- prompts ---------------------------------------------------------------------------
    def prompt(self, history: list[int], rng: np.random.Generator | None = None) -> list[int]:
        """Head, the recent items (each item's tokens, separated; a context-aware tokenizer's
        encoding of the whole history, unseparated, as its tokens may span items), tail."""
        recent = self.recent_history(history)
        if self.tokenizer.context_aware:
            return list(self.head) + [self.item_base + t for t in self.tokenizer.encode_history(recent, rng)] + self.tail
        ids = list(self.head)
        for n, item in enumerate(recent):
            ids += (self.separator if n else []) + self.item_ids[item]
        return ids + self.tail

    def _left_padded(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """ids, attention mask and position ids (0 at each row's first real token)."""
        ids = pad_sequences(rows, self.lm_pad, left=True).to(self.device)
        mask = pad_sequences([[1] * len(r) for r in rows], 0, left=True).to(self.device)
        return ids, mask, (mask.cumsum(1) - 1).clamp(min=0)

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, keep: int,
                 cache: DynamicCache | None = None) -> torch.Tensor:
        kwargs: dict[str, Any] = {self._cache_arg: cache} if cache is not None else {}
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=cache is not None,
                         logits_to_keep=keep, **kwargs)
        return out.logits

    # -- training --------------------------------------------------------------------------
    def collate(self, histories: list[list[int]], targets: list[int], rngs: Rngs = None) -> dict[str, torch.Tensor]:
        """Left-padded prompt + response, so every response ends at the last position and only
        the last max(response)+1 positions need logits. Labels: the response only, or (option
        train_prompt, LC-Rec's release) every token, padding included."""
        responses = [self.target_ids[t] for t in targets]
        prompts = [self.prompt(h, r) for h, r in zip(histories, per_history(rngs, len(histories)), strict=True)]
        ids, mask, positions = self._left_padded([p + r for p, r in zip(prompts, responses)])
        if self.options.train_prompt:
            labels, keep = ids.clone(), 0
        else:
            width = max(len(r) for r in responses)
            labels = torch.full_like(ids, -100)
            labels[:, -width:] = pad_sequences(responses, -100, left=True).to(self.device)
            keep = width + 1
        return {"input_ids": ids, "attention_mask": mask, "position_ids": positions, "labels": labels,
                "keep": torch.tensor(keep)}

    def loss(self, batch: dict[str, torch.Tensor], tau: float = 1.0) -> torch.Tensor:
        keep = int(batch["keep"])
        logits = self._forward(batch["input_ids"], batch["attention_mask"], batch["position_ids"], keep)
        labels = batch["labels"][:, -logits.shape[1]:]
        return ce_loss(logits[:, :-1], labels[:, 1:], tau)

    # -- decoding --------------------------------------------------------------------------
    def _columns(self, logits: torch.Tensor) -> torch.Tensor:
        """Log-softmax over the whole LM vocabulary, restricted to the model-id columns."""
        return torch.log_softmax(logits.float(), dim=-1)[..., self.columns]

    def begin(self, histories: list[list[int]], beam: int, rngs: Rngs = None) -> CausalState:
        """Reads each prompt once, then copies its cache to the user's beams."""
        prompts = [self.prompt(h, r) for h, r in zip(histories, per_history(rngs, len(histories)), strict=True)]
        ids, mask, positions = self._left_padded(prompts)
        cache = DynamicCache(config=self._config)
        logits = self._forward(ids, mask, positions, 1, cache)
        cache.batch_repeat_interleave(beam)
        return CausalState(cache, mask.repeat_interleave(beam, 0), positions[:, -1].repeat_interleave(beam, 0),
                           self._columns(logits[:, -1]).repeat_interleave(beam, 0))

    def step(self, state: CausalState, tokens: torch.Tensor | None, parents: torch.Tensor | None) -> torch.Tensor:
        if tokens is None:
            return state.first
        state.cache.reorder_cache(parents)
        state.mask = torch.cat([state.mask[parents], torch.ones_like(state.mask[:, :1])], dim=1)
        state.positions = state.positions[parents] + 1
        logits = self._forward(self.columns[tokens][:, None], state.mask, state.positions[:, None], 1, state.cache)
        return self._columns(logits[:, -1])

    def sequence_logprob(self, history: list[int], sequences: list[tuple[int, ...]]) -> torch.Tensor:
        prompt = self.prompt(history)
        responses = [self.columns[torch.tensor([*s, EOS])].tolist() for s in sequences]
        width = max(len(r) for r in responses)
        ids = torch.cat([torch.tensor(prompt).expand(len(responses), -1),
                         pad_sequences(responses, self.lm_pad)], dim=1).to(self.device)
        mask = torch.ones_like(ids)
        positions = torch.arange(ids.shape[1], device=self.device).expand_as(ids)
        labels = pad_sequences(responses, -100).to(self.device)
        logp = torch.log_softmax(self._forward(ids, mask, positions, width + 1)[:, :-1].float(), dim=-1)
        picked = logp.gather(-1, labels.clamp(min=0)[..., None])[..., 0]
        return (picked * (labels != -100)).sum(-1)

    @property
    def _config(self) -> Any:
        return self.model.config


__all__ = ["CausalBackbone", "N_SPECIAL", "PAD", "TINY_CONFIGS", "tiny_text_tokenizer"]
