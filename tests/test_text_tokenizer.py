"""`text`: titles as identifiers; unique codes, exact decoding, constrained search over them."""

import json

import numpy as np
import pytest
import torch

from bench.backbones import CodeTrie, T5Backbone, beam_search, exact_scores
from bench.backbones.base import EOS, PAD
from bench.config import PRESETS
from bench.datasets import Dataset, leave_one_out
from bench.datasets.split import MAX_HISTORY
from bench.errors import BenchError, DataError
from bench.tokenizers import TOKENIZERS, FitContext, make_tokenizer, parse_tokenizer_list
from bench.tokenizers.text import PRESET_OPTIONS, SEPARATOR, TextTokenizer

RINGS = "The Lord of the Rings: The Return of the King, Extended Edition"
TITLES = [
    "Toy Story (1995)",
    "Toy Story 2 (1999)",
    "Toy Story",  # a strict prefix of item 0 in tokens
    "Heat (1995)",
    "Heat (1995)",  # same title as item 3
    RINGS + " Part One",
    RINGS + " Part Two",  # equal to item 5 once cut to 8 tokens
    "GoldenEye (1995)",
    "Four Rooms (1995)",
    "Get Shorty (1995)",
    "Copycat (1995)",
    "Twelve Monkeys (1995)",
    "Babe (1995)",
    "Dead Man Walking (1995)",
    "Ünïcödé <sep> title",  # non-ASCII and our separator's spelling inside a title
]
N = len(TITLES)


def _data(titles=TITLES, item_text=None) -> Dataset:
    n = len(titles)
    sequences = [[(u + j) % n for j in range(5)] for u in range(n)]
    return Dataset("t", [f"i{i}" for i in range(n)], [f"u{u}" for u in range(n)], sequences,
                   item_text=item_text or [{"title": t} for t in titles], source="test")


def _fit(data: Dataset, **options) -> TextTokenizer:
    tok = make_tokenizer("text", {"vocab_size": 300, "max_length": 8, "min_frequency": 1, **options})
    tok.fit(FitContext(data, leave_one_out(data), 0, log=lambda m: None))
    return tok


@pytest.fixture(scope="module")
def tok():
    return _fit(_data())


def test_registered_and_in_all():
    assert TOKENIZERS["text"].needs_text
    assert "text" in parse_tokenizer_list("all")
    assert set(PRESET_OPTIONS) == set(PRESETS)


def test_every_code_is_distinct_and_decodes_to_its_title(tok):
    assert len(set(tok.codes)) == N
    assert tok.n_collisions == 2  # the two "Heat (1995)" and the two titles equal after 8 tokens
    assert len(set(tok.vocab)) == len(tok.vocab)
    trie = CodeTrie.build(tok.codes, EOS + 10_000)  # tokenizer ids; an EOS no token uses
    for item, code in enumerate(tok.codes):
        assert trie.items_of(trie.follow([*code, EOS + 10_000])) == [item]
        text = tok.decode(code)
        n_words = sum(t < tok.n_text_tokens for t in code)
        assert text == TITLES[item] or (n_words == 8 and TITLES[item].startswith(text))  # exact unless cut
    assert [tok.decode(tok.codes[i]) for i in (0, 1, 2, 3, 14)] == [TITLES[i] for i in (0, 1, 2, 3, 14)]
    assert len(tok.codes[5]) == 9 and tok.decode(tok.codes[5]) == tok.decode(tok.codes[6])  # cut, then numbered
    dup = {i: tok.vocab[tok.codes[i][-1]] for i in (3, 4, 5, 6)}
    assert dup == {3: "<dup_0>", 4: "<dup_1>", 5: "<dup_0>", 6: "<dup_1>"}
    assert tok.codes[2] == tok.codes[0][: len(tok.codes[2])] and len(tok.codes[2]) < len(tok.codes[0])


