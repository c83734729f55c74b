"""Fine-tuning SMPLer-X-H32 for arctic: the original's config_ft_arctic.py (see config/_grid.py)."""

from config._grid import finetune_config


def get_config():
    return finetune_config("arctic")
