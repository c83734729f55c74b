"""CPU float32 inference through oneDNN with pre-packed weights: ``Linear`` and ``deconv_stack``.

Linear layers: on CPU the default ``F.linear`` goes through MKL's sgemm, which for the ViT's shapes (223 tokens x
384..5120 channels) reaches only about half of the machine's peak. oneDNN with the weight reordered once into its
blocked layout is 1.3x (ViT-S) to 1.6x (ViT-H, with the GELU fused into fc1) faster, with the same result up to float32
rounding (~5e-6 relative). The packed copy is made lazily on the first no-grad CPU float32 call and rebuilt
whenever the weight changes (optimizer step, ``load_state_dict``, ``.to()``): it costs one extra copy of the
weights in memory. Training, autograd, GPUs and other dtypes use ``F.linear`` unchanged.

Transposed-convolution stacks (box net, hand RoI net): each ConvTranspose2d + BatchNorm2d (eval) + ReLU
triplet runs as one oneDNN deconvolution with the BatchNorm folded into its weights and the ReLU fused, in
channels-last layout: 1.4x faster than the three separate layers for the 128x96 map.

Packed weights are derived data, never saved. Set ``SMPLERX_ONEDNN=0`` to disable both (e.g. to compare timings).

Lower precision (CPU inference, ``--precision``; :func:`common.nets.precision.set_precision` sets each module's
``compute``): ``"bf16"`` runs the products (and the fused deconvolutions) on bfloat16 copies of the weights and
inputs through oneDNN's AVX-512 BF16 kernels, accumulating in float32, and returns float32; ``"int8"`` runs a
``Linear`` as a dynamically quantised product (per-channel int8 weights, the activations quantised per call to
uint8 with their own range; fbgemm's VNNI kernels) and returns float32. Norms, additions, the heads' small
layers and the SMPL-X layer stay in float32. The master weights stay float32 and are never changed. (PyTorch marks
its quantized tensor types deprecated in favour of torchao; they are in the pinned 2.14, and only ``_int8`` uses
them.)
"""

from __future__ import annotations

import logging
import os
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

log = logging.getLogger(__name__)
_enabled = os.environ.get("SMPLERX_ONEDNN", "1") != "0" and torch.backends.mkldnn.is_available()


def set_enabled(flag: bool) -> None:
    """Switch the packed path on or off process-wide (it is on by default where oneDNN is available)."""
    global _enabled
    _enabled = bool(flag) and torch.backends.mkldnn.is_available()


def is_enabled() -> bool:
    return _enabled


PRECISIONS = ("fp32", "bf16", "int8")


def _weight_key(*tensors: torch.Tensor) -> tuple:
    """Changes when a weight is replaced or modified in place (optimizer step, load_state_dict, .to())."""
    return tuple((t.data_ptr(), t._version, tuple(t.shape)) for t in tensors)


class Linear(nn.Linear):
    """Drop-in ``nn.Linear`` (same parameters and state-dict keys) with the packed CPU inference path.

    ``compute``: 'fp32' (default; exact up to float32 rounding), 'bf16' or 'int8' (module docstring); the lower
    precisions apply to CPU no-grad float32 inputs only, anything else runs in float32."""

    compute = "fp32"

    def _use_packed(self, x: torch.Tensor) -> bool:
        return (_enabled and not torch.is_grad_enabled() and x.device.type == "cpu"
                and (x.dtype == torch.float32 or (x.dtype == torch.bfloat16 and self.compute == "bf16"))
                and self.weight.dtype == torch.float32)

    def _bf16(self, x2: torch.Tensor, activation: str, keep_bf16: bool = False) -> torch.Tensor:
        key = _weight_key(self.weight, self.bias)
        if getattr(self, "_bf16_key", None) != key:
            self._bf16_pack = torch.ops.mkldnn._reorder_linear_weight(self.weight.detach().bfloat16(), x2.shape[0])
            self._bf16_bias = self.bias.detach().bfloat16() if self.bias is not None else None
            self._bf16_key = key
        y = torch.ops.mkldnn._linear_pointwise(x2.bfloat16(), self._bf16_pack, self._bf16_bias, activation, [],
                                               "none" if activation == "gelu" else "")
        return y if keep_bf16 else y.float()

    def _int8(self, x2: torch.Tensor, activation: str) -> torch.Tensor:
        key = _weight_key(self.weight, self.bias)
        if getattr(self, "_int8_key", None) != key:
            w = self.weight.detach()
            scales = (w.abs().amax(1) / 127.0).clamp(min=1e-12).double()  # symmetric, per output channel
            with warnings.catch_warnings():  # quantized tensors are deprecated upstream; pinned torch keeps them
                warnings.simplefilter("ignore", UserWarning)
                q = torch.quantize_per_channel(w, scales, torch.zeros(len(w), dtype=torch.long), 0, torch.qint8)
            self._int8_pack = torch.ops.quantized.linear_prepack(q, self.bias.detach() if self.bias is not None
                                                                 else None)
            self._int8_key = key
        # reduce_range=False: full 8-bit activations (AVX-512 VNNI accumulates without the pairwise saturation that
        # 7-bit ranges avoid on older CPUs)
        y = torch.ops.quantized.linear_dynamic(x2, self._int8_pack, False)
        return F.gelu(y) if activation == "gelu" else y

    def _packed(self, rows: int) -> torch.Tensor:
        w = self.weight
        key = (w.data_ptr(), w._version, tuple(w.shape))
        if getattr(self, "_pack_key", None) != key:
            self._pack = torch.ops.mkldnn._reorder_linear_weight(w.detach(), rows)
            self._pack_key = key
        return self._pack

    def forward(self, x: torch.Tensor, activation: str = "none", keep_bf16: bool = False) -> torch.Tensor:
        """``activation`` 'gelu' fuses an exact GELU after the product (in both paths). ``keep_bf16``: in bf16 mode
        return the bfloat16 product (for a following bf16 ``Linear``; it accepts bf16 input) instead of float32."""
        global _enabled
        if self._use_packed(x):
            shape = x.shape
            x2 = x.reshape(-1, shape[-1]).contiguous()
            if self.compute != "fp32":
                y = self._bf16(x2, activation, keep_bf16) if self.compute == "bf16" else self._int8(x2, activation)
                return y.reshape(*shape[:-1], y.shape[-1])
            try:
                if activation == "gelu":
                    y = torch.ops.mkldnn._linear_pointwise(x2, self._packed(x2.shape[0]), self.bias, "gelu", [], "none")
                else:
                    y = torch.ops.mkldnn._linear_pointwise(x2, self._packed(x2.shape[0]), self.bias, "none", [], "")
                return y.reshape(*shape[:-1], y.shape[-1])
            except (RuntimeError, AttributeError) as err:  # an unusual build: fall back for good, once
                log.info("oneDNN packed linear unavailable (%s); using F.linear", err)
                _enabled = False
        y = F.linear(x, self.weight, self.bias)
        return F.gelu(y) if activation == "gelu" else y


