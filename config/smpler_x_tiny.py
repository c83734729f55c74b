"""A tiny SMPLer-X for tests and CPU demos: 2-block ViT of width 64 and narrow heads (~0.5M parameters).

Same data flow, joint sets, heat-map shapes and camera as the real sizes, so every code path is exercised; it
has no pretrained weights.
"""

from common.config import Config
from config.smpler_x_s32 import get_config as s32


def get_config() -> Config:
    cfg = s32()
    cfg.name = "smpler_x_tiny"
    cfg.model.encoder_size = "tiny"
    cfg.model.regressor_channels = 32
    cfg.model.box_net_channels = 32
    cfg.paths.encoder_pretrained = ""
    cfg.train.batch_size = 4
    cfg.train.num_workers = 0
    cfg.test.batch_size = 4
    return cfg
