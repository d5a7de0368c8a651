"""`causal:SPEC`: the decoder-only LM backbone (LC-Rec setting) on tiny random configs."""

import json

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer as WordTokenizer
from tokenizers import models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from bench.backbones import CodeTrie, beam_search, exact_scores, make_backbone
from bench.backbones.base import EOS
from bench.backbones.causal import PROMPT_HEAD, CausalBackbone
from bench.config import CausalOptions, Recipe, RunConfig
from bench.datasets import SyntheticSpec, leave_one_out, make_synthetic
from bench.errors import BenchError
from bench.tokenizers import TOKENIZERS, FitContext, make_tokenizer
from bench.training import evaluate, train

N_ITEMS = 30
# tiny settings for tokenizers that train something; others get their defaults
TINY_OPTIONS = {
    "tiger": {"codebook_size": 6, "hidden": "16", "latent_dim": 4, "epochs": 2, "batch_size": 16, "kmeans_iters": 5},
    "letter": {"codebook_size": 6, "hidden": "16", "latent_dim": 4, "epochs": 2, "batch_size": 16, "kmeans_iters": 5,
               "cluster_min": 2, "cluster_max": 10, "n_clusters": 3},
    "opq": {"digits": 2, "codebook_size": 8, "pca_dim": 0},  # 28 training items: too few for 256 codes a digit
    "actionpiece": {"digits": 2, "codebook_size": 8, "pca_dim": 0, "hash_buckets": 16, "vocab_size": 80, "ensemble": 2},
}


@pytest.fixture(scope="module")
def data():
    d = make_synthetic(SyntheticSpec(n_items=N_ITEMS, n_users=40, seed=1))
    return d, leave_one_out(d)


def _ctx(data, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N_ITEMS, 12)).astype(np.float32)
    h = rng.standard_normal((N_ITEMS, 4)).astype(np.float32)
    return FitContext(data[0], data[1], seed, text_embeddings=lambda: x, cf_embeddings=lambda: h, log=lambda s: None)


def _index_file(path, data, codes):
    """A precomputed index.json: item -> LETTER-style tokens."""
    path.write_text(json.dumps({item: [f"<{chr(97 + lv)}_{c}>" for lv, c in enumerate(code)]
                                for item, code in zip(data[0].item_ids, codes)}))
    return str(path)


