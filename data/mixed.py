"""Multi-dataset mixing (facts sheet 4.10): :class:`MixedDataset` and the distributed :class:`MixedSampler`.

Strategies of :class:`MixedDataset` (``T`` = ``len(mixed)``, ``n`` datasets of lengths ``L_d``):

* ``'concat'``: plain concatenation, ``T = sum(L_d)``; virtual index ``i`` is the ``i``-th entry of the chain.
* ``'balance'`` (every shipped config): ``T = total_len`` virtual samples; each dataset gets an equal share
  ``per_db_len = T // n`` (indices ``d * per_db_len ... (d + 1) * per_db_len - 1`` belong to dataset ``d``); each
  of the ``T - n * per_db_len`` remaining indices goes to a dataset picked at random (as the original), so dataset
  ``d`` serves ``q_d = per_db_len + r_d`` samples in an epoch. Within its quota:

  - a dataset at least as long as its quota (``L_d >= q_d``) serves a **fresh random subset of q_d distinct
    entries every epoch** (the first ``q_d`` values of a random permutation of ``range(L_d)``);
  - a shorter dataset is repeated cyclically (``k -> k mod L_d`` for the ``floor(q_d / L_d)`` complete cycles) and
    the last incomplete cycle is a random subset (without replacement) of its entries.

Difference from the original (defect 20): the original gave a long dataset only its fixed first ``per_db_len``
entries (of a list shuffled once with seed 2023) for the whole run, so most of BEDLAM, say, was never seen. Here the
subset is redrawn every epoch, so over ``E`` epochs a fraction ``1 - (1 - q_d / L_d) ** E`` of it is used. The
original also drew the remainder dataset and the last-cycle entries with Python's global ``random`` at every
``__getitem__`` (different in every worker and on every access); here every choice is a pure function of
``(seed, epoch, index)``, so all ranks and workers agree and a resumed run sees the same samples.

Memory: nothing proportional to ``T`` or ``L_d`` is stored. The per-epoch permutations are keyed Feistel networks
over ``range(L_d)`` (cycle-walking), evaluated on demand; the only arrays are the ``< n`` remainder slots.

Epochs: call ``set_epoch(epoch)`` before iterating (the samplers here and in :mod:`common.engine.trainer` forward
their ``set_epoch`` to the dataset). Data-loader workers copy the dataset when an iterator is created, so create the
iterator after ``set_epoch`` and do not use ``persistent_workers=True`` (workers would keep the old epoch).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Dataset, Sampler

from common.errors import ConfigError

STRATEGIES = ("balance", "concat")
_MASK64 = (1 << 64) - 1
# Stream tags: the dataset's and the sampler's random choices come from different streams even for the same seed.
_TAG_REMAINDER, _TAG_SUBSET, _TAG_SAMPLER = 0x6D6978, 0x737562, 0x736D70
_FEISTEL_ROUNDS = 6
_CHUNK = 8192  # sampler indices computed per vectorised step


# ----------------------------------------------------------------------------------------------------------------
# Keyed permutation of range(n) without storing it
def _mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on a uint64 array (wrapping arithmetic): a cheap, well-mixing hash."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


class FeistelPermutation:
    """A pseudo-random permutation of ``range(n)`` from integer key words, evaluated element-wise in O(1) memory.

    A balanced Feistel network on ``2 * half`` bits (``2 ** (2 * half) < 4 n``) is a bijection of that power-of-two
    range; re-applying it while the value is ``>= n`` ("cycle walking") restricts it to a bijection of
    ``range(n)`` (fewer than 4 applications on average). Pure integer arithmetic: identical on every machine.
    """

    def __init__(self, n: int, key: Sequence[int]) -> None:
        if n < 1:
            raise ValueError(f"permutation size must be >= 1, got {n}")
        self.n = int(n)
        bits = max(2, (self.n - 1).bit_length())
        self.half = (bits + 1) // 2
        self._mask = np.uint64((1 << self.half) - 1)
        self._keys = [np.uint64(int(k) & _MASK64) for k in key]

    @classmethod
    def from_entropy(cls, n: int, *entropy: int) -> FeistelPermutation:
        """The permutation of ``range(n)`` keyed by integers (e.g. seed, epoch, stream tag)."""
        return cls(n, _key_words(*entropy))

    def _encrypt(self, x: np.ndarray) -> np.ndarray:
        shift = np.uint64(self.half)
        left, right = x >> shift, x & self._mask
        for k in self._keys:
            left, right = right, left ^ (_mix64(right ^ k) & self._mask)
        return (left << shift) | right

    def __call__(self, k: np.ndarray | int) -> np.ndarray:
        """Images of ``k`` (ints in ``[0, n)``, any shape) as an int64 array of the same shape."""
        k = np.asarray(k, dtype=np.int64)
        if k.size and (k.min() < 0 or k.max() >= self.n):
            raise IndexError(f"permutation argument out of range [0, {self.n})")
        x = self._encrypt(k.reshape(-1).astype(np.uint64))
        out = x >= np.uint64(self.n)
        while out.any():
            x[out] = self._encrypt(x[out])
            out = x >= np.uint64(self.n)
        return x.astype(np.int64).reshape(k.shape)


def _key_words(*entropy: int, count: int = _FEISTEL_ROUNDS) -> list[int]:
    """``count`` 64-bit key words derived from integers via numpy's SeedSequence (platform independent)."""
    return [int(w) for w in np.random.SeedSequence(list(entropy)).generate_state(count, dtype=np.uint64)]


