"""No code runs from a data file: crafted checkpoints, HumanData ``.npz`` members and body-model pickles are refused
before their payload executes, through every entry point that reads them; plain data still loads."""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from common.errors import CheckpointError, InputError, UserError
from common.utils.safe_pickle import UnsafePickleError, safe_load, safe_loads


class _Payload:
    """Unpickling this creates the file ``marker`` (what an attacker's ``os.system`` call would do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.mknod if hasattr(os, "mknod") else open, (str(self.marker),))


def _evil_checkpoint(tmp_path: Path, base: dict | None = None) -> tuple[Path, Path]:
    marker = tmp_path / "payload_ran"
    path = tmp_path / "evil.pth.tar"
    torch.save({**(base or {}), "extra": _Payload(marker)}, path)
    return path, marker


def test_safe_load_reads_plain_data_and_numpy():
    obj = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": [1, 2.5, "x", None], "c": np.float64(3),
           "d": np.array(["p", "q"], dtype=object)}
    for proto in (2, 4, pickle.HIGHEST_PROTOCOL):
        back = safe_loads(pickle.dumps(obj, protocol=proto))
        assert np.array_equal(back["a"], obj["a"]) and back["a"].dtype == np.float32
        assert back["b"] == obj["b"] and back["c"] == 3 and list(back["d"]) == ["p", "q"]


def test_safe_load_refuses_code(tmp_path):
    marker = tmp_path / "ran"
    data = pickle.dumps({"ok": 1, "x": _Payload(marker)}, protocol=2)
    with pytest.raises(UnsafePickleError, match="posix.mknod|builtins.open"):
        safe_loads(data)
    assert not marker.exists()
    # an object array whose element is a payload goes through the same restricted unpickler
    arr = np.empty(1, dtype=object)
    arr[0] = _Payload(marker)
    with pytest.raises(UnsafePickleError):
        safe_loads(pickle.dumps(arr, protocol=2))
    assert not marker.exists()


def test_safe_load_optional_families():
    import scipy.sparse as sp

    m = sp.csc_matrix(np.eye(3, dtype=np.float64))
    with pytest.raises(UnsafePickleError, match="scipy.sparse"):
        safe_loads(pickle.dumps(m, protocol=2))
    assert np.array_equal(safe_loads(pickle.dumps(m, protocol=2), sparse=True).toarray(), np.eye(3))
    t = {"global_orient": torch.arange(3.0)}
    with pytest.raises(UnsafePickleError, match="torch"):
        safe_loads(pickle.dumps(t, protocol=2))
    assert torch.equal(safe_loads(pickle.dumps(t, protocol=2), torch_tensors=True)["global_orient"], t["global_orient"])


def test_crafted_checkpoint_is_refused_naming_the_global(tmp_path):
    from common.engine.checkpoint import read_checkpoint

    path, marker = _evil_checkpoint(tmp_path, {"network": {"module.x": torch.ones(1)}})
    with pytest.raises(CheckpointError, match="refusing to load checkpoint.*mknod|refusing.*open") as err:
        read_checkpoint(path)
    assert "could run code" in str(err.value)
    assert not marker.exists()


def test_checkpoint_with_numpy_values_still_loads(tmp_path):
    from common.engine.checkpoint import read_checkpoint

    path = tmp_path / "np.pth.tar"
    torch.save({"network": {"module.a": torch.ones(2)}, "rng": np.random.get_state(), "meta": {"x": np.float32(1)}},
               path)
    ck = read_checkpoint(path)
    assert ck["meta"]["x"] == 1 and isinstance(ck["rng"][1], np.ndarray)


def test_zero_byte_checkpoint_is_a_clear_error(tmp_path):
    from common.engine.checkpoint import read_checkpoint

    empty = tmp_path / "empty.pth.tar"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        read_checkpoint(empty)
    blank = tmp_path / "blank.pth.tar"
    blank.write_bytes(b"\n")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        read_checkpoint(blank)


def test_crafted_checkpoint_through_entry_points(tmp_path, body_model_dir, tiny_checkpoint):
    """--ckpt (inference, test) and paths.pretrained_model (training) refuse it before the payload runs."""
    from main import inference
    from main import test as main_test

    base = torch.load(tiny_checkpoint, weights_only=True)
    path, marker = _evil_checkpoint(tmp_path, base)
    img = tmp_path / "img.png"
    import cv2

    cv2.imwrite(str(img), np.full((64, 48, 3), 128, np.uint8))
    code = inference.main(["--ckpt", str(path), "--input", str(img), "--output", str(tmp_path / "out"),
                           "--body-model-dir", str(body_model_dir)])
    assert code == 2 and not marker.exists()
    assert not (tmp_path / "out").exists()
    code = main_test.main(["--ckpt", str(path), "--testset", "EHF", "--body-model-dir", str(body_model_dir),
                           "--output", str(tmp_path / "t")])
    assert code == 2 and not marker.exists()

    from common.config import load_config
    from main.steps import build_training_model

    cfg = load_config("smpler_x_tiny", [f"paths.pretrained_model={path}", f"paths.body_model_dir={body_model_dir}"])
    with pytest.raises(CheckpointError, match="refusing"):
        build_training_model(cfg, torch.device("cpu"))
    assert not marker.exists()


def test_crafted_resume_checkpoint_is_refused(tmp_path):
    from main import train

    path, marker = _evil_checkpoint(tmp_path, {"network": {}, "optimizer": {}, "scheduler": {}, "epoch": 0,
                                               "iteration": 0})
    with pytest.raises((CheckpointError, SystemExit)):
        rc = train.main(["--config", "smpler_x_tiny", "--resume", str(path), "--run-dir", str(tmp_path / "run")])
        assert rc == 2
        raise SystemExit(rc)
    assert not marker.exists()


def _humandata_with_payload(tmp_path: Path, marker: Path) -> Path:
    """A HumanData-layout .npz whose dict member ``meta`` carries a payload (numpy stores dicts as pickles)."""
    from data.synthetic_humandata import write_synthetic_humandata  # noqa: F401 - layout reference

    path = tmp_path / "crafted.npz"
    arrays = {"image_path": np.array(["a.jpg"]), "bbox_xywh": np.zeros((1, 5), np.float32),
              "__keypoints_compressed__": np.array(False), "keypoints2d": np.zeros((1, 190, 3), np.float32),
              "keypoints2d_mask": np.ones(190, np.float32)}
    meta = np.empty((), dtype=object)
    meta[()] = {"height": [10], "width": [10], "x": _Payload(marker)}
    with zipfile.ZipFile(path, "w") as zf:
        for k, v in arrays.items():
            with zf.open(f"{k}.npy", "w") as f:
                np.lib.format.write_array(f, v)
        with zf.open("meta.npy", "w") as f:
            np.lib.format.write_array(f, meta, allow_pickle=True)
    return path


def test_humandata_object_member_is_read_without_running_code(tmp_path):
    from data.npz_reader import NpzReader

    marker = tmp_path / "ran"
    path = _humandata_with_payload(tmp_path, marker)
    with NpzReader(path) as npz, pytest.raises(InputError, match="meta.*refusing"):
        npz.read("meta")
    assert not marker.exists()
    # a plain dict member reads as before
    good = tmp_path / "good.npz"
    np.savez(good, meta=np.array({"height": [3], "width": [4]}, dtype=object))
    with NpzReader(good) as npz:
        assert npz.read("meta").item() == {"height": [3], "width": [4]}


def test_humandata_tool_validate_on_crafted_file(tmp_path, capsys):
    from main import humandata_tool

    marker = tmp_path / "ran"
    path = _humandata_with_payload(tmp_path, marker)
    code = humandata_tool.main(["validate", str(path)])
    assert code != 0 and not marker.exists()
    assert "refusing" in capsys.readouterr().err


def test_body_model_pickles_are_read_safely(tmp_path, body_model_dir):
    import shutil

    from common.body_model.smplx_model import _load_eval_assets, load_eval_assets

    bad = tmp_path / "bm"
    shutil.copytree(body_model_dir, bad)
    marker = tmp_path / "ran"
    with open(bad / "smplx" / "SMPLX_to_J14.pkl", "wb") as f:
        pickle.dump(_Payload(marker), f, protocol=2)
    _load_eval_assets.cache_clear()
    with pytest.raises(UserError, match="SMPLX_to_J14.pkl.*refusing"):
        load_eval_assets(bad)
    assert not marker.exists()
    assert load_eval_assets(body_model_dir).j14_regressor.shape == (14, 10475)


def test_smpl_pickle_is_read_safely(tmp_path, body_model_dir):
    import shutil

    from data.formats.pw3d import SMPLMeshes

    bad = tmp_path / "bm"
    shutil.copytree(body_model_dir, bad)
    marker = tmp_path / "ran"
    with open(bad / "smpl" / "SMPL_MALE.pkl", "wb") as f:
        pickle.dump({"v_template": _Payload(marker)}, f, protocol=2)
    with pytest.raises(UserError, match="SMPL_MALE.pkl.*refusing"):
        SMPLMeshes(bad)
    assert not marker.exists()
    assert SMPLMeshes(body_model_dir).j_regressor.shape == (24, 6890)


def test_safe_load_from_file_object(tmp_path):
    p = tmp_path / "x.pkl"
    p.write_bytes(pickle.dumps({"k": np.ones(2)}, protocol=2))
    with open(p, "rb") as f:
        assert np.array_equal(safe_load(f)["k"], np.ones(2))
    with pytest.raises(EOFError):
        safe_load(io.BytesIO(b""))
