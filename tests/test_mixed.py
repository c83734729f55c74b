"""Multi-dataset mixing: balance shares and remainder, fresh per-epoch subsets, concat, the distributed sampler."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from torch.utils.data import DataLoader

from common.errors import ConfigError
from data.mixed import FeistelPermutation, MixedDataset, MixedSampler


class Tagged:
    """A dataset whose item ``k`` is ``(tag, k)``, so a mixed sample says where it came from."""

    def __init__(self, tag: int, n: int) -> None:
        self.tag, self.n, self.epoch = tag, n, None

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, k: int) -> tuple[int, int]:
        if not 0 <= k < self.n:
            raise IndexError(k)
        return self.tag, k

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch


LENGTHS = (10, 1000, 37, 64)


def make(total_len=203, seed=7, strategy="balance", lengths=LENGTHS) -> MixedDataset:
    return MixedDataset([Tagged(t, n) for t, n in enumerate(lengths)], strategy=strategy, total_len=total_len,
                        seed=seed)


@pytest.mark.parametrize("n", [*range(1, 70), 1000, 4097, 123457])
def test_feistel_is_a_bijection(n):
    perm = FeistelPermutation(n, [n, 1, 2, 3, 4, 5])
    assert np.array_equal(np.sort(perm(np.arange(n))), np.arange(n))
    if n > 1:
        assert perm(n - 1) == perm(np.arange(n))[n - 1]
    with pytest.raises(IndexError):
        perm(n)


def test_feistel_keys_give_roughly_uniform_permutations():
    # where element 0 lands, over many seeds: each of the 8 positions about 1/8 of the time (binomial sd ~21)
    landing = Counter(int(np.argmax(FeistelPermutation.from_entropy(8, k)(np.arange(8)) == 0)) for k in range(4000))
    assert set(landing) == set(range(8)) and all(400 < c < 600 for c in landing.values())
    # every one of the 24 orders of 4 elements occurs
    orders = Counter(tuple(FeistelPermutation.from_entropy(4, k)(np.arange(4)).tolist()) for k in range(2000))
    assert len(orders) == 24


def test_lengths():
    assert len(make(total_len=203)) == 203
    assert len(make(total_len="auto")) == sum(LENGTHS)  # the original's 'auto': the sum of the lengths
    assert len(make(total_len=None)) == 4 * max(LENGTHS)  # n x the longest
    assert len(make(strategy="concat", total_len=5)) == sum(LENGTHS)  # concat ignores total_len


def test_balance_shares_and_remainder_rule():
    m = make(total_len=203)  # per_db_len 50, 3 remainder slots
    assert m.per_db_len == 50
    db, local = m.mapping()
    shares = np.bincount(db, minlength=4)
    assert np.array_equal(shares, m.dataset_shares()) and shares.sum() == 203
    assert np.array_equal(db[:200], np.arange(200) // 50)  # equal consecutive shares
    assert (shares >= 50).all() and (shares - 50).sum() == 3  # the 3 extra indices went to some datasets
    # every (dataset, local) pair is what __getitem__ returns, and local indices are in range
    for i in range(203):
        assert m[i] == (db[i], local[i])
        assert 0 <= local[i] < LENGTHS[db[i]]
    assert m[-1] == m[202]
    with pytest.raises(IndexError):
        m[203]
    # the remainder datasets are drawn per epoch: over several epochs more than one dataset gets extras
    extras = set()
    for epoch in range(8):
        m.set_epoch(epoch)
        extras |= set(np.flatnonzero(m.dataset_shares() > 50).tolist())
    assert len(extras) > 1


def test_large_dataset_fresh_subset_per_epoch_without_repeats():
    m = make(total_len=800)  # per_db_len 200: dataset 1 (1000 entries) is large, the others short
    seen: set[int] = set()
    previous: set[int] = set()
    for epoch in range(5):
        m.set_epoch(epoch)
        db, local = m.mapping()
        big = local[db == 1]
        assert len(big) == 200 and len(set(big.tolist())) == 200  # unique within the epoch
        assert set(big.tolist()) != previous
        previous = set(big.tolist())
        seen |= previous
    # the original used a fixed first 200 forever; here 5 epochs reach ~1 - 0.8^5 = 67% of the dataset
    assert len(seen) > 500


def test_short_dataset_is_repeated_cyclically_with_random_remainder():
    m = make(total_len=800)  # dataset 0: 10 entries, dataset 2: 37, dataset 3: 64, quota >= 200 each
    db, local = m.mapping()
    for d, length in ((0, 10), (2, 37), (3, 64)):
        quota = int(m.dataset_shares()[d])
        counts = np.bincount(local[db == d], minlength=length)
        full, rest = divmod(quota, length)
        # every entry once per complete cycle, and the last incomplete cycle without replacement
        assert set(counts.tolist()) <= {full, full + 1} and (counts == full + 1).sum() == rest
    # the last-cycle entries change with the epoch (a random remainder), the complete cycles do not
    tails = []
    for epoch in (0, 1, 2):
        m.set_epoch(epoch)
        db, local = m.mapping()
        counts = np.bincount(local[db == 2], minlength=37)
        tails.append(frozenset(np.flatnonzero(counts == counts.max()).tolist()))
    assert len(set(tails)) > 1


def _mapping_json(seed: int, epoch: int) -> str:
    m = make(total_len=203, seed=seed)
    m.set_epoch(epoch)
    db, local = m.mapping()
    return json.dumps([db.tolist(), local.tolist()])


def test_mapping_is_a_function_of_seed_and_epoch():
    a, b = make(seed=7), make(seed=7)
    for epoch in (5, 2, 9, 3):  # a visits epochs in another order than b
        a.set_epoch(epoch)
    b.set_epoch(3)
    assert all(np.array_equal(x, y) for x, y in zip(a.mapping(), b.mapping()))
    b.set_epoch(4)
    assert not all(np.array_equal(x, y) for x, y in zip(a.mapping(), b.mapping()))
    c = make(seed=8)
    c.set_epoch(3)
    assert not all(np.array_equal(x, y) for x, y in zip(a.mapping(), c.mapping()))
    # another process (another hash seed) computes the same mapping
    code = "from tests.test_mixed import _mapping_json; print(_mapping_json(7, 3))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.stdout.strip() == _mapping_json(7, 3)


def test_set_epoch_reaches_member_datasets():
    m = make()
    m.set_epoch(6)
    assert all(d.epoch == 6 for d in m.datasets)


def test_concat_indexing():
    m = make(strategy="concat")
    chain = [(t, k) for t, n in enumerate(LENGTHS) for k in range(n)]
    assert [m[i] for i in range(len(m))] == chain
    assert m[-1] == chain[-1] and m[-len(chain)] == chain[0]
    db, local = m.mapping()
    assert list(zip(db.tolist(), local.tolist())) == chain
    assert np.array_equal(m.dataset_shares(), LENGTHS)
    m.set_epoch(3)  # no randomness in concat
    assert [m[i] for i in range(len(m))] == chain
    with pytest.raises(IndexError):
        m[len(chain)]


def test_invalid_configurations():
    with pytest.raises(ConfigError, match="strategy"):
        make(strategy="mix")
    with pytest.raises(ConfigError, match="empty"):
        make(lengths=(3, 0))
    with pytest.raises(ConfigError, match="smaller than the number of datasets"):
        make(total_len=3)
    with pytest.raises(ConfigError, match="total_len"):
        make(total_len="all")


@pytest.mark.parametrize("drop_last", [True, False])
def test_sampler_ranks_are_disjoint_and_cover_the_epoch(drop_last):
    m = make(total_len=203)
    world = 3
    samplers = [MixedSampler(m, num_replicas=world, rank=r, seed=1, drop_last=drop_last) for r in range(world)]
    for s in samplers:
        s.set_epoch(2)
    parts = [list(s) for s in samplers]
    per_rank = 67 if drop_last else 68
    assert all(len(p) == len(s) == per_rank for p, s in zip(parts, samplers))
    flat = [i for p in parts for i in p]
    if drop_last:
        assert len(set(flat)) == 201 and set(flat) <= set(range(203))  # disjoint; 203 % 3 dropped
    else:
        assert set(flat) == set(range(203)) and len(flat) == 204  # covers; one index repeated as padding
        assert sum(len(set(p) & set(q)) for a, p in enumerate(parts) for q in parts[a + 1:]) == 1
    assert m.epoch == 2  # set_epoch reached the dataset
    # rank r holds positions r, r + 3, ... of one epoch order: interleaved, the parts are that order
    order = [parts[i % world][i // world] for i in range(len(flat))]
    single = MixedSampler(m, num_replicas=1, rank=0, seed=1)
    single.set_epoch(2)
    assert order[:201] == single.indices()[:201].tolist()
    samplers[0].set_epoch(3)
    assert list(samplers[0]) != parts[0]  # reshuffled per epoch


def test_sampler_shuffle_resume_and_defaults():
    m = make(total_len=100)
    s = MixedSampler(m, seed=4)  # no process group: one replica
    assert s.num_replicas == 1 and s.rank == 0
    s.set_epoch(1)
    full = list(s)
    assert sorted(full) == list(range(100)) and full != list(range(100))
    s.set_start(30)
    assert list(s) == full[30:] and len(s) == 70
    same = MixedSampler(m, seed=4)
    same.set_epoch(1)
    assert list(same) == full  # the same (seed, epoch) -> the same order
    plain = MixedSampler(m, num_replicas=4, rank=1, shuffle=False)
    assert list(plain) == list(range(1, 100, 4))
    with pytest.raises(ValueError):
        MixedSampler(m, num_replicas=2, rank=2)


def test_dataloader_epochs():
    m = make(total_len=60, lengths=(5, 200))
    s = MixedSampler(m, seed=0)
    loader = DataLoader(m, batch_size=10, sampler=s, collate_fn=list)
    epochs = []
    for epoch in range(2):
        s.set_epoch(epoch)  # before the iterator is created (workers copy the dataset then)
        samples = [x for batch in loader for x in batch]
        assert Counter(t for t, _ in samples) == {0: 30, 1: 30}
        big = [k for t, k in samples if t == 1]
        assert len(set(big)) == 30
        epochs.append(set(big))
    assert epochs[0] != epochs[1]
