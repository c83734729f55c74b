"""The original's scaling grid (S/B/L/H x 5/10/20/32 datasets) and fine-tuning configs (facts sheet section 8.2).

Each config file in this folder is a one-line call into these two functions; the H32 file holds the full dataset
list. Not a config itself (the leading underscore hides it from the config list).
"""

from common.config import Config
from config.smpler_x_h32 import HUMANDATA_32
from config.smpler_x_h32 import get_config as h32

VITPOSE = {"s": "small", "b": "base", "l": "large", "h": "huge"}
HUMANDATA_5 = ("BEDLAM", "SPEC", "GTA_Human2")
HUMANDATA_10 = (*HUMANDATA_5, "SynBody", "PoseTrack", "EgoBody_Egocentric", "PROX", "CrowdPose")
HUMANDATA_20 = (*HUMANDATA_10, "EgoBody_Kinect", "MPI_INF_3DHP", "RICH", "MuCo", "InstaVariety", "Behave", "UP3D",
                "ARCTIC")
GRID = {  # datasets -> (trainset_3d, trainset_2d, trainset_humandata, total_data_len)
    5: (("MSCOCO", "AGORA"), (), HUMANDATA_5, 750_000),
    10: (("MSCOCO", "AGORA"), (), HUMANDATA_10, 1_500_000),
    20: (("MSCOCO", "AGORA", "UBody"), ("PW3D",), HUMANDATA_20, 3_000_000),
    32: (("MSCOCO", "AGORA", "UBody"), ("PW3D", "MPII", "Human36M"), HUMANDATA_32, 4_500_000),
}
FINE_TUNE = {  # name -> (trainset_3d, trainset_humandata)
    "agora": (("AGORA",), ("GTA_Human2", "BEDLAM", "SynBody", "SPEC")),
    "3dpw": (("PW3D",), ("GTA_Human2", "EgoBody_Kinect", "InstaVariety", "HumanSC3D")),
    "arctic": (("MSCOCO",), ("ARCTIC", "BEDLAM", "EgoBody_Egocentric", "PoseTrack")),
    "egobody": (("MSCOCO",), ("EgoBody_Egocentric", "EgoBody_Kinect", "BEDLAM", "PROX")),
    "renbody": ((), ("RenBody_HiRes", "RenBody", "BEDLAM", "SynBody", "CHI3D")),
    "ubody": (("UBody", "MSCOCO"), ("EgoBody_Egocentric", "PoseTrack", "Talkshow")),
}


def grid_config(size: str, n_datasets: int) -> Config:
    """SMPLer-X-<size><n_datasets> as the original's config_smpler_x_<size><n>.py."""
    cfg = h32()
    cfg.name = f"smpler_x_{size}{n_datasets}"
    cfg.model.encoder_size = size
    cfg.paths.encoder_pretrained = f"pretrained_models/vitpose_{VITPOSE[size]}.pth"
    cfg.data.trainset_3d, cfg.data.trainset_2d, cfg.data.trainset_humandata, cfg.data.total_data_len = GRID[n_datasets]
    if n_datasets != 32:
        cfg.data.sample_interval = {**cfg.data.sample_interval, "RenBody": 10}
        cfg.train.num_workers = 4
    cfg.train.batch_size = 16 if size == "h" else 32
    if (size, n_datasets) == ("l", 5):
        cfg.train.lr = 2e-5
    return cfg


def finetune_config(name: str) -> Config:
    """The original's config_ft_<name>.py: H32 fine-tuned on a benchmark's domain (set paths.pretrained_model)."""
    cfg = grid_config("h", 32)
    cfg.name = f"ft_{name}"
    cfg.data.trainset_3d, cfg.data.trainset_humandata = FINE_TUNE[name]
    cfg.data.trainset_2d = ()
    cfg.data.total_data_len = 1_000_000
    cfg.data.sample_interval = {"Talkshow": 10, "UBody": 10}
    cfg.train.min_lr = 5e-7
    cfg.train.end_epoch = 5
    cfg.train.num_workers = 4
    cfg.paths.encoder_pretrained = ""
    cfg.paths.pretrained_model = "pretrained_models/smpler_x_h32.pth.tar"
    # the original detaches the SMPL-X joints in the 2D projection when AGORA is the only 3D set and no 2D set
    cfg.model.detach_joint_projection = cfg.data.trainset_3d == ("AGORA",)
    return cfg
