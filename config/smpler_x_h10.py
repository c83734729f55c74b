"""SMPLer-X-H10: the original's config_smpler_x_h10.py (see config/_grid.py)."""

from config._grid import grid_config


def get_config():
    return grid_config("h", 10)