def test_no_collision_means_no_numbering_token():
    tok = _fit(_data(TITLES[:4]))
    assert tok.n_collisions == 0 and not any(t.startswith("<dup_") for t in tok.vocab)
    assert [tok.decode(c) for c in tok.codes] == TITLES[:4]


def test_fit_is_deterministic(tok):
    assert _fit(_data()).codes == tok.codes


def test_histories_separate_items(tok, tiny_t5):
    assert tok.vocab[tok.separator] == SEPARATOR and tok.separator == len(tok.vocab) - 1
    assert tok.history_tokens(3) == tok.codes[3] + (tok.separator,)
    backbone = T5Backbone(tok, tiny_t5)
    ids = backbone.history_ids([0, 1])
    sep = tok.separator + backbone.offset
    assert ids.count(sep) == 2 and ids[len(tok.codes[0])] == sep and ids[-1] == sep
    assert all(sep not in seq for seq in backbone.item_sequences())  # targets carry no separator


def test_input_budget_keeps_the_most_recent_whole_items(tok, tiny_t5):
    backbone = T5Backbone(tok, tiny_t5)
    history = [0, 5, 1, 3]
    sizes = [len(tok.history_tokens(i)) for i in history]
    assert backbone.history_ids(history) == [t + backbone.offset for i in history for t in tok.history_tokens(i)]
    backbone.max_input_tokens = sizes[-1] + sizes[-2]  # exactly the last two items
    assert backbone.recent_history(history) == [1, 3]
    assert backbone.history_ids(history) == [t + backbone.offset for i in [1, 3] for t in tok.history_tokens(i)]
    backbone.max_input_tokens = sizes[-1] + sizes[-2] - 1  # one token short of two items: no partial item
    assert backbone.recent_history(history) == [3]
    backbone.max_input_tokens = 1  # smaller than one item: the last item is still read, whole
    assert backbone.recent_history(history) == [3]
    backbone.max_input_tokens = sum(sizes)
    assert backbone.recent_history(history) == history


def test_history_read_reports_items_and_tokens_under_the_budget(tok, tiny_t5):
    from bench.backbones.base import history_read

    backbone = T5Backbone(tok, tiny_t5)
    backbone.max_input_tokens = len(tok.history_tokens(3))  # one item of [.., 3]
    line = history_read(backbone, [[0, 3], [3]])
    assert line.startswith(f"reads 1.0 of 1.5 history items on average ({len(tok.history_tokens(3))} tokens)")


def test_run_config_budget_reaches_the_backbone(tok):
    from bench.backbones import make_backbone
    from bench.config import preset_config

    assert preset_config("quick").recipe.max_input_tokens == 0  # no budget unless a preset sets one
    assert preset_config("cpu").recipe.max_input_tokens >= MAX_HISTORY * 5  # never cuts codes of <= 5 tokens
    config = preset_config("quick", {"recipe.max_input_tokens": "12"})
    assert make_backbone("t5", tok, config).max_input_tokens == 12
    with pytest.raises(BenchError, match="max_input_tokens"):
        preset_config("quick", {"recipe.max_input_tokens": "-1"})


def test_constrained_beam_search_is_exhaustive_and_equals_brute_force(tok, tiny_t5):
    torch.manual_seed(0)
    backbone = T5Backbone(tok, tiny_t5).eval()
    trie = CodeTrie.build(backbone.item_sequences(), EOS)
    histories = [[0, 1], [3, 7, 9], [14], [5, 6, 2]]
    ranked = beam_search(backbone, trie, histories, beam=N, k=N)
    assert ranked.n_invalid == 0
    # beam >= catalogue: every item, including both Toy Story sequels and the prefix title
    assert all(sorted(row) == list(range(N)) for row in ranked.items.tolist())
    exact = exact_scores(backbone, histories, length_penalty=1.0)
    assert (ranked.items[:, 0] == exact.argmax(1)).all()
    assert np.allclose(ranked.scores, np.sort(exact, axis=1)[:, ::-1], atol=1e-4)


