"""pix2pixHD's global generator, the image-to-normal-map net of PIFuHD (front and back normals).

One ``nn.Sequential`` named ``model`` so the state_dict indices are the released ones (docs/models.md,
"PIFuHD"): reflect-pad + 7x7 conv, ``n_down`` stride-2 convs doubling the width, ``n_blocks`` residual
blocks at the bottleneck, ``n_down`` transposed convs halving it, reflect-pad + 7x7 conv to 3 channels
and tanh. Every norm is InstanceNorm2d without affine parameters or running statistics, so only the
convolutions appear in the state_dict, and every convolution keeps its bias.
"""

from __future__ import annotations

import torch
from torch import nn


def _instance(channels: int) -> nn.InstanceNorm2d:
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class ResnetBlock(nn.Module):
    """``x + [pad, conv3, norm, ReLU, pad, conv3, norm](x)`` (reflect padding), as ``conv_block``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, kernel_size=3), _instance(dim), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, kernel_size=3), _instance(dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class GlobalGenerator(nn.Module):
    """RGB [B, 3, H, W] in [-1, 1] -> [B, 3, H, W] in [-1, 1]; H and W must be multiples of 2**n_down.

    PIFuHD builds it with ``ngf=64, n_down=4, n_blocks=9`` (about 183M parameters, 1024 channels at the
    bottleneck). ``ngf`` smaller than 64 is an avatex option for CPU training: same keys, narrower
    shapes, not loadable by the official code.
    """

    def __init__(self, in_ch: int = 3, out_ch: int = 3, ngf: int = 64, n_down: int = 4,
                 n_blocks: int = 9) -> None:
        super().__init__()
        self.n_down = n_down
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_ch, ngf, kernel_size=7),
                                   _instance(ngf), nn.ReLU(True)]
        for i in range(n_down):
            w = ngf * 2 ** i
            layers += [nn.Conv2d(w, 2 * w, kernel_size=3, stride=2, padding=1), _instance(2 * w),
                       nn.ReLU(True)]
        bottleneck = ngf * 2 ** n_down
        layers += [ResnetBlock(bottleneck) for _ in range(n_blocks)]
        for i in range(n_down):
            w = ngf * 2 ** (n_down - i)
            layers += [nn.ConvTranspose2d(w, w // 2, kernel_size=3, stride=2, padding=1, output_padding=1),
                       _instance(w // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_ch, kernel_size=7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def init_pix2pixhd(net: nn.Module) -> None:
    """pix2pixHD's initialisation: conv weights normal(0, 0.02); biases keep PyTorch's default."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
