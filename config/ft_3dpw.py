"""Fine-tuning SMPLer-X-H32 for 3dpw: the original's config_ft_3dpw.py (see config/_grid.py)."""

from config._grid import finetune_config


def get_config():
    return finetune_config("3dpw")
