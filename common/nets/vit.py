"""ViT encoder with task tokens (ViTPose backbone layout; facts sheet section 2.1).

Input (B, 3, 256, 192) RGB in [0, 1]. A 16x16 patch embedding with **padding 2** gives a 16x12 grid of 192 patch
tokens. The positional embedding has 193 slots (ViTPose keeps a class-token slot): patches get ``pos_embed[1:]``
**plus** ``pos_embed[0]``. 31 learnable task tokens (no positional embedding) are put in front of the patches. Pre-norm
blocks, final LayerNorm on all tokens. Returns the patch tokens as an image feature map (B, C, 16, 12) and the task
tokens (B, 31, C). Parameter names equal ViTPose's / SMPLer-X's, so their checkpoints load unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from common.nets.fast_cpu import Linear


@dataclass(frozen=True)
class ViTSize:
    embed_dim: int
    depth: int
    num_heads: int
    drop_path_rate: float  # stochastic depth of the last block (linear from 0)
    vitpose_name: str  # file stem of the matching ViTPose weights in pretrained_models/


VIT_SIZES: dict[str, ViTSize] = {
    "tiny": ViTSize(64, 2, 2, 0.0, ""),  # for tests only: no pretrained weights exist
    "s": ViTSize(384, 12, 12, 0.1, "vitpose_small"),
    "b": ViTSize(768, 12, 12, 0.3, "vitpose_base"),
    "l": ViTSize(1024, 24, 16, 0.5, "vitpose_large"),
    "h": ViTSize(1280, 32, 16, 0.55, "vitpose_huge"),
}
MLP_RATIO = 4
LN_EPS = 1e-6
PATCH_SIZE = 16
PATCH_PADDING = 2


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample with probability ``p`` (training only)."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = Linear(dim, hidden)
        self.fc2 = Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # exact (erf) GELU, fused on the oneDNN path; in bf16 the 4x wide hidden activation stays bf16 between the two
        return self.fc2(self.fc1(x, activation="gelu", keep_bf16=True))


class Attention(nn.Module):
    """Multi-head self-attention through ``F.scaled_dot_product_attention`` (scale head_dim^-0.5, no dropout).

    The attention itself stays float32 at every precision: on this CPU's kernels bf16 attention was no faster
    (docs/benchmarks.md), and its softmax is where rounding hurts most."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = Linear(dim, dim * 3, bias=True)
        self.proj = Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, num_heads)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, dim * MLP_RATIO)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=PATCH_SIZE, stride=PATCH_SIZE, padding=PATCH_PADDING)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        x = self.proj(x)
        hp, wp = x.shape[2], x.shape[3]
        return x.flatten(2).transpose(1, 2), (hp, wp)


class ViT(nn.Module):
    """Task-token ViT. ``forward(img (B,3,H,W)) -> (img_feat (B,C,H/16,W/16), task_tokens (B,T,C))``."""

    def __init__(self, size: str, img_shape: tuple[int, int] = (256, 192), num_task_tokens: int = 31,
                 drop_path_rate: float | None = None, activation_checkpointing: bool = False):
        super().__init__()
        spec = VIT_SIZES[size]
        c = spec.embed_dim
        self.embed_dim = c
        self.num_task_tokens = num_task_tokens
        self.activation_checkpointing = activation_checkpointing
        # Parameters first (their registration order is the checkpoint's key order), then modules.
        self.task_tokens = nn.Parameter(torch.zeros(1, num_task_tokens, c))
        num_patches = (img_shape[0] // PATCH_SIZE) * (img_shape[1] // PATCH_SIZE)
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, c))
        self.patch_embed = PatchEmbed(c)
        dpr = spec.drop_path_rate if drop_path_rate is None else drop_path_rate
        rates = [x.item() for x in torch.linspace(0, dpr, spec.depth, device="cpu")]
        self.blocks = nn.ModuleList(Block(c, spec.num_heads, r) for r in rates)
        self.last_norm = nn.LayerNorm(c, eps=LN_EPS)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """ViTPose's initialisation: truncated normal (std 0.02) for Linear weights and both embeddings."""
        if self.task_tokens.is_meta:
            return
        nn.init.trunc_normal_(self.task_tokens, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = x.shape[0]
        x, (hp, wp) = self.patch_embed(x)
        x = x + self.pos_embed[:, 1:] + self.pos_embed[:, :1]
        x = torch.cat((self.task_tokens.expand(b, -1, -1), x), dim=1)
        for blk in self.blocks:
            if self.activation_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(blk, x, use_reentrant=False)
            else:
                x = blk(x)
        x = self.last_norm(x)
        tokens = x[:, : self.num_task_tokens]
        feat = x[:, self.num_task_tokens :].permute(0, 2, 1).reshape(b, -1, hp, wp).contiguous()
        return feat, tokens


def vit_param_count(size: str, num_task_tokens: int = 31, num_patches: int = 192) -> int:
    """Closed-form parameter count of the encoder (used to cross-check the module)."""
    s = VIT_SIZES[size]
    c = s.embed_dim
    norms, qkv, proj = 2 * (2 * c), 3 * c * c + 3 * c, c * c + c
    mlp = (c * MLP_RATIO * c + MLP_RATIO * c) + (MLP_RATIO * c * c + c)
    block = norms + qkv + proj + mlp
    patch = 3 * PATCH_SIZE * PATCH_SIZE * c + c
    return num_task_tokens * c + (num_patches + 1) * c + patch + s.depth * block + 2 * c


