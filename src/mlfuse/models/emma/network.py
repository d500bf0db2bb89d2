"""EMMA (Zhao et al., "Equivariant Multi-Modality Image Fusion", CVPR 2024; authors' code
Zhaozixiang1228/MMIF-EMMA at 9983ca2): the U-Fuser and the pseudo-sensing UNet5.

Written from ``shared/specs/emma.md`` §1-2 and the shared blocks of :mod:`mlfuse.models.blocks`.

* :class:`EMMA` is the authors' ``Ufuser`` with their attribute names, so ``model/EMMA.pth`` (a plain
  state_dict, 347 tensors) loads with ``strict=True`` and a saved state_dict round-trips. Its
  ``forward(ir, vis)`` keeps the authors' **infrared-first** argument order (quirk 1);
  :meth:`EMMA.fusion_forward` takes mlfuse's explicit roles (structural = visible / MRI, functional =
  infrared / CT / PET / SPECT).
* :class:`UNet5` is the pseudo-sensing network (A_i: fused -> infrared, A_v: fused -> visible) used only
  for training; ``model/Ai.pth`` / ``model/Av.pth`` are plain UNet5 state_dicts (:func:`load_unet5`).

Sizes: the U-Fuser needs H, W multiples of 8. mlfuse reflect-pads and crops back (``task="pad"``, the
default: no seams); ``task="authors-tiles"`` reproduces ``test.py``'s four-pass tiling for sizes that are
not multiples of 32 (spec §2.3, quirk 4), for exact reproduction of the authors' outputs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlfuse.inference import streaming
from mlfuse.inference.tiling import TileSpec
from mlfuse.models.base import FusionModel
from mlfuse.models.blocks import LiteBlock

if TYPE_CHECKING:
    from mlfuse.registry import ModelCard

#: ``pad``: reflect-pad to a multiple of 8 and crop back; ``authors-tiles``: test.py's 4-pass tiling
TASKS = ("pad", "authors-tiles")
#: the U-Fuser's size factor (three stride-2 stages) and test.py's tile factor
FACTOR = 8
AUTHORS_TILE = 32


def _conv3(cin: int, cout: int, bias: bool, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=bias, padding_mode="reflect")


class ResBlock(nn.Module):
    """``conv`` = Sequential(conv3x3 +b reflect, ReLU, conv3x3 +b reflect); output = conv path + input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(_conv3(channels, channels, True), nn.ReLU(inplace=True),
                                  _conv3(channels, channels, True))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x) + x


class LocalFeature(nn.Module):
    """Two :class:`ResBlock` in sequence (key ``Extraction.<i>``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.Extraction = nn.Sequential(ResBlock(channels), ResBlock(channels))

    def forward(self, x: Tensor) -> Tensor:
        return self.Extraction(x)


class RestormerCNNBlock(nn.Module):
    """The authors' ``Restormer_CNN_block(in, out)`` (spec §1.2): ``x = embed(x)`` (conv3x3 reflect nb);
    ``FFN(cat(GlobalFeature(x), LocalFeature(x)))`` with a Lite transformer block of **8 heads whatever
    ``out`` is** (degenerate single-channel heads at out = 8, quirk 3; its ``qkv2`` zero-pads, quirk 2,
    its Mlp reflect-pads) and two residual conv blocks; ``FFN`` is conv3x3 2out->out reflect nb."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.embed = _conv3(in_dim, out_dim, False)
        self.GlobalFeature = LiteBlock(out_dim, num_heads=8, ffn_expansion_factor=1.0, mlp_padding_mode="reflect")
        self.LocalFeature = LocalFeature(out_dim)
        self.FFN = _conv3(out_dim * 2, out_dim, False)
        self.block_out_channels = out_dim  # its poisoned output in a tiled pass (mlfuse.inference.streaming)

    @streaming.block  # tiled passes keep its output: the local branch is computed once, not per pass
    def forward(self, x: Tensor) -> Tensor:
        x = self.embed(x)
        return self.FFN(torch.cat((self.GlobalFeature(x), self.LocalFeature(x)), dim=1))


