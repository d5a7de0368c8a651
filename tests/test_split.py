import numpy as np
import pytest

from bench.datasets import Dataset, leave_one_out
from bench.errors import DataError


def make(sequences):
    n_items = max(max(s) for s in sequences) + 1
    return Dataset("t", [str(i) for i in range(n_items)], [f"u{i}" for i in range(len(sequences))], sequences)


def test_leave_one_out_on_a_hand_made_sequence():
    split = leave_one_out(make([[0, 1, 2, 3, 4]]))
    assert split.test.histories == [[0, 1, 2, 3]] and split.test.targets.tolist() == [4]
    assert split.valid.histories == [[0, 1, 2]] and split.valid.targets.tolist() == [3]
    assert split.train.histories == [[0], [0, 1]] and split.train.targets.tolist() == [1, 2]
    assert split.train_sequences == [[0, 1, 2]]


def test_history_keeps_the_last_20_items():
    seq = list(range(30))
    split = leave_one_out(make([seq]))
    assert split.test.histories[0] == list(range(9, 29))
    assert all(len(h) <= 20 for h in split.train.histories)
    assert split.train.histories[-1] == list(range(7, 27)) and split.train.targets[-1] == 27


def test_short_users_are_dropped_and_counted():
    split = leave_one_out(make([[0, 1], [0, 1, 2], [2, 1, 0, 1]]))
    assert split.n_dropped_users == 1
    assert split.test.users.tolist() == [1, 2]
    assert len(split.train) == 1  # only user 2 has a prefix of s[:-2] with a target


def test_no_usable_user_is_an_error():
    with pytest.raises(DataError):
        leave_one_out(make([[0, 1], [1]]))


def test_training_data_never_holds_a_valid_or_test_target_position():
    seqs = [list(np.random.default_rng(u).integers(0, 50, size=8)) for u in range(20)]
    split = leave_one_out(make(seqs))
    for u, head in zip(split.test.users, split.train_sequences):
        assert head == seqs[u][:-2]
