"""How often CF neighbours share a level-0 code (bench/evaluation/cf_neighbours.py)."""

import numpy as np
import pytest

from bench.evaluation.cf_neighbours import neighbour_code_sharing


def test_grouped_embeddings_and_codes_share_fully_random_codes_do_not():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(5), 20)  # 5 tight clusters of 20 items
    cf = np.eye(5)[groups] * 10 + 0.01 * rng.standard_normal((100, 5))
    aligned = neighbour_code_sharing(cf, groups, k=10, chunk=7)  # chunks: the same as one block
    assert aligned["cf_neighbours_share_code0"] == 1.0
    assert aligned["random_pairs_share_code0"] == pytest.approx(5 * 20 * 19 / (100 * 99))
    shuffled = neighbour_code_sharing(cf, rng.permutation(groups), k=10)
    assert shuffled["cf_neighbours_share_code0"] < 0.5
    assert shuffled["random_pairs_share_code0"] == aligned["random_pairs_share_code0"]


def test_hand_counted_neighbours():
    cf = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]])
    codes = np.array([0, 0, 0, 1])
    # k=1: 0->1 (same), 1->0 (same), 2->3 (differs), 3->2 (differs)
    assert neighbour_code_sharing(cf, codes, k=1)["cf_neighbours_share_code0"] == 0.5
    assert neighbour_code_sharing(cf, codes, k=1)["random_pairs_share_code0"] == pytest.approx(6 / 12)
    with pytest.raises(ValueError):
        neighbour_code_sharing(cf[:1], codes[:1])
