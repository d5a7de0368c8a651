import math

import numpy as np

from bench.evaluation.metrics import per_user_metrics, popularity_ranking, target_ranks, tidy_means


def test_ranks_and_metrics_by_hand():
    items = np.array([[5, 3, 9], [1, 2, 3], [7, 7, 7]])
    # with K cut-offs (1, 2, 3): user 0 finds its target at rank 2, user 1 at rank 1, user 2 never
    ranks = target_ranks(items, np.array([3, 1, 4]))
    assert ranks.tolist() == [2, 1, 0]
    m = per_user_metrics(ranks, ks=(1, 2, 3))
    assert m["recall@1"].tolist() == [0, 1, 0]
    assert m["recall@2"].tolist() == [1, 1, 0]
    assert np.allclose(m["ndcg@2"], [1 / math.log2(3), 1.0, 0.0])
    assert np.allclose(m["mrr"], [0.5, 1.0, 0.0])
    rows = {(metric, k): v for metric, k, v in tidy_means(m, ks=(1, 2, 3))}
    assert math.isclose(rows[("ndcg", 2)], (1 / math.log2(3) + 1) / 3)
    assert math.isclose(rows[("mrr", 3)], 0.5)


def test_first_match_only_counts():
    m = per_user_metrics(target_ranks(np.array([[4, 4, 1]]), np.array([4])), ks=(3,))
    assert m["ndcg@3"].tolist() == [1.0] and m["recall@3"].tolist() == [1.0]


def test_popularity_ranking_breaks_ties_by_item_id():
    ranking = popularity_ranking(np.array([3, 5, 5, 0, 1]), n_users=2, k=3)
    assert ranking.tolist() == [[1, 2, 0], [1, 2, 0]]
