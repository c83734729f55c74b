"""Default locations, all in one place. Every path can be overridden from the command line or the config.

The layout follows the original SMPLer-X so that users can drop their files in the same places:

* ``common/utils/human_model_files/`` holds ``smplx/`` (and ``smpl/``) body-model files;
* ``pretrained_models/`` holds ``smpler_x_{s,b,l,h}32.pth.tar`` and ``vitpose_{small,base,large,huge}.pth``;
* ``dataset/`` holds the datasets; ``output/`` receives run folders.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BODY_MODEL_DIR = Path(os.environ.get("SMPLERX_BODY_MODEL_DIR", REPO_ROOT / "common" / "utils" / "human_model_files"))
PRETRAINED_DIR = Path(os.environ.get("SMPLERX_PRETRAINED_DIR", REPO_ROOT / "pretrained_models"))
DATASET_DIR = Path(os.environ.get("SMPLERX_DATASET_DIR", REPO_ROOT / "dataset"))
OUTPUT_DIR = Path(os.environ.get("SMPLERX_OUTPUT_DIR", REPO_ROOT / "output"))
CONFIG_DIR = REPO_ROOT / "config"

# Where users get the licence-gated files (registration required).
SMPLX_DOWNLOAD_URL = "https://smpl-x.is.tue.mpg.de/download.php"
SMPL_DOWNLOAD_URL = "https://smpl.is.tue.mpg.de/download.php"
SMPLERX_WEIGHTS_URL = "https://github.com/caizhongang/SMPLer-X#pretrained-models"
VITPOSE_WEIGHTS_URL = "https://github.com/ViTAE-Transformer/ViTPose#results-and-models"
