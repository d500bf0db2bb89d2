"""Invertible-network (INN) detail branch of CDDFuse (common §2.6).

Affine coupling nodes after Dinh et al. ("Density estimation using Real NVP", ICLR 2017) with
MobileNetV2 inverted-residual bottlenecks as the coupling functions; CDDFuse only runs them forward.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from mlfuse.inference import streaming


class InvertedResidualBlock(nn.Module):
    """``bottleneckBlock`` Sequential: conv1x1 in->hidden nb, ReLU6, *mixer*, ReLU6, conv1x1 hidden->out nb.

    Default mixer (CDDFuse): ``ReflectionPad2d(1)`` then a depthwise 3x3 conv without padding, so the
    weight keys sit at indices 0, 3 and 5. A custom ``mixer`` (one module, e.g. SFDFuse's DEConv)
    takes indices 2 (keys at 0, 2 and 4). There is no skip connection despite the name.
    """

    def __init__(self, inp: int = 32, oup: int = 32, expand_ratio: int = 2, mixer: nn.Module | None = None) -> None:
        super().__init__()
        hidden = int(inp * expand_ratio)
        middle: list[nn.Module] = (
            [nn.ReflectionPad2d(1), nn.Conv2d(hidden, hidden, 3, groups=hidden, bias=False)]
            if mixer is None else [mixer]
        )
        self.bottleneckBlock = nn.Sequential(
            nn.Conv2d(inp, hidden, 1, bias=False),
            nn.ReLU6(inplace=True),
            *middle,
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, oup, 1, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.bottleneckBlock(x)


BottleneckFactory = Callable[[], nn.Module]


class DetailNode(nn.Module):
    """One affine coupling node on two 32-channel halves (common §2.6):

    1. ``[z1, z2] = split(shffleconv(cat(z1, z2)))`` (conv1x1 64->64 with bias, a learned shuffle);
    2. ``z2 = z2 + phi(z1)``;
    3. ``z1 = z1 * exp(rho(z2)) + eta(z2)`` with the updated z2 and an unclamped ``exp`` (CDDFuse quirk 3).

    ``bottleneck`` builds phi, rho and eta (default :class:`InvertedResidualBlock` 32->32, expansion 2).
    """

    def __init__(self, bottleneck: BottleneckFactory | None = None, channels: int = 64) -> None:
        super().__init__()
        make = bottleneck or (lambda: InvertedResidualBlock(channels // 2, channels // 2, 2))
        self.theta_phi = make()
        self.theta_rho = make()
        self.theta_eta = make()
        self.shffleconv = nn.Conv2d(channels, channels, 1, bias=True)

    def forward(self, z1: Tensor, z2: Tensor) -> tuple[Tensor, Tensor]:
        z = self.shffleconv(torch.cat((z1, z2), dim=1))
        half = z.shape[1] // 2
        z1, z2 = z[:, :half], z[:, half:]
        z2 = z2 + self.theta_phi(z1)
        z1 = z1 * torch.exp(self.theta_rho(z2)) + self.theta_eta(z2)
        return z1, z2


class DetailFeatureExtraction(nn.Module):
    """``num_layers`` :class:`DetailNode` in sequence on the two channel halves of the input, then
    concatenated again (key ``net.<i>``). ``bottleneck`` is passed to every node."""

    def __init__(self, num_layers: int = 3, bottleneck: BottleneckFactory | None = None, channels: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(*[DetailNode(bottleneck, channels) for _ in range(num_layers)])

    @streaming.block
    def forward(self, x: Tensor) -> Tensor:
        half = x.shape[1] // 2
        z1, z2 = x[:, :half], x[:, half:]
        for layer in self.net:
            z1, z2 = layer(z1, z2)
        return torch.cat((z1, z2), dim=1)
