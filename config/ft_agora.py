"""Fine-tuning SMPLer-X-H32 for agora: the original's config_ft_agora.py (see config/_grid.py)."""

from config._grid import finetune_config


def get_config():
    return finetune_config("agora")
