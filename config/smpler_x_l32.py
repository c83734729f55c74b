"""SMPLer-X-L32: ViT-Large encoder, 32 training datasets (the original config_smpler_x_l32.py)."""

from common.config import Config
from config.smpler_x_h32 import get_config as h32


def get_config() -> Config:
    cfg = h32()
    cfg.name = "smpler_x_l32"
    cfg.model.encoder_size = "l"
    cfg.paths.encoder_pretrained = "pretrained_models/vitpose_large.pth"
    cfg.train.batch_size = 32
    return cfg