def _fast_path(x: torch.Tensor) -> bool:
    return _enabled and not torch.is_grad_enabled() and x.device.type == "cpu" and x.dtype == torch.float32


def deconv_stack(seq: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """Run a ``make_deconv_layers`` stack; in eval mode on the CPU fast path as fused oneDNN deconvolutions (in
    bfloat16 when ``seq.compute == 'bf16'``, see the module docstring).

    Returns a channels-last float32 tensor on the fast path (values identical up to float32 rounding in fp32).
    """
    global _enabled
    if seq.training or not _fast_path(x):
        return seq(x)
    try:
        bf16 = getattr(seq, "compute", "fp32") in ("bf16", "int8")  # no int8 deconvolution: int8 models use bf16
        x = x.contiguous(memory_format=torch.channels_last)
        if bf16:
            x = x.bfloat16()
        for weight, bias, relu in _fused_deconvs(seq, list(x.shape), torch.bfloat16 if bf16 else torch.float32):
            x = torch.ops.mkldnn._convolution_transpose_pointwise(
                x, weight, bias, [1, 1], [0, 0], [2, 2], [1, 1], 1, "relu" if relu else "none", [], "")
        return x.float() if bf16 else x
    except (RuntimeError, AttributeError) as err:
        log.info("oneDNN fused deconvolution unavailable (%s); using the plain layers", err)
        _enabled = False
        return seq(x)


def _fused_deconvs(seq: nn.Sequential, input_shape: list[int], dtype: torch.dtype = torch.float32
                   ) -> list[tuple[torch.Tensor, torch.Tensor, bool]]:
    """(packed weight, bias, relu) per ConvTranspose2d of ``seq``, BatchNorm folded in (in float32, then cast to
    ``dtype``); cached on ``seq`` per dtype."""
    tensors = [t for m in seq for t in list(m.parameters()) + list(m.buffers())]
    # the reorder takes a shape hint; the packed weight is valid for any input shape (checked in the tests)
    key = (tuple((t.data_ptr(), t._version) for t in tensors), dtype)
    cache = getattr(seq, "_fused_cache", None)
    if cache is None or cache[0] != key:
        cache = seq._fused_cache = (key, _fold_and_pack(seq, input_shape, dtype))
    return cache[1]


def _fold_and_pack(seq: nn.Sequential, input_shape: list[int], dtype: torch.dtype
                   ) -> list[tuple[torch.Tensor, torch.Tensor, bool]]:
    layers = list(seq)
    fused, shape = [], list(input_shape)
    for i, m in enumerate(layers):
        if not isinstance(m, nn.ConvTranspose2d):
            continue
        if (m.kernel_size, m.stride, m.padding, m.output_padding, m.groups) != ((4, 4), (2, 2), (1, 1), (0, 0), 1):
            raise RuntimeError("unexpected deconvolution settings")
        w = m.weight.detach()
        b = m.bias.detach() if m.bias is not None else torch.zeros(w.shape[1], dtype=w.dtype)
        bn = layers[i + 1] if i + 1 < len(layers) and isinstance(layers[i + 1], nn.BatchNorm2d) else None
        if bn is not None:  # y = (x - mean) * gamma / sqrt(var + eps) + beta, folded per output channel
            scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
            w = w * scale[None, :, None, None]
            b = (b - bn.running_mean) * scale + bn.bias.detach()
        relu = any(isinstance(n, nn.ReLU) for n in layers[i + 1: i + 3])
        w = w.to(dtype).contiguous(memory_format=torch.channels_last)
        packed = torch.ops.mkldnn._reorder_convolution_transpose_weight(w, [1, 1], [0, 0], [2, 2], [1, 1], 1, shape)
        fused.append((packed, b.to(dtype).contiguous(), relu))
        shape = [shape[0], w.shape[1], shape[2] * 2, shape[3] * 2]
    return fused