def test_narrow_beam_returns_only_catalogue_titles(tok, tiny_t5):
    torch.manual_seed(1)
    backbone = T5Backbone(tok, tiny_t5).eval()
    trie = CodeTrie.build(backbone.item_sequences(), EOS)
    ranked = beam_search(backbone, trie, [[0], [1, 2], [4]], beam=3, k=3)
    assert ranked.n_invalid == 0 and ((ranked.items >= 0) & (ranked.items < N)).all()


def test_titles_sharing_a_prefix_are_each_reachable(tok, tiny_t5):
    """A model forced to spell one title finds it, for "Toy Story", its strict extension
    "Toy Story (1995)" and "Toy Story 2 (1999)": ending early and going on are both possible."""
    torch.manual_seed(2)
    backbone = T5Backbone(tok, tiny_t5).eval()
    trie = CodeTrie.build(backbone.item_sequences(), EOS)
    for target in (2, 0, 1):
        with _forced(backbone, tok.codes[target]):
            ranked = beam_search(backbone, trie, [[3], [7, 8]], beam=2, k=2)
        assert ranked.items[:, 0].tolist() == [target, target]


class _forced:
    """Makes the backbone spell `code` then EOS: each step's log-probs get +50 on the token that
    follows the last chosen one in that sequence (a bigram table; the tokens must be distinct)."""

    def __init__(self, backbone, code):
        seq = [t + backbone.offset for t in code] + [EOS]
        assert len(set(seq)) == len(seq)
        vocab = backbone.model.config.vocab_size
        self.table = torch.zeros(vocab, vocab)
        self.table[[PAD, *seq[:-1]], seq] = 50.0
        self.backbone = backbone

    def __enter__(self):
        # wrap every decoding entry point the backbone has (`step_live` skips finished rows)
        self.names = [n for n in ("step", "step_live") if hasattr(self.backbone, n)]
        for name in self.names:
            setattr(self.backbone, name, self._wrap(getattr(type(self.backbone), name)))

    def _wrap(self, step):
        def forced_step(state, tokens, *rest):
            logp = step(self.backbone, state, tokens, *rest)
            last = torch.full((len(logp),), PAD) if tokens is None else tokens
            return torch.log_softmax(logp + self.table[last], dim=-1)

        return forced_step

    def __exit__(self, *exc):
        for name in self.names:
            delattr(self.backbone, name)


def test_save_load_round_trip(tok, tmp_path):
    data = _data()
    path = tmp_path / "text.index.json"
    tok.save(path, data.item_ids)
    index = json.loads(path.read_text())
    assert index["i3"][-1] == "<dup_0>" and index["i0"][0] == "ĠToy"
    again = make_tokenizer("text")
    again.load(path, data.item_ids)
    assert again.vocab == tok.vocab and again.codes == tok.codes and again.n_collisions == tok.n_collisions
    assert again.separator == tok.separator and again.n_text_tokens == tok.n_text_tokens
    assert [again.history_tokens(i) for i in range(N)] == [tok.history_tokens(i) for i in range(N)]
    assert [again.decode(c) for c in again.codes] == [tok.decode(c) for c in tok.codes]


def test_missing_title_falls_back_to_description_else_names_the_item():
    text = [{"title": "Heat (1995)"}, {"title": "", "description": "A film about toys"}, {"title": "Babe"}]
    tok = _fit(_data(["x"] * 3, item_text=text))
    assert tok.decode(tok.codes[1]) == "A film about toys"
    text[1] = {"title": "  ", "description": ""}
    with pytest.raises(DataError) as err:
        _fit(_data(["x"] * 3, item_text=text))
    assert "item i1 has neither title nor description" in str(err.value) and "\n" not in str(err.value)


def test_options_are_validated():
    with pytest.raises(BenchError, match="max_length must be >= 1"):
        make_tokenizer("text", {"max_length": "0"})
    with pytest.raises(BenchError, match="unknown option"):
        make_tokenizer("text", {"vocab": 10})
