"""SMPLer-X-S32: ViT-Small encoder, 32 training datasets (the original config_smpler_x_s32.py)."""

from common.config import Config
from config.smpler_x_h32 import get_config as h32


def get_config() -> Config:
    cfg = h32()
    cfg.name = "smpler_x_s32"
    cfg.model.encoder_size = "s"
    cfg.paths.encoder_pretrained = "pretrained_models/vitpose_small.pth"
    cfg.train.batch_size = 32
    return cfg
