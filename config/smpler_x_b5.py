"""SMPLer-X-B5: the original's config_smpler_x_b5.py (see config/_grid.py)."""

from config._grid import grid_config


def get_config():
    return grid_config("b", 5)
