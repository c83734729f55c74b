"""Checkpoint reading: official layout, strict loading, size detection, ViTPose encoder init, bad files."""

from collections import OrderedDict

import pytest
import torch

from common.config import Config, config_to_dict, load_config
from common.engine.checkpoint import (
    detect_encoder_size,
    load_network_weights,
    load_vitpose_encoder,
    network_checkpoint,
    network_state,
    read_checkpoint,
    save_checkpoint,
)
from common.errors import CheckpointError
from common.nets import SMPLerX


def _model(size="tiny", seed=0, **overrides):
    torch.manual_seed(seed)
    cfg = load_config("smpler_x_tiny") if size == "tiny" else Config()
    cfg.model.encoder_size = size
    for k, v in overrides.items():
        setattr(cfg.model, k, v)
    m = SMPLerX(cfg.model)
    m.init_weights()
    return m, cfg


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_official_layout_round_trip(tmp_path):
    m, cfg = _model()
    path = save_checkpoint({"epoch": 3, "network": network_checkpoint(m), "optimizer": {}}, tmp_path / "a.pth.tar")
    raw = torch.load(path, weights_only=True)
    assert all(k.startswith("module.") for k in raw["network"])
    assert not any("smplx_layer" in k for k in raw["network"])
    other, _ = _model(seed=1)
    assert not _same_weights(m, other)
    load_network_weights(other, network_state(read_checkpoint(path)))
    assert _same_weights(m, other)


def test_legacy_names_and_no_prefix_are_accepted():
    m, _ = _model()
    legacy = OrderedDict()
    for k, v in m.state_dict().items():
        k = k.replace("encoder.", "backbone.", 1) if k.startswith("encoder.") else k
        k = k.replace("body_regressor.", "body_rotation_net.").replace("hand_regressor.", "hand_rotation_net.")
        legacy[k] = v
    legacy["smplx_layer.v_template"] = torch.zeros(3)  # dropped: the body model comes from the SMPL-X files
    other, _ = _model(seed=1)
    load_network_weights(other, network_state({"network": legacy}))
    assert _same_weights(m, other)


@pytest.mark.parametrize("size", ["tiny", "s", "b", "l", "h"])
def test_size_detection(size):
    cfg = Config()
    cfg.model.encoder_size = size
    with torch.device("meta"):
        sd = SMPLerX(cfg.model).state_dict()
    assert detect_encoder_size(network_state({"network": {f"module.{k}": v for k, v in sd.items()}})) == size


def test_wrong_size_names_keys_and_hint():
    small, _ = _model("tiny")
    cfg = Config()
    cfg.model.encoder_size = "s"
    with torch.device("meta"):
        big = SMPLerX(cfg.model)
    with pytest.raises(CheckpointError) as err:
        load_network_weights(big, small.state_dict(), source="ck.pth.tar")
    msg = str(err.value)
    assert "ck.pth.tar does not fit the model" in msg and "wrong shape: encoder.task_tokens" in msg
    assert "missing: encoder.blocks.2" in msg and "size 'tiny'" in msg and "'s'" in msg


def test_missing_and_unexpected_keys_are_errors():
    m, _ = _model()
    sd = m.state_dict()
    sd.pop("face_regressor.expr_out.0.bias")
    sd["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="missing: face_regressor.expr_out.0.bias.*unexpected: extra.weight"):
        load_network_weights(m, sd)


def test_vitpose_initialises_the_encoder(tmp_path):
    m, _ = _model()
    donor, _ = _model(seed=5)
    sd = {f"backbone.{k}": v for k, v in donor.encoder.state_dict().items() if k != "task_tokens"}
    sd["keypoint_head.final_layer.weight"] = torch.zeros(17, 64, 1, 1)
    path = save_checkpoint({"state_dict": sd, "meta": {}}, tmp_path / "vitpose_tiny.pth")
    tokens = m.encoder.task_tokens.detach().clone()
    load_vitpose_encoder(m, path)
    for k, v in donor.encoder.state_dict().items():
        if k != "task_tokens":
            assert torch.equal(m.encoder.state_dict()[k], v), k
    assert torch.equal(m.encoder.task_tokens, tokens)  # ViTPose has none: they keep their init
    with pytest.raises(CheckpointError, match="ViTPose.*not a SMPLer-X"):
        network_state(read_checkpoint(path), "vitpose_tiny.pth")
    bad = save_checkpoint({"state_dict": {k: v for k, v in sd.items() if "blocks.1." not in k}}, tmp_path / "b.pth")
    with pytest.raises(CheckpointError, match="missing.*blocks.1"):
        load_vitpose_encoder(m, bad)


def test_unreadable_files(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        read_checkpoint(tmp_path / "nope.pth.tar")
    junk = tmp_path / "junk.pth.tar"
    junk.write_bytes(b"this is not a checkpoint" * 100)
    with pytest.raises(CheckpointError, match="truncated or not a PyTorch checkpoint"):
        read_checkpoint(junk)
    m, _ = _model()
    good = save_checkpoint({"network": network_checkpoint(m)}, tmp_path / "good.pth.tar")
    cut = tmp_path / "cut.pth.tar"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        read_checkpoint(cut)
    lst = save_checkpoint([1, 2], tmp_path / "list.pth")  # type: ignore[arg-type]
    with pytest.raises(CheckpointError, match="not a checkpoint dict"):
        read_checkpoint(lst)
    with pytest.raises(CheckpointError, match="no 'network' entry"):
        network_state({"optimizer": {}, "epoch": 1})


def test_atomic_save_keeps_the_old_file_on_failure(tmp_path):
    path = save_checkpoint({"a": torch.ones(2)}, tmp_path / "x.pth")

    class Boom:
        def __reduce__(self):
            raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        save_checkpoint({"a": Boom()}, path)
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.pth"]  # no temporary left behind


def test_config_saved_in_checkpoint_rebuilds_the_model(tmp_path, body_model_dir):
    from common.engine.predictor import load_model

    m, cfg = _model(upscale=2)
    cfg.paths.body_model_dir = str(body_model_dir)
    path = save_checkpoint({"network": network_checkpoint(m), "config": config_to_dict(cfg)}, tmp_path / "c.pth.tar")
    loaded, lcfg = load_model(path)
    assert lcfg.model.upscale == 2 and lcfg.model.encoder_size == "tiny"
    assert _same_weights(m, loaded) and not loaded.training
