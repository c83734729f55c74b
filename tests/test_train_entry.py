"""Training through the real entry point on the synthetic set: it learns; 2-process gloo DDP; SLURM."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from common import paths
from tests.process_wait import wait_until
from tests.slurm_gate import require_slurm

PY = sys.executable


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory, body_model_dir):
    from data.synthetic_humandata import prepare_synthetic_dataset

    root = tmp_path_factory.mktemp("synthetic_data")
    prepare_synthetic_dataset(root, body_model_dir, n_train=16, n_test=4)
    return root


def _overrides(synthetic, body_model_dir, *extra):
    return [f"paths.data_root={synthetic}", f"paths.body_model_dir={body_model_dir}", *extra]


def _losses(log_text: str) -> list[float]:
    return [float(x) for x in re.findall(r"\| loss ([0-9.]+) \|", log_text)]


def test_synthetic_training_learns(tmp_path, synthetic, body_model_dir):
    from main import train

    run = tmp_path / "run"
    code = train.main(["--config", "smpler_x_synthetic", "--run-dir", str(run), "--no-progress",
                       *_overrides(synthetic, body_model_dir, "train.end_epoch=6")])
    assert code == 0
    losses = _losses((run / "log" / "train_logs.txt").read_text())
    assert len(losses) == 6 and losses[-1] < 0.75 * losses[0], losses
    assert sorted(p.name for p in (run / "model_dump").iterdir()) == [f"snapshot_{e}.pth.tar" for e in range(6)]
    assert (run / "config.json").is_file() and (run / "log" / "tb").is_dir()
    # the checkpoint rebuilds the model for inference by itself (config inside)
    from common.engine.predictor import load_model

    model, cfg = load_model(run / "model_dump" / "snapshot_5.pth.tar", body_model_dir=body_model_dir)
    assert cfg.name == "smpler_x_synthetic" and cfg.model.encoder_size == "tiny"

    # evaluation through main.test: the trained model's vertex error is clearly below the untrained model's
    import torch

    from common.config import config_to_dict
    from common.engine.checkpoint import network_checkpoint, save_checkpoint
    from common.nets import SMPLerX
    from main import test as test_cmd

    torch.manual_seed(cfg.train.seed)
    untrained = SMPLerX(cfg.model)
    untrained.init_weights()
    before = save_checkpoint({"network": network_checkpoint(untrained), "config": config_to_dict(cfg)},
                             tmp_path / "untrained.pth.tar")
    results = {}
    for tag, ckpt in (("before", before), ("after", run / "model_dump" / "snapshot_5.pth.tar")):
        assert test_cmd.main(["--ckpt", str(ckpt), "--testset", "Synthetic", "--output", str(tmp_path / tag),
                              "--body-model-dir", str(body_model_dir), "--vis", f"paths.data_root={synthetic}"]) == 0
        results[tag] = json.loads((tmp_path / tag / "result.json").read_text())
    assert results["after"]["num_samples"] == 4 and len(list((tmp_path / "after" / "vis").glob("*.npz"))) == 4
    b, a = results["before"]["metrics"], results["after"]["metrics"]
    assert a["mpvpe_all"] < 0.7 * b["mpvpe_all"], (b, a)


def test_two_process_gloo_ranks_end_identical(tmp_path, synthetic, body_model_dir):
    torchrun = Path(PY).with_name("torchrun")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(paths.REPO_ROOT))
    out = subprocess.run([str(torchrun), "--nproc_per_node", "2", "--master_port", "29531", "-m", "main.train",
                          "--config", "smpler_x_synthetic", "--run-dir", str(tmp_path / "ddp"), "--no-progress",
                          *_overrides(synthetic, body_model_dir, "train.end_epoch=1", "train.batch_size=2")],
                         cwd=paths.REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    sums = dict(re.findall(r"rank (\d) final weights checksum ([-0-9.e+]+)", text))
    assert set(sums) == {"0", "1"} and sums["0"] == sums["1"], text[-2000:]
    assert "distributed: torchrun, rank" in text
    assert (tmp_path / "ddp" / "model_dump" / "snapshot_0.pth.tar").is_file()


def test_slurm_train_script_runs_two_tasks(tmp_path, synthetic, body_model_dir):
    require_slurm()
    env = dict(os.environ, GRES="", CPUS_PER_TASK="1", OMP_NUM_THREADS="1", PYTHON=PY,
               SMPLERX_OUTPUT_DIR=str(tmp_path / "output"))
    job = f"pytest_{os.getpid()}"
    out = subprocess.run(["bash", "main/slurm_train.sh", job, "2", "smpler_x_synthetic", "--no-progress",
                          *_overrides(synthetic, body_model_dir, "train.end_epoch=1", "train.batch_size=2")],
                         cwd=paths.REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    assert "distributed: slurm, rank 0/2" in text
    sums = dict(re.findall(r"rank (\d) final weights checksum ([-0-9.e+]+)", text))
    assert set(sums) == {"0", "1"} and sums["0"] == sums["1"], text[-2000:]
    runs = list((tmp_path / "output").glob(f"train_{job}_*"))
    assert len(runs) == 1 and (runs[0] / "model_dump" / "snapshot_0.pth.tar").is_file()


def test_resume_auto_continues_unfinished_runs_only(tmp_path):
    from main.train import find_resume

    def run(name, snaps):
        d = tmp_path / name / "model_dump"
        d.mkdir(parents=True)
        for s in snaps:
            (d / s).write_bytes(b"x")
        return tmp_path / name

    assert find_resume(tmp_path, "job", 3) == (None, None)
    unfinished = run("train_job_20260101_000000", ["snapshot_0.pth.tar", "snapshot_last.pth.tar"])
    assert find_resume(tmp_path, "job", 3) == (unfinished, unfinished / "model_dump" / "snapshot_last.pth.tar")
    os.utime(unfinished, (1, 1))  # make the finished run below the newest
    run("train_job_20260102_000000", ["snapshot_0.pth.tar", "snapshot_1.pth.tar", "snapshot_2.pth.tar"])
    assert find_resume(tmp_path, "job", 3) == (None, None)


def _untrained_run(run_dir: Path, body_model_dir) -> Path:
    """A run folder with the tiny synthetic model's seeded initialisation as snapshot_0 (no training needed)."""
    import torch

    from common.config import config_to_dict, load_config
    from common.engine.checkpoint import network_checkpoint, save_checkpoint
    from common.nets import SMPLerX

    cfg = load_config("smpler_x_synthetic", [f"paths.body_model_dir={body_model_dir}"])
    torch.manual_seed(0)
    model = SMPLerX(cfg.model)
    model.init_weights()
    return save_checkpoint({"network": network_checkpoint(model), "config": config_to_dict(cfg)},
                           run_dir / "model_dump" / "snapshot_0.pth.tar")


