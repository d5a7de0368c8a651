"""Collisions as an axis (bench/tokenizers/collisions.py), code-level scoring of kept
collisions, and the code statistics newer audits report (shared prefixes, group sizes)."""

import itertools
import json

import numpy as np
import pandas as pd
import pytest
import torch

from bench.backbones.trie import CodeTrie
from bench.evaluation.code_stats import code_stats, prefix_sharing
from bench.evaluation.metrics import code_target_ranks, target_ranks
from bench.reporting.collision_scoring import collision_scoring_section, item_level
from bench.reporting.report import md_table
from bench.tokenizers.collisions import n_colliding, reassign_last_level, resolve_codes, sinkhorn_rounds

# items 0-2 share (0, 1, 2); item 3 alone; 4-5 share (1, 0, 0)
LEVELS = np.array([[0, 1, 2], [0, 1, 2], [0, 1, 2], [0, 1, 3], [1, 0, 0], [1, 0, 0]])
K = 4


def _costs(seed=0):
    return np.random.default_rng(seed).random((len(LEVELS), K))


def test_reassign_is_the_cheapest_unique_last_level_within_each_prefix():
    costs = _costs()
    out = reassign_last_level(LEVELS, costs)
    assert n_colliding(out) == 0 and (out[:, :-1] == LEVELS[:, :-1]).all()
    prefix = [0, 1, 2, 3]  # the items of prefix (0, 1): the brute-force cheapest distinct codes
    best = min(itertools.permutations(range(K), len(prefix)), key=lambda p: sum(costs[i, c] for i, c in zip(prefix, p)))
    assert tuple(out[prefix, -1]) == best


def test_reassign_of_a_prefix_larger_than_the_codebook_leaves_the_rest_to_the_numbering_token():
    levels = np.zeros((6, 2), dtype=np.int64)  # six items, one prefix, K = 4
    out = reassign_last_level(levels, _costs()[:, :K])
    assert len(set(out[:, -1])) == K and n_colliding(out) == 2
    vocab, codes, found = resolve_codes(levels, _costs()[:, :K], "reassign", [1, K])
    assert (found.before, found.after) == (5, 2) and len(set(codes)) == 6  # the two left get <c_k>


def test_sinkhorn_rounds_move_only_colliding_last_levels():
    out = sinkhorn_rounds(LEVELS, _costs(1), rounds=20, epsilon=0.003, iters=50)
    assert (out[:, :-1] == LEVELS[:, :-1]).all() and out[3, -1] == LEVELS[3, -1]
    assert n_colliding(out) < n_colliding(LEVELS)
    same = sinkhorn_rounds(LEVELS, lambda group: torch.as_tensor(_costs(1)[group], dtype=torch.float32))
    assert (same == out).all()  # a function of the group gives the same as the whole matrix


@pytest.mark.parametrize("policy,every,lengths,distinct", [
    ("suffix", True, {4}, 6),  # TIGER: every item gets the numbering token
    ("suffix", False, {3, 4}, 6),  # only colliding items do
    ("keep", False, {3}, 3),
])
def test_suffix_and_keep(policy, every, lengths, distinct):
    vocab, codes, found = resolve_codes(LEVELS, None, policy, [2, 2, K], every_item=every)
    assert {len(c) for c in codes} == lengths and len(set(codes)) == distinct
    assert (found.before, found.after) == (3, 3)
    assert all(0 <= t < len(vocab) for c in codes for t in c)


def test_policies_that_need_distances_say_so():
    with pytest.raises(ValueError, match="needs each item's distances"):
        resolve_codes(LEVELS, None, "reassign", [2, 2, K])
    with pytest.raises(ValueError, match="must be one of"):
        resolve_codes(LEVELS, None, "merge", [2, 2, K])


