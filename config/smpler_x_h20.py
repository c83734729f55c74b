"""SMPLer-X-H20: the original's config_smpler_x_h20.py (see config/_grid.py)."""

from config._grid import grid_config


def get_config():
    return grid_config("h", 20)