def _up(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.ReLU(inplace=True))


class EMMA(FusionModel):
    """The U-Fuser (1,517,657 parameters; spec §1.3), channels [8, 16, 32, 32].

    ``forward(ir, vis)``: **infrared first**, as the authors' ``Ufuser``; H, W multiples of 8; returns
    the sigmoid output (B,1,H,W). ``task``: ``"pad"`` (default) or ``"authors-tiles"`` decides how
    :meth:`fusion_forward` handles other sizes (module docstring).

    Attribute registration order equals the authors' (their state_dict key order), so saved files
    list their keys in the same order as ``EMMA.pth``.
    """

    TASKS = TASKS

    #: exact tiling (mlfuse.inference.tiling; ``task="pad"``): receptive radius 256 at input resolution (counted 250:
    #: six 3x3 convs per block at 1/1, 1/2, 1/4 and three blocks at 1/8 resolution, the stride-2 and
    #: transposed convs; measured 249 by input gradients), tiles on the 1/8 grid; the 16 Lite channel
    #: attentions are whole-image sums, streamed in 10 passes (9 levels, then the output pass)
    _TILE_SPEC = TileSpec(
        halo=256, align=FACTOR, streaming=True,
        global_ops=("Lite channel attention: Q K^T and |q|, |k| summed over all positions of each level",),
        # benchmarks/bench_memory.py (one thread): untiled 734 B/px at 128x160 (windows are large: halo 256)
        bytes_per_pixel=1024, untiled_bytes_per_pixel=1024,
    )

    def __init__(self, task: str = "pad", channels: tuple[int, int, int, int] = (8, 16, 32, 32)) -> None:
        super().__init__()
        if task not in TASKS:
            raise ValueError(f"EMMA task '{task}': choose from {', '.join(TASKS)}")
        self.task = task
        c1, c2, c3, c4 = channels
        self.V_en_1 = RestormerCNNBlock(1, c1)
        self.V_en_2 = RestormerCNNBlock(c1, c2)
        self.V_en_3 = RestormerCNNBlock(c2, c3)
        self.V_en_4 = RestormerCNNBlock(c3, c4)
        self.I_en_1 = RestormerCNNBlock(1, c1)
        self.I_en_2 = RestormerCNNBlock(c1, c2)
        self.I_en_3 = RestormerCNNBlock(c2, c3)
        self.I_en_4 = RestormerCNNBlock(c3, c4)
        self.f_1 = RestormerCNNBlock(c1 * 2, c1)
        self.f_2 = RestormerCNNBlock(c2 * 2, c2)
        self.f_3 = RestormerCNNBlock(c3 * 2, c3)
        self.f_4 = RestormerCNNBlock(c4 * 2, c4)
        self.V_down1 = _conv3(c1, c1, False, stride=2)
        self.V_down2 = _conv3(c2, c2, False, stride=2)
        self.V_down3 = _conv3(c3, c3, False, stride=2)
        self.I_down1 = _conv3(c1, c1, False, stride=2)
        self.I_down2 = _conv3(c2, c2, False, stride=2)
        self.I_down3 = _conv3(c3, c3, False, stride=2)
        self.up4 = _up(c4, c3)
        self.up3 = _up(c3, c2)
        self.up2 = _up(c2, c1)
        self.de_1 = RestormerCNNBlock(c1 * 2, c1)
        self.de_2 = RestormerCNNBlock(c2 * 2, c2)
        self.de_3 = RestormerCNNBlock(c3 * 2, c3)
        self.de_4 = RestormerCNNBlock(c4, c4)
        self.last = nn.Sequential(_conv3(c1, 1, True), nn.Sigmoid())

    @property
    def TILE_SPEC(self) -> TileSpec | None:
        """Exact tiling for ``task="pad"``; none for ``"authors-tiles"`` (test.py's own crops)."""
        return self._TILE_SPEC if self.task == "pad" else None

    # -- the registry card, adjusted to the size mode ------------------------------------------------
    @property
    def card(self) -> ModelCard | None:
        """The registered card; with ``task="authors-tiles"`` the pipeline must not pad to 8 (test.py
        tiles instead), so the card seen through this model has size multiple 1 and minimum 32 x 32."""
        card = self.__dict__.get("_card")
        if card is not None and self.task == "authors-tiles":
            return dataclasses.replace(card, size_multiple=1, min_size=(AUTHORS_TILE, AUTHORS_TILE))
        return card

    @card.setter
    def card(self, value: ModelCard | None) -> None:
        self.__dict__["_card"] = value

    # -- forward -----------------------------------------------------------------------------------
    def forward(self, ir: Tensor, vis: Tensor) -> Tensor:
        """``Ufuser(ir, vis)`` (spec §1.3): two 4-level encoders, per-level fusion blocks on
        ``cat(i_k, v_k)`` (IR first), a decoder with skips (decoder channels first) and a sigmoid."""
        i1 = self.I_en_1(ir)
        i2 = self.I_en_2(self.I_down1(i1))
        i3 = self.I_en_3(self.I_down2(i2))
        i4 = self.I_en_4(self.I_down3(i3))
        v1 = self.V_en_1(vis)
        v2 = self.V_en_2(self.V_down1(v1))
        v3 = self.V_en_3(self.V_down2(v2))
        v4 = self.V_en_4(self.V_down3(v3))
        f1 = self.f_1(torch.cat((i1, v1), dim=1))
        f2 = self.f_2(torch.cat((i2, v2), dim=1))
        f3 = self.f_3(torch.cat((i3, v3), dim=1))
        f4 = self.f_4(torch.cat((i4, v4), dim=1))
        o = self.up4(self.de_4(f4))
        o = self.up3(self.de_3(torch.cat((o, f3), dim=1)))
        o = self.up2(self.de_2(torch.cat((o, f2), dim=1)))
        o = self.de_1(torch.cat((o, f1), dim=1))
        return self.last(o)

    def padded_forward(self, ir: Tensor, vis: Tensor, multiple: int = FACTOR) -> Tensor:
        """Any size: reflect-pad bottom/right to a multiple of ``multiple``, fuse, crop back."""
        h, w = ir.shape[-2:]
        ph, pw = -h % multiple, -w % multiple
        if not (ph or pw):
            return self(ir, vis)
        ir = F.pad(ir, (0, pw, 0, ph), mode="reflect")
        vis = F.pad(vis, (0, pw, 0, ph), mode="reflect")
        return self(ir, vis)[..., :h, :w]

    def authors_canvas(self, ir: Tensor, vis: Tensor) -> Tensor:
        """``test.py``'s float32 canvas of ``255 * Ufuser(crop)`` (spec §2.2-2.3, quirk 4).

        Single pass when H and W are multiples of 32; else up to four passes on the largest 32-multiple
        crops anchored at the four corners, each filling the part of the canvas the previous ones left.
        Inputs must be at least 32 x 32. Returns (B, 1, H, W); the caller min-maxes it globally.
        """
        h, w = ir.shape[-2:]
        if h < AUTHORS_TILE or w < AUTHORS_TILE:
            raise ValueError(f"the authors' tiling needs at least {AUTHORS_TILE}x{AUTHORS_TILE} pixels, got {w}x{h}")
        h2, w2 = h % AUTHORS_TILE, w % AUTHORS_TILE
        h1, w1 = h - h2, w - w2
        if not (h2 or w2):
            return self(ir, vis) * 255
        canvas = ir.new_zeros(ir.shape)

        def run(rows: slice, cols: slice) -> Tensor:
            return self(ir[..., rows, cols], vis[..., rows, cols]) * 255

        canvas[..., :h1, :w1] = run(slice(0, h1), slice(0, w1))
        if w2:
            canvas[..., :h1, w - w2:] = run(slice(0, h1), slice(w - w1, w))[..., w1 - w2:]
        if h2:
            canvas[..., h - h2:, :w1] = run(slice(h - h1, h), slice(0, w1))[..., h1 - h2:, :]
        if h2 and w2:
            canvas[..., h - h2:, w - w2:] = run(slice(h - h1, h), slice(w - w1, w))[..., h1 - h2:, w1 - w2:]
        return canvas

    def fusion_forward(self, structural: Tensor, functional: Tensor) -> Tensor:
        """mlfuse's roles -> ``Ufuser(ir=functional, vis=structural)``; sizes handled by ``task``."""
        if self.task == "authors-tiles":
            return self.authors_canvas(functional, structural) / 255
        return self.padded_forward(functional, structural)