def test_code_level_rank_counts_codes_not_items():
    # a user's finished codes in score order: leaf 7 (items 1, 2), leaf 9 (item 5), none, leaf 4
    leaves = np.array([[7, 9, -1, 4], [4, 7, 9, -1]])
    item_leaf = np.array([-1, 7, 7, 3, 4, 9])
    targets = np.array([5, 2])
    assert code_target_ranks(leaves, item_leaf[targets]).tolist() == [2, 2]
    items = np.array([[1, 2, 5, 4], [4, 1, 2, 5]])  # the same lists at item level
    assert target_ranks(items, targets).tolist() == [3, 3]
    assert code_target_ranks(leaves, np.array([3, 3])).tolist() == [0, 0]  # absent


def test_the_trie_knows_each_items_leaf():
    trie = CodeTrie.build([(1, 2), (1, 2), (1, 3)], eos=0)
    leaves = trie.item_leaves(3)
    assert leaves[0] == leaves[1] != leaves[2]
    assert trie.items_of(int(leaves[0])) == [0, 1]


def test_code_stats_count_shared_prefixes_and_collision_group_sizes():
    index = {str(i): [f"<a_{a}>", f"<b_{b}>", f"<c_{c}>"] for i, (a, b, c) in enumerate(LEVELS)}
    stats = code_stats(index)
    assert stats["collision_groups"] == "2:1 3:1"
    assert [(lv["prefixes"], lv["items_sharing_prefix"]) for lv in stats["levels"]] == [(2, 6), (2, 6), (3, 5)]
    assert prefix_sharing(index, 2) == {"prefixes": 3, "items_sharing_prefix": 5}


def test_the_report_sets_code_level_beside_item_level_and_tables_stay_item_level():
    rows = [("d", "tiger-keep", s, "test", m, 10, v) for s in (0, 1)
            for m, v in (("recall", 0.10), ("code_recall", 0.15), ("ndcg", 0.05), ("code_ndcg", 0.06))]
    rows += [("d", "id", 0, "test", "recall", 10, 0.2)]
    metrics = pd.DataFrame(rows, columns=["dataset", "tokenizer", "seed", "split", "metric", "k", "value"])
    text = "\n".join(collision_scoring_section(metrics, md_table, sorted))
    assert "| tiger-keep | 0.1000 | 0.1500 | +50.0% | 0.0500 | 0.0600 | +20.0% |" in text and "| id |" not in text
    assert set(item_level(metrics)["metric"]) == {"recall", "ndcg"}
    assert collision_scoring_section(item_level(metrics), md_table, sorted) == []


