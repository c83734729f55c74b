"""The oneDNN inference path gives the plain layers' results, and follows weight changes."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from common.nets import fast_cpu
from common.nets.layers import make_deconv_layers

pytestmark = pytest.mark.skipif(not fast_cpu.is_enabled(), reason="oneDNN not available in this torch build")


@pytest.mark.parametrize("rows", [1, 7, 223, 300])
def test_linear_matches_f_linear(rows):
    torch.manual_seed(0)
    lin = fast_cpu.Linear(48, 80)
    x = torch.randn(2, rows, 48)
    with torch.no_grad():
        assert torch.allclose(lin(x), F.linear(x, lin.weight, lin.bias), atol=1e-5)
        assert torch.allclose(lin(x, activation="gelu"), F.gelu(F.linear(x, lin.weight, lin.bias)), atol=1e-5)
        assert getattr(lin, "_pack", None) is not None  # the packed path was taken


def test_linear_repacks_after_weight_change_and_keeps_autograd():
    torch.manual_seed(0)
    lin = fast_cpu.Linear(16, 8)
    x = torch.randn(5, 16)
    with torch.no_grad():
        lin(x)
        lin.weight.mul_(2)  # in-place update, as an optimizer step or load_state_dict does
        assert torch.allclose(lin(x), F.linear(x, lin.weight, lin.bias), atol=1e-5)
    y = lin(x)  # grad mode: plain path, differentiable
    y.sum().backward()
    assert lin.weight.grad is not None


@pytest.mark.parametrize("batch", [1, 3])
def test_deconv_stack_matches_the_layers(batch):
    torch.manual_seed(0)
    seq = make_deconv_layers([24, 16, 8]).eval()
    for m in seq:
        if isinstance(m, nn.BatchNorm2d):  # non-trivial statistics so the folding is exercised
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.normal_(1, 0.2)
            m.bias.data.normal_()
    x = torch.randn(batch, 24, 6, 5)
    with torch.no_grad():
        ref = seq(x)
        out = fast_cpu.deconv_stack(seq, x)
        assert out.shape == ref.shape == (batch, 8, 24, 20)
        assert torch.allclose(out, ref, atol=1e-5)
        seq[1].running_mean.add_(1.0)  # statistics changed -> the folded weights are rebuilt
        assert torch.allclose(fast_cpu.deconv_stack(seq, x), seq(x), atol=1e-5)
    seq.train()
    out_train = fast_cpu.deconv_stack(seq, x)  # training: the plain layers (batch statistics, autograd)
    assert out_train.requires_grad


def test_switch_off():
    lin = fast_cpu.Linear(4, 4)
    fast_cpu.set_enabled(False)
    try:
        with torch.no_grad():
            lin(torch.randn(2, 4))
        assert getattr(lin, "_pack", None) is None
    finally:
        fast_cpu.set_enabled(True)
