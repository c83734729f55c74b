"""Inference precision of a SMPLer-X model: ``fp32`` (default, exact), ``bf16`` or ``int8`` (faster, measured
deviations in docs/benchmarks.md; ``--precision`` of main.inference, main.video_inference and main.test).

On the CPU (through oneDNN / fbgemm, :mod:`common.nets.fast_cpu`):

* ``bf16``: the ViT's linear layers and the box / hand-RoI networks' transposed convolutions run in bfloat16
  (AVX-512 BF16 where the CPU has it), accumulating in float32; attention, norms, residual additions, the heads'
  regressors and the SMPL-X layer stay float32 (cheap, or no faster in bf16 on this CPU, and the rotations and the
  camera are where rounding would show).
* ``int8``: as ``bf16``, with the ViT's ``qkv`` and ``fc1`` products dynamically quantised instead (int8 weights
  per output channel, activations quantised per call; AVX-512 VNNI); ``proj`` and ``fc2``, whose inputs span the
  widest ranges, stay bf16. There is no int8 transposed convolution: those stay bf16.

On CUDA ``bf16`` is autocast around the forward (the GPU's own bf16 path); ``int8`` is CPU-only. The master weights
stay float32, so a model can switch back to ``fp32`` at any time.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from common.errors import InputError
from common.nets import fast_cpu

PRECISIONS = fast_cpu.PRECISIONS
INT8_KEEP_BF16 = ("attn.proj", "mlp.fc2")  # ViT linear layers that stay bf16 in int8 mode


def set_precision(model: nn.Module, precision: str) -> nn.Module:
    """Switch ``model`` (a :class:`~common.nets.smpler_x.SMPLerX`, on its inference device) to ``precision``."""
    if precision not in PRECISIONS:
        raise InputError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    device = next(model.parameters()).device
    if precision == "int8" and device.type != "cpu":
        raise InputError("--precision int8 runs on the CPU only (fbgemm); use --precision bf16 on a GPU")
    if precision == "int8" and "fbgemm" not in torch.backends.quantized.supported_engines:
        raise InputError("--precision int8 needs PyTorch's fbgemm engine, which this build lacks; use bf16")
    if precision != "fp32" and device.type == "cpu" and not fast_cpu.is_enabled():
        raise InputError(f"--precision {precision} on the CPU runs through oneDNN, which is off (SMPLERX_ONEDNN=0 or a "
                         "build without it); unset SMPLERX_ONEDNN or use --precision fp32")
    cpu_mode = precision if device.type == "cpu" else "fp32"
    for name, m in model.encoder.named_modules():
        if isinstance(m, fast_cpu.Linear):
            # int8: the products whose inputs span the widest ranges (the attention's output into proj, the GELU's
            # into fc2) stay bf16: with per-call activation scales they carried most of the error (docs/benchmarks.md)
            m.compute = "bf16" if cpu_mode == "int8" and name.endswith(INT8_KEEP_BF16) else cpu_mode
    for name in ("box_net", "hand_roi_net"):
        deconv = getattr(getattr(model, name), "deconv", None)
        if isinstance(deconv, nn.Sequential):
            deconv.compute = "bf16" if cpu_mode != "fp32" else "fp32"
    model.autocast_dtype = torch.bfloat16 if (precision == "bf16" and device.type == "cuda") else None
    model.precision = precision
    return model
