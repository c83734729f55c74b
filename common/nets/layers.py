"""Layer stacks shared by the heads. The Sequential indices match the original's, so checkpoint keys match.

* conv stack: Conv2d layers, BatchNorm2d + ReLU after every layer except (optionally) the last.
* deconv stack: ConvTranspose2d(k=4, s=2, p=1, no bias), each followed by BatchNorm2d + ReLU (incl. the last by
  default); each layer doubles H and W.
* linear stack: Linear layers with ReLU between them and none after the last.
"""

from __future__ import annotations

import torch.nn as nn


def make_linear_layers(feat_dims: list[int], relu_final: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(feat_dims) - 1):
        layers.append(nn.Linear(feat_dims[i], feat_dims[i + 1]))
        if i < len(feat_dims) - 2 or relu_final:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def make_conv_layers(feat_dims: list[int], kernel: int = 3, stride: int = 1, padding: int = 1,
                     bnrelu_final: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(feat_dims) - 1):
        layers.append(nn.Conv2d(feat_dims[i], feat_dims[i + 1], kernel_size=kernel, stride=stride, padding=padding))
        if i < len(feat_dims) - 2 or bnrelu_final:
            layers += [nn.BatchNorm2d(feat_dims[i + 1]), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def make_deconv_layers(feat_dims: list[int], bnrelu_final: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(feat_dims) - 1):
        layers.append(nn.ConvTranspose2d(feat_dims[i], feat_dims[i + 1], kernel_size=4, stride=2, padding=1,
                                         output_padding=0, bias=False))
        if i < len(feat_dims) - 2 or bnrelu_final:
            layers += [nn.BatchNorm2d(feat_dims[i + 1]), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def init_head_weights(module: nn.Module) -> None:
    """The original's head initialisation (train mode): small normal weights, zero biases, unit BN."""
    for m in module.modules():
        if isinstance(m, nn.ConvTranspose2d):
            nn.init.normal_(m.weight, std=0.001)
        elif isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, std=0.001)
            nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.constant_(m.bias, 0)