def test_the_collision_ablation_runs_every_policy_and_scores_kept_collisions_at_both_levels(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from bench import runner
    from bench.cli import main

    train, codes_when_training = runner.train, []  # which rows have codes when a unit starts training

    def recording_train(*args, **kwargs):
        codes_when_training.append(sorted(p.name for p in (tmp_path / "r" / "codes").glob("*.state.json")))
        return train(*args, **kwargs)

    prefit, prefitted = runner.prefit_shared_quantiser_rows, {}

    def recording_prefit(run, seed):
        prefitted.update(fitted := prefit(run, seed))
        return fitted

    monkeypatch.setattr(runner, "train", recording_train)
    monkeypatch.setattr(runner, "prefit_shared_quantiser_rows", recording_prefit)

    sets = ["synthetic.n_items=60", "synthetic.n_users=80", "recipe.epochs=1", "recipe.valid_users=0", "t5.d_model=32",
            "t5.d_ff=64", "t5.num_heads=2", "t5.d_kv=16", "t5.num_layers=1", "t5.num_decoder_layers=1",
            "sasrec.epochs=1", "tiger.epochs=3"]
    args = ["ablate", "collisions", "--tokenizers", "tiger", "--device", "cpu", "--out", str(tmp_path / "r")]
    result = CliRunner().invoke(main, args + [a for s in sets for a in ("--set", s)])
    assert result.exit_code == 0, result.output
    metrics = pd.read_csv(tmp_path / "r" / "metrics.csv")
    assert {"tiger-suffix", "tiger-keep", "tiger-sinkhorn", "tiger-reassign"} <= set(metrics["tokenizer"])
    # every row's quantiser fitted before any row trains: a run resumed on another machine keeps them
    assert len(codes_when_training) == 4 and all(len(names) == 4 for names in codes_when_training)
    timings = pd.read_csv(tmp_path / "r" / "timings.csv").query("stage == 'tokenizer'").set_index("tokenizer")
    assert set(prefitted) == set(timings.index)  # each unit records its fit's time, not the time to load its codes
    assert all(timings.loc[label, "seconds"] == pytest.approx(t["tokenizer"].wall) for label, t in prefitted.items())
    # one quantiser for every policy: fitted here (never another run's), the same fit each time
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert all(v["reusable"] is False for v in config["variants"])
    codes = {p: json.loads((tmp_path / "r" / "codes" / f"tiger-{p}-seed0.index.json").read_text()) for p in ("suffix", "keep")}
    assert all(codes["keep"][item] == code[:len(codes["keep"][item])] for item, code in codes["suffix"].items())
    keep = metrics.query("tokenizer == 'tiger-keep'")
    item = keep[~keep["metric"].str.startswith("code_")].set_index(["split", "metric", "k"])["value"]
    code = keep[keep["metric"].str.startswith("code_")].assign(metric=lambda f: f["metric"].str[5:])
    code = code.set_index(["split", "metric", "k"])["value"]
    assert len(code) == len(item) and (code >= item - 1e-12).all()  # a code's rank is never behind its items'
    assert not metrics.query("tokenizer == 'tiger-suffix'")["metric"].str.startswith("code_").any()
    per_user = pd.read_csv(tmp_path / "r" / "per_user.csv")
    assert per_user.query("tokenizer == 'popularity'")["code_ndcg@10"].isna().all()
    assert not pd.read_csv(tmp_path / "r" / "significance.csv")["metric"].str.startswith("code_").any()
    stats = pd.read_csv(tmp_path / "r" / "code_stats.csv").drop_duplicates("tokenizer").set_index("tokenizer")
    decoded = stats["n_items"] - stats["n_unique"]
    assert decoded["tiger-keep"] > 0 and decoded["tiger-suffix"] == 0 and decoded["tiger-reassign"] == 0
    assert stats.loc["tiger-keep", "collisions_assigned"] == decoded["tiger-keep"]
    assert decoded["tiger-sinkhorn"] <= decoded["tiger-keep"]
    report = (tmp_path / "r" / "report.md").read_text()
    assert "## Collisions: item- and code-level scoring" in report and "tiger, collisions=reassign" in report
    bad = CliRunner().invoke(main, ["ablate", "collisions", "--tokenizers", "random", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "random cannot take every policy" in bad.output


def test_tokens_may_be_spelt_otherwise_when_letters_run_out():
    vocab, codes, _ = resolve_codes(LEVELS, None, "suffix", [2, 2, K], spell=lambda level, code: f"<x{level}_{code}>")
    assert vocab[:2] == ["<x0_0>", "<x0_1>"] and vocab[-1].startswith("<x3_")
    default, _, _ = resolve_codes(LEVELS, None, "suffix", [2, 2, K])
    assert default[:2] == ["<a_0>", "<a_1>"] and default[-1].startswith("<d_")


def test_collisions_as_first_assigned_are_read_from_new_and_older_states():
    from bench.tokenizers.base import saved_collisions_before

    assert saved_collisions_before({"collisions_before": 7, "extra": {}}) == 7
    assert saved_collisions_before({"extra": {"collisions_before": 5}}) == 5  # tiger/rqkmeans before
    assert saved_collisions_before({"extra": {"collisions_before_rounds": 3}}) == 3  # letter before
    assert saved_collisions_before({"collisions_before": None, "extra": {}}) is None