def test_slurm_test_script_shards_gathers_and_keeps_going(tmp_path, synthetic, body_model_dir):
    require_slurm()
    out_root = tmp_path / "output"
    _untrained_run(out_root / "train_x", body_model_dir)
    env = dict(os.environ, GRES="", CPUS_PER_TASK="1", OMP_NUM_THREADS="1", PYTHON=PY,
               SMPLERX_OUTPUT_DIR=str(out_root), TESTSETS="Synthetic EHF")
    # the run is given by name under output/, as in the original; EHF's data is absent: reported, the rest runs
    out = subprocess.run(["bash", "main/slurm_test.sh", "pytest_eval", "2", "train_x", "0",
                          f"paths.data_root={synthetic}"], cwd=paths.REPO_ROOT, env=env, capture_output=True,
                         text=True, timeout=900)
    text = out.stdout + out.stderr
    assert out.returncode == 2, text[-3000:]
    assert "distributed: slurm, rank 0/2" in text and text.count("error: 1 of 2 test set(s) failed: EHF") == 1
    result_dir = out_root / "test_pytest_eval_ep0"
    result = json.loads((result_dir / "Synthetic" / "result.json").read_text())
    assert result["num_samples"] == 4  # both ranks' shares gathered, nothing twice
    rows = (result_dir / "Synthetic" / "per_sample.csv").read_text().splitlines()[1:]
    assert len({r.split(",")[1] for r in rows}) == 4  # four distinct images
    summary = json.loads((result_dir / "summary.json").read_text())
    assert set(summary["results"]) == {"Synthetic"} and set(summary["failed"]) == {"EHF"}
    # a wrong epoch is named before anything is submitted
    bad = subprocess.run(["bash", "main/slurm_test.sh", "pytest_eval", "1", "train_x", "7"], cwd=paths.REPO_ROOT,
                         env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "snapshot_7.pth.tar" in bad.stderr


def test_ctrl_c_writes_a_snapshot_and_resume_checks_the_settings(tmp_path, synthetic, body_model_dir):
    """Ctrl-C (SIGINT to the whole process group, data-loader workers included, as a terminal sends it) finishes the
    step, writes snapshot_last and exits 130 without a traceback; resuming with another batch size is refused naming
    the key; --allow-config-change resumes anyway."""
    import signal

    run = tmp_path / "run"
    cmd = [PY, "-m", "main.train", "--config", "smpler_x_synthetic", "--run-dir", str(run), "--no-progress",
           *_overrides(synthetic, body_model_dir, "train.end_epoch=200", "train.num_workers=2", "train.print_iters=1")]
    proc = subprocess.Popen(cmd, cwd=paths.REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    log = run / "log" / "train_logs.txt"
    wait_until(proc, lambda: log.is_file() and "iter 2/" in log.read_text(), poll=0.2)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert "snapshot_last.pth.tar" in err
    last = run / "model_dump" / "snapshot_last.pth.tar"
    assert last.is_file()
    import torch

    assert torch.load(last, weights_only=True)["iteration"] >= 2

    from main import train

    code = train.main(["--config", "smpler_x_synthetic", "--run-dir", str(run), "--resume", "auto", "--no-progress",
                       *_overrides(synthetic, body_model_dir, "train.end_epoch=200", "train.batch_size=2")])
    assert code == 2
    code = train.main(["--config", "smpler_x_synthetic", "--run-dir", str(run), "--resume", "auto", "--no-progress",
                       "--allow-config-change", *_overrides(synthetic, body_model_dir, "train.end_epoch=1")])
    assert code == 0 and (run / "model_dump" / "snapshot_0.pth.tar").is_file()


def test_resume_refuses_changed_settings_naming_them(tmp_path, capsys):
    from common.config import config_to_dict, load_config
    from common.engine.trainer import resume_differences

    cfg = load_config("smpler_x_synthetic")
    saved = config_to_dict(cfg)
    assert resume_differences(saved, cfg, 1, 1) == []
    assert resume_differences(saved, load_config("smpler_x_synthetic", ["train.num_workers=7"]), 1, 1) == []
    for override, key in (("train.batch_size=2", "train.batch_size"), ("train.end_epoch=3", "train.end_epoch"),
                          ("data.trainset_humandata=[Synthetic,EHF]", "data.trainset_humandata"),
                          ("data.sample_interval={'Synthetic': 2}", "data.sample_interval"),
                          ("train.lr=1", "train.lr")):
        diffs = resume_differences(saved, load_config("smpler_x_synthetic", [override]), 1, 1)
        assert len(diffs) == 1 and diffs[0].startswith(key + ":"), (override, diffs)
    assert resume_differences(saved, cfg, 2, 1) == ["processes (world size): 2 -> 1"]


@pytest.mark.parametrize("override", ["train.end_epoch=0", "train.end_epoch=-1", "train.batch_size=0",
                                      "train.lr=-1", "train.lr=nan", "data.sample_interval={'EHF': 0}"])
def test_impossible_training_settings_are_config_errors(override):
    from common.config import load_config
    from common.errors import ConfigError

    with pytest.raises(ConfigError, match=override.split("=")[0].replace(".", r"\.")):
        load_config("smpler_x_synthetic", [override])


def test_config_module_runs_as_a_script():
    out = subprocess.run([PY, "-m", "common.config", "smpler_x_h32", "train.lr=2e-5"], cwd=paths.REPO_ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "train.lr = 2e-05" in out.stdout and "model.encoder_size = 'h'" in out.stdout
    bad = subprocess.run([PY, "-m", "common.config", "smpler_x_h32", "train.batch_size=0"], cwd=paths.REPO_ROOT,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "train.batch_size=0 must be at least 1" in bad.stderr


@pytest.mark.parametrize("flag", ["--train-images", "--epochs"])
def test_demo_rejects_zero_sizes(tmp_path, flag):
    out = subprocess.run([PY, "-m", "main.demo", "--output", str(tmp_path / "d"), flag, "0"], cwd=paths.REPO_ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and f"{flag} 0: must be at least" in out.stderr
    assert not (tmp_path / "d").exists()