# ----------------------------------------------------------------------------------------------------------------
class MixedDataset(Dataset):
    """Several datasets seen as one, balanced or concatenated (see the module docstring).

    ``datasets``: map-style datasets (``len`` and ``[int]``); ``strategy``: ``'balance'`` or ``'concat'``;
    ``total_len`` (balance only): the number of virtual samples per epoch, ``'auto'`` = the sum of the lengths (as
    the original), ``None`` = ``n`` x the longest length; ``seed``: the mapping of epoch ``e`` depends only on
    ``(seed, e)``. ``set_epoch`` is forwarded to member datasets that have it.
    """

    def __init__(self, datasets: Sequence[Any], strategy: str = "balance", total_len: int | str | None = "auto",
                 seed: int = 0) -> None:
        if strategy not in STRATEGIES:
            raise ConfigError(f"data strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
        self.datasets = list(datasets)
        if not self.datasets:
            raise ConfigError("MixedDataset needs at least one dataset")
        self.lengths = np.array([len(d) for d in self.datasets], dtype=np.int64)
        self.strategy, self.seed, self.epoch = strategy, int(seed), 0
        n = len(self.datasets)
        if strategy == "concat":
            self.total_len = int(self.lengths.sum())
            self.per_db_len = 0
            self._ends = np.cumsum(self.lengths)
        else:
            empty = [i for i, length in enumerate(self.lengths) if length == 0]
            if empty:
                raise ConfigError(f"'balance' cannot draw from empty dataset(s) at position(s) {empty}; drop them "
                                  "from the training set list")
            if total_len == "auto":
                total = int(self.lengths.sum())
            elif total_len is None:
                total = int(self.lengths.max()) * n
            elif isinstance(total_len, (int, np.integer)) and not isinstance(total_len, bool):
                total = int(total_len)
            else:
                raise ConfigError(f"total_len must be an int, 'auto' or None, got {total_len!r}")
            if total < n:
                raise ConfigError(f"total_len {total} is smaller than the number of datasets ({n}): every dataset "
                                  "needs a share of at least one sample")
            self.total_len = total
            self.per_db_len = total // n
        self.set_epoch(0)

    # -- epoch state ---------------------------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Draw epoch ``epoch``'s mapping (a pure function of ``(seed, epoch)``) and forward the epoch."""
        self.epoch = int(epoch)
        for d in self.datasets:
            if hasattr(d, "set_epoch"):
                d.set_epoch(self.epoch)
        if self.strategy != "balance":
            return
        n = len(self.datasets)
        extra = self.total_len - n * self.per_db_len  # 0 <= extra < n
        rng = np.random.default_rng([self.seed, self.epoch, _TAG_REMAINDER])
        self._rem_db = rng.integers(0, n, size=extra).astype(np.int64)
        # position of each remainder slot inside its dataset's quota: per_db_len, per_db_len + 1, ...
        self._rem_pos = np.empty(extra, dtype=np.int64)
        seen = np.zeros(n, dtype=np.int64)
        for j, d in enumerate(self._rem_db):
            self._rem_pos[j] = self.per_db_len + seen[d]
            seen[d] += 1
        self._quota = self.per_db_len + seen
        self._perms = [FeistelPermutation.from_entropy(int(length), self.seed, self.epoch, _TAG_SUBSET, d)
                       for d, length in enumerate(self.lengths)]

    def dataset_shares(self) -> np.ndarray:
        """(n,) int64: how many of this epoch's virtual samples each dataset serves (its quota ``q_d``)."""
        if self.strategy == "concat":
            return self.lengths.copy()
        return self._quota.copy()

    # -- index mapping -------------------------------------------------------------------------------------------
    def _local(self, d: int, k: np.ndarray) -> np.ndarray:
        """Local indices in dataset ``d`` of positions ``k`` (< quota) of its quota (int64 array)."""
        length, quota = int(self.lengths[d]), int(self._quota[d])
        if length >= quota:
            return self._perms[d](k)
        full = (quota // length) * length  # complete cycles: every entry once per cycle
        out = k % length
        tail = k >= full
        if tail.any():
            out[tail] = self._perms[d](k[tail] - full)
        return out

    def mapping(self) -> tuple[np.ndarray, np.ndarray]:
        """This epoch's whole mapping: (dataset (T,), local index (T,)) int64 arrays, for tests and statistics."""
        return self.locate_many(np.arange(self.total_len, dtype=np.int64))

    def locate_many(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised :meth:`locate` for an int array of virtual indices in ``[0, T)``."""
        index = np.asarray(index, dtype=np.int64)
        if index.size and (index.min() < 0 or index.max() >= self.total_len):
            raise IndexError(f"virtual index out of range [0, {self.total_len})")
        if self.strategy == "concat":
            db = np.searchsorted(self._ends, index, side="right")
            return db, index - np.where(db > 0, self._ends[np.maximum(db - 1, 0)], 0)
        body = self.per_db_len * len(self.datasets)
        db = np.empty_like(index)
        pos = np.empty_like(index)
        inside = index < body
        db[inside], pos[inside] = np.divmod(index[inside], self.per_db_len)
        db[~inside] = self._rem_db[index[~inside] - body]
        pos[~inside] = self._rem_pos[index[~inside] - body]
        local = np.empty_like(index)
        for d in np.unique(db):
            sel = db == d
            local[sel] = self._local(int(d), pos[sel])
        return db, local

    def locate(self, i: int) -> tuple[int, int]:
        """Virtual index ``i`` (negative counts from the end) -> (dataset position, local index)."""
        i = int(i)
        if not -self.total_len <= i < self.total_len:
            raise IndexError(f"index {i} out of range for MixedDataset of length {self.total_len}")
        db, local = self.locate_many(np.array([i % self.total_len]))
        return int(db[0]), int(local[0])

    def __len__(self) -> int:
        return self.total_len

    def __getitem__(self, i: int) -> Any:
        d, k = self.locate(i)
        return self.datasets[d][k]

    def __repr__(self) -> str:
        return (f"MixedDataset(strategy={self.strategy!r}, len={self.total_len}, per_db_len={self.per_db_len}, "
                f"lengths={self.lengths.tolist()}, seed={self.seed}, epoch={self.epoch})")


# ----------------------------------------------------------------------------------------------------------------
class MixedSampler(Sampler[int]):
    """Shuffled per epoch from ``(seed, epoch)``, split across ranks like ``DistributedSampler``, resumable mid-epoch.

    The epoch's order is a keyed permutation of ``range(len(dataset))`` (nothing of that length is stored). Rank
    ``r`` of ``R`` takes positions ``r, r + R, r + 2R, ...`` of it, ``num_samples`` each: with ``drop_last`` the
    last ``len % R`` positions are dropped, otherwise the order wraps around to pad every rank to
    ``ceil(len / R)``. All ranks compute the same permutation, so their parts are disjoint and (without padding)
    cover the epoch. ``set_epoch`` is forwarded to the dataset (a :class:`MixedDataset` redraws its mapping);
    ``set_start(k)`` skips the first ``k`` indices of this rank's part (resuming a preempted epoch).

    ``num_replicas``/``rank`` default to ``torch.distributed``'s when it is initialised, else 1 / 0. Same interface
    as :class:`common.engine.trainer.ResumableSampler`.
    """

    def __init__(self, dataset: Any, num_replicas: int | None = None, rank: int | None = None, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = True) -> None:
        if num_replicas is None or rank is None:
            import torch.distributed as dist

            on = dist.is_available() and dist.is_initialized()
            num_replicas = (dist.get_world_size() if on else 1) if num_replicas is None else num_replicas
            rank = (dist.get_rank() if on else 0) if rank is None else rank
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"invalid rank {rank} for {num_replicas} replicas")
        self.dataset, self.length = dataset, len(dataset)
        self.num_replicas, self.rank = int(num_replicas), int(rank)
        self.shuffle, self.seed, self.drop_last = shuffle, int(seed), drop_last
        self.epoch, self.start = 0, 0
        self.num_samples = (self.length // self.num_replicas if drop_last
                            else math.ceil(self.length / self.num_replicas))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(self.epoch)

    def set_start(self, start: int) -> None:
        """Skip the first ``start`` indices of this rank's part of the current epoch."""
        if not 0 <= start <= self.num_samples:
            raise ValueError(f"start {start} outside [0, {self.num_samples}]")
        self.start = int(start)

    def indices(self, begin: int = 0, end: int | None = None) -> np.ndarray:
        """This rank's indices ``begin:end`` of the current epoch (int64), ignoring ``set_start``."""
        end = self.num_samples if end is None else min(end, self.num_samples)
        if self.length == 0 or begin >= end:
            return np.zeros(0, dtype=np.int64)
        pos = self.rank + self.num_replicas * np.arange(begin, end, dtype=np.int64)
        pos %= self.length  # padding (drop_last=False) wraps around to the start of the order
        if not self.shuffle:
            return pos
        perm = FeistelPermutation.from_entropy(self.length, self.seed, self.epoch, _TAG_SAMPLER)
        return perm(pos)

    def __iter__(self) -> Iterator[int]:
        for begin in range(self.start, self.num_samples, _CHUNK):
            yield from self.indices(begin, begin + _CHUNK).tolist()

    def __len__(self) -> int:
        return self.num_samples - self.start
