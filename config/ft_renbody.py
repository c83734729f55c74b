"""Fine-tuning SMPLer-X-H32 for renbody: the original's config_ft_renbody.py (see config/_grid.py)."""

from config._grid import finetune_config


def get_config():
    return finetune_config("renbody")
