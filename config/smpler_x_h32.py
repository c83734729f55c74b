"""SMPLer-X-H32: ViT-Huge encoder trained on 32 datasets (the original config_smpler_x_h32.py).

The other sizes (smpler_x_{s,b,l}32) import this file and change the encoder and the batch size.
"""

from common.config import Config

HUMANDATA_32 = (
    "BEDLAM", "SPEC", "GTA_Human2", "SynBody", "PoseTrack", "EgoBody_Egocentric", "PROX", "CrowdPose",
    "EgoBody_Kinect", "MPI_INF_3DHP", "RICH", "MuCo", "InstaVariety", "Behave", "UP3D", "ARCTIC",
    "OCHuman", "CHI3D", "RenBody_HiRes", "MTP", "HumanSC3D", "RenBody", "FIT3D", "Talkshow", "SSP3D", "LSPET",
)
SAMPLE_INTERVAL_32 = {"BEDLAM": 5, "EgoBody_Kinect": 10, "MPI_INF_3DHP": 5, "InstaVariety": 10,
                      "RenBody_HiRes": 5, "ARCTIC": 10, "FIT3D": 10, "Talkshow": 10, "UBody": 10}


def get_config() -> Config:
    cfg = Config(name="smpler_x_h32")
    cfg.model.encoder_size = "h"
    cfg.paths.encoder_pretrained = "pretrained_models/vitpose_huge.pth"
    cfg.data.trainset_3d = ("MSCOCO", "AGORA", "UBody")
    cfg.data.trainset_2d = ("PW3D", "MPII", "Human36M")
    cfg.data.trainset_humandata = HUMANDATA_32
    cfg.data.total_data_len = 4_500_000
    cfg.data.sample_interval = dict(SAMPLE_INTERVAL_32)
    cfg.train.batch_size = 16
    cfg.train.num_workers = 2
    return cfg
