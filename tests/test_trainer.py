"""The training loop on a toy problem: schedule, learning, exact resume after preemption, non-finite guard."""

import math
import os
import signal

import pytest
import torch
import torch.nn as nn
from torch.utils.data import Dataset

from common.config import load_config
from common.engine.optim import apply_fine_tune, build_optimizer, lr_factor
from common.engine.trainer import PREEMPT_EXIT_CODE, ResumableSampler, Trainer, sample_rng
from common.errors import UserError


class ToyData(Dataset):
    """y = x @ w_true + noise drawn from the per-sample RNG (as the real augmentation does)."""

    def __init__(self, n=64, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 8, generator=g)
        self.w = torch.randn(8, 1, generator=g)
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        noise = float(sample_rng(0, self.epoch, i).normal(scale=0.01))
        return self.x[i], (self.x[i] @ self.w)[0] + noise


class ToyModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(8, 16), nn.Dropout(0.2), nn.ReLU())  # dropout: uses the torch RNG
        self.body_regressor = nn.Linear(16, 1)

    def forward(self, x):
        return self.body_regressor(self.encoder(x))[:, 0]


def mse_step(model, batch, device):
    x, y = (t.to(device) for t in batch)
    return {"mse": ((model(x) - y) ** 2).mean()}


def _cfg(**train):
    cfg = load_config("smpler_x_tiny", [f"train.{k}={v}" for k, v in {"lr": 1e-2, "min_lr": 1e-4, "end_epoch": 3,
                                                                        "batch_size": 8, "num_workers": 0,
                                                                        "print_iters": 4, **train}.items()])
    return cfg


def _trainer(tmp_path, name="run", **train):
    torch.manual_seed(0)
    return Trainer(_cfg(**train), ToyModel(), ToyData(), mse_step, tmp_path / name, tensorboard=False,
                   progress=False)


def _weights(t):
    return {k: v.clone() for k, v in t.model.state_dict().items()}


def test_cosine_schedule_per_iteration():
    assert lr_factor(0, 100, 0, 1.0, 0.0) == 1.0
    assert math.isclose(lr_factor(50, 100, 0, 1.0, 0.1), 0.55)
    assert math.isclose(lr_factor(100, 100, 0, 1.0, 0.1), 0.1)
    assert math.isclose(lr_factor(4, 100, 10, 1.0, 0.1), 0.5)  # warm-up
    # torch's CosineAnnealingLR, stepped per iteration as the original, gives the same values
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=1e-3)
    ref = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=30, eta_min=1e-5)
    for step in range(31):
        assert math.isclose(opt.param_groups[0]["lr"], 1e-3 * lr_factor(step, 30, 0, 1e-3, 1e-5), rel_tol=1e-9)
        opt.step()
        ref.step()


def test_training_learns_and_writes_the_run_folder(tmp_path):
    t = _trainer(tmp_path, lr=0.05)
    x, y = ToyData().x, ToyData()[0]
    with torch.no_grad():
        before = ((t.model(ToyData().x) - (ToyData().x @ ToyData().w)[:, 0]) ** 2).mean()
    t.fit()
    t.model.eval()
    with torch.no_grad():
        after = ((t.model(ToyData().x) - (ToyData().x @ ToyData().w)[:, 0]) ** 2).mean()
    assert after < 0.5 * before, (before, after)
    assert x.shape == (64, 8) and len(y) == 2
    run = tmp_path / "run"
    assert sorted(p.name for p in (run / "model_dump").iterdir()) == [f"snapshot_{e}.pth.tar" for e in range(3)]
    assert (run / "config.json").is_file() and (run / "git_rev.txt").is_file()
    log = (run / "log" / "train_logs.txt").read_text()
    assert "lr" in log and "mse=" in log and "img/s" in log
    ck = torch.load(run / "model_dump" / "snapshot_2.pth.tar", weights_only=True)  # plain values: safe load
    assert ck["iteration"] == 3 * 8 and {"optimizer", "scheduler", "rng", "config", "network"} <= set(ck)
    assert math.isclose(ck["scheduler"]["_last_lr"][0], 1e-4, rel_tol=1e-5)  # cosine reached min_lr
    t.close()


