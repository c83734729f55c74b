"""SMPLer-X-S5: the original's config_smpler_x_s5.py (see config/_grid.py)."""

from config._grid import grid_config


def get_config():
    return grid_config("s", 5)
