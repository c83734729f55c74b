"""Config files, overrides, validation and the saved-config round trip."""

import json

import pytest

from common.config import Config, config_from_dict, config_to_dict, load_config, resolve_config_path
from common.errors import ConfigError


@pytest.mark.parametrize("name,size,batch", [("smpler_x_s32", "s", 32), ("smpler_x_b32", "b", 32),
                                             ("smpler_x_l32", "l", 32), ("smpler_x_h32", "h", 16),
                                             ("smpler_x_tiny", "tiny", 4)])
def test_shipped_configs(name, size, batch):
    cfg = load_config(name)
    assert cfg.name == name and cfg.model.encoder_size == size and cfg.train.batch_size == batch
    if size != "tiny":
        assert len(cfg.data.trainset_humandata) == 26 and cfg.data.total_data_len == 4_500_000


def test_original_file_names_resolve():
    assert resolve_config_path("config_smpler_x_h32.py") == resolve_config_path("smpler_x_h32")
    assert load_config("config_smpler_x_b32.py").model.encoder_size == "b"


def test_overrides_are_typed():
    cfg = load_config("smpler_x_s32", ["train.lr=3e-4", "train.end_epoch=2", "model.detach_joint_projection=true",
                                       "data.trainset_3d=AGORA,MPII", "model.focal=(1000, 1000)",
                                       "data.sample_interval={'BEDLAM': 3}", "name=10"])
    assert cfg.train.lr == 3e-4 and isinstance(cfg.train.end_epoch, int) and cfg.train.end_epoch == 2
    assert cfg.model.detach_joint_projection is True
    assert cfg.data.trainset_3d == ("AGORA", "MPII")
    assert cfg.model.focal == (1000.0, 1000.0)
    assert cfg.data.sample_interval == {"BEDLAM": 3}
    assert cfg.name == "10"  # a string field keeps strings


@pytest.mark.parametrize("override,message", [
    ("train.lrr=1", "unknown config key 'train.lrr'. Did you mean train.lr"),
    ("train.lr=fast", "expected a number"),
    ("train.end_epoch=1.5", "expected an integer"),
    ("model.upscale=3", "must be 1, 2, 4 or 8"),
    ("model.encoder_size=xl", "is not one of"),
    ("model=1", "is a section"),
    ("model.focal=(1,2,3)", "expected 2 values"),
    ("lr", "not of the form"),
])
def test_bad_overrides(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        load_config("smpler_x_s32", [override])


def test_unknown_config_name_lists_available():
    with pytest.raises(ConfigError, match="smpler_x_s32"):
        load_config("smpler_x_s31")


def test_user_config_file(tmp_path):
    f = tmp_path / "mine.py"
    f.write_text("from config.smpler_x_b32 import get_config as parent\n\n"
                 "def get_config():\n    cfg = parent()\n    cfg.name = 'mine'\n"
                 "    cfg.train.lr = 2e-5\n    return cfg\n")
    cfg = load_config(f)
    assert cfg.name == "mine" and cfg.model.encoder_size == "b" and cfg.train.lr == 2e-5
    bad = tmp_path / "bad.py"
    bad.write_text("def get_config():\n    return 1\n")
    with pytest.raises(ConfigError, match="expected common.config.Config"):
        load_config(bad)


def test_round_trip_through_json(caplog):
    cfg = load_config("smpler_x_h32", ["model.upscale=2"])
    d = json.loads(json.dumps(config_to_dict(cfg)))
    assert config_from_dict(d) == cfg
    d["model"]["some_future_key"] = 1
    assert config_from_dict(d) == cfg  # ignored with a warning
    assert "some_future_key" in caplog.text
    assert config_from_dict({}) == Config()


@pytest.mark.parametrize("size", ["s", "b", "l", "h"])
@pytest.mark.parametrize("n,total,n_sets", [(5, 750_000, 5), (10, 1_500_000, 10), (20, 3_000_000, 20),
                                            (32, 4_500_000, 32)])
def test_scaling_grid(size, n, total, n_sets):
    cfg = load_config(f"config_smpler_x_{size}{n}.py")
    d = cfg.data
    assert cfg.model.encoder_size == size and d.total_data_len == total
    assert len(d.trainset_3d) + len(d.trainset_2d) + len(d.trainset_humandata) == n_sets
    assert cfg.train.batch_size == (16 if size == "h" else 32)
    assert cfg.train.lr == (2e-5 if (size, n) == ("l", 5) else 1e-5)
    assert d.sample_interval.get("RenBody", 1) == (1 if n == 32 else 10)


@pytest.mark.parametrize("name", ["agora", "3dpw", "arctic", "egobody", "renbody", "ubody"])
def test_fine_tune_configs(name):
    cfg = load_config(f"config_ft_{name}.py")
    assert cfg.model.encoder_size == "h" and cfg.train.end_epoch == 5 and cfg.train.min_lr == 5e-7
    assert cfg.data.total_data_len == 1_000_000 and cfg.paths.pretrained_model
    assert cfg.model.detach_joint_projection == (name == "agora")
