"""The tiny model trained on the synthetic HumanData set on CPU (a smoke run that learns in minutes).

Prepare the data first (the demo does it): ``data.synthetic_humandata.prepare_synthetic_dataset(data_root, ...)``,
then ``python -m main.train --config smpler_x_synthetic paths.data_root=<data_root> paths.body_model_dir=<dir>``.
"""

from common.config import Config
from config.smpler_x_tiny import get_config as tiny


def get_config() -> Config:
    cfg = tiny()
    cfg.name = "smpler_x_synthetic"
    cfg.data.trainset_3d = ()
    cfg.data.trainset_2d = ()
    cfg.data.trainset_humandata = ("Synthetic",)
    cfg.data.sample_interval = {}
    cfg.data.data_strategy = "concat"
    cfg.data.testset = "Synthetic"
    cfg.train.lr = 3e-3  # measured: 3e-3 fits the synthetic clip better than 1e-3 (docs/benchmarks.md, demo)
    cfg.train.min_lr = 1e-4
    cfg.train.end_epoch = 4
    cfg.train.batch_size = 4
    cfg.train.num_workers = 0
    cfg.train.print_iters = 4
    cfg.train.syncbn = False
    return cfg
