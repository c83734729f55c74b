"""Datasets for training and evaluation, assembled from the config: catalog -> reader (cached) -> samples.

``SampleDataset`` turns datalist entries into samples with ``data.sample.build_sample``, drawing augmentation
randomness from (seed, epoch, index) only, so results do not depend on worker processes or on where a run was
resumed. ``build_train_dataset(cfg)`` mixes the configured training sets (``data.data_strategy``).
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset, default_collate

from common.config import Config, ModelConfig
from common.engine.trainer import sample_rng
from common.errors import ConfigError

collate = default_collate


class SampleDataset(Dataset):
    """Datalist entries (``len`` / ``entry(i)``) -> ``(inputs, targets, meta_info)`` samples."""

    def __init__(self, records, train: bool, model_cfg: ModelConfig, seed: int = 0, no_aug: bool = False,
                 name: str = ""):
        self.records, self.train, self.model_cfg = records, train, model_cfg
        self.seed, self.no_aug, self.name, self.epoch = seed, no_aug, name, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int):
        from data.sample import build_sample

        return build_sample(self.records.entry(i), sample_rng(self.seed, self.epoch, i), self.train, self.model_cfg,
                            no_aug=self.no_aug)


def data_root(cfg: Config) -> Path | None:
    return Path(cfg.paths.data_root) if cfg.paths.data_root else None


def load_records(cfg: Config, name: str, split: str, train: bool, sample_interval: int | None = None,
                 builder: bool | None = None):
    """One catalog dataset's split as datalist entries, through its mapped cache: HumanData (data/cache.py) or an
    own-format loader (data/formats). The node's local rank 0 builds a missing cache while the other ranks wait
    (``data.cache_timeout``); ``builder`` overrides that choice (data/cache_sync.py)."""
    from common.nets import body_model_dir
    from data.cache import load_dataset
    from data.catalog import get_spec

    spec = get_spec(name)
    interval = sample_interval or (cfg.data.sample_interval.get(name) if train else None)
    kw = dict(data_root=data_root(cfg), sample_interval=interval, bbox_ratio=cfg.data.bbox_ratio,
              body_model_dir=body_model_dir(cfg), builder=builder, timeout=cfg.data.cache_timeout)
    if spec.loader == "own":
        from data.formats import load_own

        return load_own(name, split, **kw)
    return load_dataset(name, split, **kw)


def load_split(cfg: Config, name: str, split: str, train: bool, sample_interval: int | None = None) -> SampleDataset:
    """One catalog dataset's split as samples (:func:`load_records` wrapped in :class:`SampleDataset`)."""
    records = load_records(cfg, name, split, train, sample_interval)
    return SampleDataset(records, train, cfg.model, cfg.train.seed, cfg.data.no_aug, name)


def train_set_names(cfg: Config) -> list[str]:
    """The configured training sets, in the order they are mixed."""
    return [*cfg.data.trainset_3d, *cfg.data.trainset_2d, *cfg.data.trainset_humandata]


def build_train_dataset(cfg: Config) -> Dataset:
    """Every configured training set, mixed by ``data.data_strategy`` ('balance': ``data.total_data_len``).

    Under torchrun / srun, local rank 0 of each node builds the missing datalist caches and the other ranks wait
    for them; every process then maps the same cache files (one copy of the datalist per node)."""
    from data.mixed import MixedDataset

    names = train_set_names(cfg)
    if not names:
        raise ConfigError("no training sets: set data.trainset_humandata (and/or trainset_3d, trainset_2d)")
    parts = [load_split(cfg, name, "train", train=True) for name in names]
    total = cfg.data.total_data_len if cfg.data.data_strategy == "balance" else "auto"
    return MixedDataset(parts, strategy=cfg.data.data_strategy, total_len=total, seed=cfg.train.seed)