def test_preemption_and_exact_resume(tmp_path):
    ref = _trainer(tmp_path, "uninterrupted")
    ref.fit()
    ref.close()

    state = {"n": 0}

    def preempting_step(model, batch, device):
        state["n"] += 1
        if state["n"] == 11:  # epoch 1, batch 3: SLURM sends SIGUSR1 before the time limit
            os.kill(os.getpid(), signal.SIGUSR1)
        return mse_step(model, batch, device)

    torch.manual_seed(0)
    t = Trainer(_cfg(), ToyModel(), ToyData(), preempting_step, tmp_path / "preempted", tensorboard=False,
                progress=False)
    with pytest.raises(SystemExit) as exit_info:
        t.fit()
    assert exit_info.value.code == PREEMPT_EXIT_CODE
    t.close()
    last = tmp_path / "preempted" / "model_dump" / "snapshot_last.pth.tar"
    assert last.is_file()
    torch.manual_seed(123)  # a fresh process: different RNG, different initial weights
    resumed = Trainer(_cfg(), ToyModel(), ToyData(), mse_step, tmp_path / "preempted", tensorboard=False,
                      progress=False)
    resumed.resume(last)
    assert (resumed.state.epoch, resumed.state.batch_in_epoch) == (1, 3)
    resumed.fit()
    a, b = _weights(ref), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    resumed.close()


def test_resume_from_an_epoch_snapshot(tmp_path):
    ref = _trainer(tmp_path, "a")
    ref.fit()
    torch.manual_seed(7)
    cont = Trainer(_cfg(), ToyModel(), ToyData(), mse_step, tmp_path / "b", tensorboard=False, progress=False)
    cont.resume(tmp_path / "a" / "model_dump" / "snapshot_0.pth.tar")
    assert (cont.state.epoch, cont.state.batch_in_epoch, cont.state.iteration) == (1, 0, 8)
    cont.fit()
    a, b = _weights(ref), _weights(cont)
    assert all(torch.equal(a[k], b[k]) for k in a)
    for tr in (ref, cont):
        tr.close()


def test_nonfinite_losses_are_skipped_then_stop(tmp_path):
    calls = {"n": 0}

    def sometimes_nan(model, batch, device):
        calls["n"] += 1
        loss = mse_step(model, batch, device)
        if calls["n"] in (2, 3):
            loss["mse"] = loss["mse"] * float("nan")
        return loss

    torch.manual_seed(0)
    t = Trainer(_cfg(end_epoch=1), ToyModel(), ToyData(), sometimes_nan, tmp_path / "nan", tensorboard=False,
                progress=False)
    t.fit()
    assert t.state.skipped_steps == 2 and t.state.iteration == 8
    assert all(torch.isfinite(p).all() for p in t.model.parameters())
    t.close()

    def always_nan(model, batch, device):
        return {"mse": mse_step(model, batch, device)["mse"] * float("nan")}

    t = Trainer(_cfg(max_nonfinite_steps=3), ToyModel(), ToyData(), always_nan, tmp_path / "nan2",
                tensorboard=False, progress=False)
    before = _weights(t)
    with pytest.raises(UserError, match="3 consecutive non-finite losses"):
        t.fit()
    assert all(torch.equal(before[k], v) for k, v in t.model.state_dict().items())  # nothing was applied
    t.close()


def test_sampler_splits_ranks_and_resumes_mid_epoch():
    s0, s1 = ResumableSampler(20, 2, 0, seed=3), ResumableSampler(20, 2, 1, seed=3)
    for s in (s0, s1):
        s.set_epoch(4)
    a, b = list(s0), list(s1)
    assert len(a) == len(b) == 10 and not set(a) & set(b) and sorted(a + b) == list(range(20))
    s0.set_start(4)
    assert list(s0) == a[4:] and len(s0) == 6
    s0.set_epoch(5)
    s0.set_start(0)
    assert list(s0) != a


def test_fine_tune_freezing_and_adamw_groups():
    m = ToyModel()
    apply_fine_tune(m, "backbone")
    assert all(p.requires_grad for p in m.encoder.parameters())
    assert not any(p.requires_grad for p in m.body_regressor.parameters())
    apply_fine_tune(m, "head")
    assert not any(p.requires_grad for p in m.encoder.parameters())
    assert all(p.requires_grad for p in m.body_regressor.parameters())
    cfg = _cfg(optimizer="adamw", weight_decay=0.05).train
    apply_fine_tune(m, "")
    opt = build_optimizer(m, cfg)
    decays = {g["weight_decay"] for g in opt.param_groups}
    assert decays == {0.0, 0.05}  # biases without decay