# ---------------------------------------------------------------------------------------- UNet5
class ConvBlock(nn.Module):
    """``conv`` = Sequential(conv3x3 +b, BN, ReLU, conv3x3 +b, BN, ReLU), zero padding (spec §1.4)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(cin, cout, 3, 1, 1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, 1, 1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class UNet5(nn.Module):
    """The pseudo-sensing network A_i / A_v (39,397,761 parameters; spec §1.4): a 5-level UNet with
    max-pool down-sampling, transposed-conv up-sampling (upsampled channels first, skip second) and a
    sigmoid output. H, W multiples of 16. Registration order = the authors' state_dict key order."""

    def __init__(self, channels: tuple[int, ...] = (64, 128, 256, 512, 1024)) -> None:
        super().__init__()
        c1, c2, c3, c4, c5 = channels
        self.down1 = ConvBlock(1, c1)
        self.down2 = ConvBlock(c1, c2)
        self.down3 = ConvBlock(c2, c3)
        self.down4 = ConvBlock(c3, c4)
        self.down5 = ConvBlock(c4, c5)
        self.down_sample = nn.MaxPool2d(2)
        self.up_sample5 = _up(c5, c4)
        self.up4 = ConvBlock(c5, c4)
        self.up_sample4 = _up(c4, c3)
        self.up3 = ConvBlock(c4, c3)
        self.up_sample3 = _up(c3, c2)
        self.up2 = ConvBlock(c3, c2)
        self.up_sample2 = _up(c2, c1)
        self.up1 = ConvBlock(c2, c1)
        self.last = nn.Sequential(nn.Conv2d(c1, 1, 3, 1, 1), nn.Sigmoid())

    def forward(self, x: Tensor) -> Tensor:
        d1 = self.down1(x)
        d2 = self.down2(self.down_sample(d1))
        d3 = self.down3(self.down_sample(d2))
        d4 = self.down4(self.down_sample(d3))
        o = self.down5(self.down_sample(d4))
        o = self.up4(torch.cat((self.up_sample5(o), d4), dim=1))
        o = self.up3(torch.cat((self.up_sample4(o), d3), dim=1))
        o = self.up2(torch.cat((self.up_sample3(o), d2), dim=1))
        o = self.up1(torch.cat((self.up_sample2(o), d1), dim=1))
        return self.last(o)


def load_unet5(path: str | Path, device: str | torch.device = "cpu", *, frozen: bool = True) -> UNet5:
    """A pseudo-sensing network from a file (the authors' plain ``Ai.pth`` / ``Av.pth`` state_dict, or
    mlfuse's safetensors), strict, ``weights_only=True``; in eval mode and frozen by default (spec §3.2)."""
    from mlfuse.weights.checkpoint import load_into, read_checkpoint

    net = UNet5()
    load_into(net, read_checkpoint(path), path)
    net = net.to(device).eval()
    if frozen:
        net.requires_grad_(False)
    return net