def _fitted(name, data, tmp_path, codes=None):
    torch.manual_seed(0)
    arg = None
    if TOKENIZERS[name].takes_argument:
        codes = codes or [(i % 4, i // 4) for i in range(N_ITEMS)]
        arg = _index_file(tmp_path / f"{name}.index.json", data, codes)
    tok = make_tokenizer(f"{name}:{arg}" if arg else name, TINY_OPTIONS.get(name, {}))
    tok.fit(_ctx(data))
    return tok


def _causal(tok, spec="tiny-llama", **options):
    torch.manual_seed(0)
    return make_backbone(f"causal:{spec}", tok, RunConfig(causal=CausalOptions(**options)))


@pytest.mark.parametrize("name", list(TOKENIZERS))
def test_every_tokenizer_trains_and_decodes_catalogue_items(name, data, tmp_path):
    tok = _fitted(name, data, tmp_path)
    backbone = _causal(tok)
    recipe = Recipe(lr=1e-3, epochs=1, batch_size=32, valid_users=6, beam=20, eval_batch_size=8)
    split = data[1]
    result = train(backbone, split.train.subset(np.arange(64)), split.valid, recipe, seed=0, log=lambda s: None)
    assert np.isfinite(result.history[0]["train_loss"])
    trie = CodeTrie.build(backbone.item_sequences(), EOS)
    ranked = evaluate(backbone, trie, split.test.subset(np.arange(6)), recipe)
    assert ranked.n_invalid == 0
    found = ranked.items[ranked.items >= 0]
    assert len(found) > 0 and ((found >= 0) & (found < N_ITEMS)).all()


@pytest.mark.parametrize("spec", ["tiny-llama", "tiny-qwen2", "tiny-gpt2"])
def test_beam_search_equals_brute_force_over_left_padded_histories(spec, data, tmp_path):
    """Beam >= n items: every item is found, with the brute-force score. Histories of different
    lengths share a left-padded batch; gpt2's learned absolute positions catch wrong position ids."""
    codes = [(i % 3,) if i < 3 else (i % 3, i // 3) if i < 15 else (i % 3, i // 3, i % 2) for i in range(N_ITEMS)]
    tok = _fitted("precomputed", data, tmp_path, codes)
    backbone = _causal(tok, spec).eval()
    trie = CodeTrie.build(backbone.item_sequences(), EOS)
    histories = [[1], [4, 5, 6, 7, 8, 9, 10], [2, 3], list(range(12))]
    ranked = beam_search(backbone, trie, histories, beam=N_ITEMS, k=N_ITEMS)
    exact = exact_scores(backbone, histories, length_penalty=1.0)
    assert ranked.n_invalid == 0
    assert (ranked.items[:, 0] == exact.argmax(1)).all()
    assert np.allclose(ranked.scores, -np.sort(-exact, axis=1), atol=1e-4)


def test_loss_is_on_the_response_only_unless_train_prompt(data):
    tok = _fitted("id", data, None)
    histories, targets = [[1, 2, 3], [4]], [5, 6]
    batch = _causal(tok).collate(histories, targets)
    assert int((batch["labels"] != -100).sum()) == 2 * 2  # one token + end token per target
    both = _causal(tok, train_prompt=True).collate(histories, targets)
    assert bool((both["labels"] != -100).all())
    assert torch.isfinite(_causal(tok, train_prompt=True).loss(both))


@pytest.mark.parametrize("spec", ["t5", "causal:tiny-llama"])
def test_attention_never_runs_on_the_cudnn_kernel(spec, data, monkeypatch):
    # cuDNN's fused attention trained to NaN on an H200; the flags SDPA dispatches on are
    # checked at each call (the same on a CPU): training forward, beam search, exact scores
    seen = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):
        seen.append((torch.backends.cuda.cudnn_sdp_enabled(), torch.backends.cuda.math_sdp_enabled()))
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    tok = _fitted("id", data, None)
    torch.manual_seed(0)
    backbone = make_backbone(spec, tok, RunConfig())
    split = data[1]
    backbone(backbone.collate(split.train.histories[:4], split.train.targets[:4].tolist())).backward()
    beam_search(backbone.eval(), CodeTrie.build(backbone.item_sequences(), EOS), split.test.histories[:2], 5, 5)
    exact_scores(backbone, split.test.histories[:1])
    assert len(seen) >= 3 and set(seen) == {(False, True)}
    assert torch.backends.cuda.cudnn_sdp_enabled()  # restored after each call


def test_input_budget_shortens_the_prompt_to_recent_items(data):
    tok = _fitted("id", data, None)
    backbone = _causal(tok)
    recent = backbone.prompt([2, 3])
    assert backbone.prompt([1, 2, 3]) != recent
    backbone.max_input_tokens = 2  # one token per id item: the last two items
    assert backbone.prompt([1, 2, 3]) == recent


def _save_pretrained(folder, with_eos=True):
    words = ["<pad>", "<s>", "<unk>", *([w for w, _ in pre_tokenizers.Whitespace().pre_tokenize_str(PROMPT_HEAD)]),
             "What", "would", "the", "user", "interact", "with", "next", "?", "Response", ":", ",", "hello"]
    if with_eos:
        words.append("</s>")
    core = WordTokenizer(models.WordLevel({w: i for i, w in enumerate(dict.fromkeys(words))}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    text = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", bos_token="<s>", unk_token="<unk>",
                                   **({"eos_token": "</s>"} if with_eos else {}))
    text.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(text) + 3, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256)
    LlamaForCausalLM(config).save_pretrained(folder)
    return text


@pytest.mark.parametrize("with_eos", [True, False])
def test_loads_a_pretrained_model_and_tokenizer_from_a_local_folder(with_eos, data, tmp_path):
    folder = tmp_path / "model"
    text = _save_pretrained(folder, with_eos)
    tok = _fitted("id", data, None)
    backbone = _causal(tok, str(folder))
    assert isinstance(backbone, CausalBackbone)
    assert backbone.head[1:] == text.encode(PROMPT_HEAD, add_special_tokens=False)  # the model's own words
    base = len(text)
    assert backbone.columns[2:].tolist() == list(range(base, base + len(tok.vocab)))  # item tokens after the text
    assert backbone.lm_eos == (text.eos_token_id if with_eos else base + len(tok.vocab))
    assert backbone.model.get_input_embeddings().weight.shape[0] >= base + len(tok.vocab) + (not with_eos)
    split = data[1]
    batch = backbone.collate(split.train.histories[:4], split.train.targets[:4].tolist())
    assert torch.isfinite(backbone.loss(batch))
    ranked = beam_search(backbone.eval(), CodeTrie.build(backbone.item_sequences(), EOS), split.test.histories[:3], 20, 20)
    assert ranked.n_invalid == 0 and ((ranked.items >= 0) & (ranked.items < N_ITEMS)).all()


def test_unknown_model_folder_is_a_bench_error(data, tmp_path):
    tok = _fitted("id", data, None)
    with pytest.raises(BenchError, match="causal:"):
        _causal(tok, str(tmp_path / "absent"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(BenchError, match="cannot load"):
        _causal(tok, str(tmp_path / "empty"))
    with pytest.raises(BenchError, match="needs a model"):
        make_backbone("causal", tok, RunConfig())


@pytest.mark.parametrize("spec", ["tiny-llama", "tiny-gpt2"])
def test_lora_trains_only_adapters_embeddings_and_head(spec, data):
    tok = _fitted("id", data, None)
    backbone = _causal(tok, spec, lora=True, gradient_checkpointing=True).train()
    split = data[1]
    backbone.loss(backbone.collate(split.train.histories[:8], split.train.targets[:8].tolist())).backward()
    with_grad = [n for n, p in backbone.named_parameters() if p.grad is not None]
    assert with_grad and all("lora_" in n or "modules_to_save" in n for n in with_grad)
    assert any("lora_B" in n for n in with_grad)
    embeddings = backbone.model.get_input_embeddings().weight
    head = backbone.model.get_output_embeddings().weight
    assert embeddings.grad is not None and head.grad is not None
    assert not any(p.requires_grad for n, p in backbone.named_parameters() if "original_module" in n or "base_layer" in n)


def test_config_gives_causal_its_lr_and_options():
    from bench.config import preset_config

    assert preset_config("paper", {}, backbone="causal:tiny-llama").recipe.lr == 1e-4  # DESIGN 6
    assert preset_config("paper", {}, backbone="t5").recipe.lr == 5e-4
    assert preset_config("paper", {"recipe.lr": "3e-4"}, backbone="causal:x").recipe.lr == 3e-4  # the user's wins
    config = preset_config("quick", {"causal.lora": "true", "causal.lora_r": "4"}, backbone="causal:tiny-llama")
    assert config.causal.lora and config.causal.lora_r == 4
    with pytest.raises(BenchError, match="causal"):
        preset_config("quick", {"causal.rank": "4"}, backbone="causal:tiny-llama")


def test_lora_flag_needs_a_causal_backbone():
    from click.testing import CliRunner

    from bench.cli import main

    result = CliRunner().invoke(main, ["run", "--lora", "--out", "unused"])
    assert result.exit_code == 2 and "causal" in result.output
