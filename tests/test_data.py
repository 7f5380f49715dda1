"""Length-bucketed batches and their split across DDP ranks (training.data.bucket_batches)."""
import random

import pytest

from training.data import bucket_batches


def durations(n=203, seed=0):
    rng = random.Random(seed)
    return [rng.uniform(0.5, 16.0) for _ in range(n)]


def test_batches_stay_under_the_padded_budget_and_cover_every_utterance():
    lengths = durations()
    batches = bucket_batches(lengths, 40.0, seed=1, epoch=0)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) == 1 or max(lengths[i] for i in batch) * len(batch) <= 40.0


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_get_disjoint_equal_shares_in_the_same_order_every_time(world_size):
    lengths = durations()
    whole = bucket_batches(lengths, 40.0, seed=1, epoch=3)
    shares = [bucket_batches(lengths, 40.0, seed=1, epoch=3, rank=r, world_size=world_size) for r in range(world_size)]
    assert len({len(share) for share in shares}) == 1  # every rank takes the same number of steps
    assert len(shares[0]) == len(whole) // world_size
    seen = [tuple(batch) for share in shares for batch in share]
    assert len(seen) == len(set(seen)) and set(seen) <= {tuple(batch) for batch in whole}
    assert shares[1] == bucket_batches(lengths, 40.0, seed=1, epoch=3, rank=1, world_size=world_size)


def test_epochs_shuffle_the_batch_order():
    lengths = durations()
    first, second = bucket_batches(lengths, 40.0, seed=1, epoch=0), bucket_batches(lengths, 40.0, seed=1, epoch=1)
    assert len(first) > 5 and first != second
