"""Comparison figures: the two sources and every method's result for one pair, side by side,
labelled, with an optional zoomed inset (the same region framed in every tile and shown enlarged
in the corner opposite it). Drawn with Pillow only; written as PNG."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mlfuse.data.io import atomic_write

INSET_COLOR = (230, 40, 40)
_BG = (255, 255, 255)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _to_rgb(pixels: np.ndarray) -> Image.Image:
    a = np.asarray(pixels)
    if a.dtype != np.uint8:  # 16-bit sources: shown on their own 8-bit scale
        a = np.rint(a.astype(np.float64) / 257.0).astype(np.uint8)
    return Image.fromarray(a).convert("RGB")


def _tile(pixels: np.ndarray | None, height: int, inset: tuple[int, int, int, int] | None,
          zoom_frac: float = 0.42) -> Image.Image:
    """One tile scaled to ``height`` (aspect kept); ``None`` (no result) is a gray placeholder."""
    if pixels is None:
        return Image.new("RGB", (height, height), (200, 200, 200))
    im = _to_rgb(pixels)
    w0, h0 = im.size
    scale = height / h0
    width = max(1, round(w0 * scale))
    resample = Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.NEAREST
    tile = im.resize((width, height), resample)
    if inset is None:
        return tile
    x, y, w, h = inset
    x, y = min(max(x, 0), w0 - 1), min(max(y, 0), h0 - 1)
    w, h = max(1, min(w, w0 - x)), max(1, min(h, h0 - y))
    draw = ImageDraw.Draw(tile)
    line = max(1, round(height / 128))
    box = (x * scale, y * scale, (x + w) * scale, (y + h) * scale)
    draw.rectangle(box, outline=INSET_COLOR, width=line)
    zw = max(1, round(width * zoom_frac))
    zh = max(1, round(zw * h / w))
    if zh > height * zoom_frac * 1.5:  # tall regions: bound the height instead
        zh = max(1, round(height * zoom_frac * 1.5))
        zw = max(1, round(zh * w / h))
    crop = im.crop((x, y, x + w, y + h)).resize((zw, zh), Image.Resampling.NEAREST)
    # the enlarged copy goes in the corner opposite the region, so it never hides it
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    px = line if cx > width / 2 else width - zw - line
    py = line if cy > height / 2 else height - zh - line
    tile.paste(crop, (px, py))
    draw.rectangle((px - line, py - line, px + zw + line - 1, py + zh + line - 1), outline=INSET_COLOR, width=line)
    return tile


def comparison_figure(panels: list[tuple[str, np.ndarray | None]], *, tile_height: int = 256,
                      inset: tuple[int, int, int, int] | None = None, columns: int | None = None,
                      title: str | None = None) -> Image.Image:
    """Lay out ``(label, pixels)`` panels in a grid (label under each tile). ``inset`` = (x, y, w, h)
    in source pixels; ``columns`` defaults to at most 5 per row."""
    if not panels:
        raise ValueError("no panels")
    tiles = [_tile(p, tile_height, inset) for _, p in panels]
    if columns is None:  # at most 5 per row, rows filled evenly
        columns = math.ceil(len(tiles) / math.ceil(len(tiles) / 5))
    cols = columns
    rows = math.ceil(len(tiles) / cols)
    font = _font(max(10, tile_height // 14))
    label_h = round(font.size * 1.6) if hasattr(font, "size") else 16
    cell_w = max(t.width for t in tiles)
    pad = max(4, tile_height // 40)
    title_h = label_h if title else 0
    size = (cols * cell_w + (cols + 1) * pad, title_h + rows * (tile_height + label_h + pad) + pad)
    fig = Image.new("RGB", size, _BG)
    draw = ImageDraw.Draw(fig)
    if title:
        draw.text((pad, pad // 2), title, fill=(0, 0, 0), font=font)
    for i, ((label, _), tile) in enumerate(zip(panels, tiles, strict=True)):
        r, c = divmod(i, cols)
        x0 = pad + c * (cell_w + pad)
        y0 = title_h + pad + r * (tile_height + label_h + pad)
        fig.paste(tile, (x0 + (cell_w - tile.width) // 2, y0))
        text = label if panels[i][1] is not None else f"{label} (no result)"
        tw = draw.textlength(text, font=font)
        draw.text((x0 + (cell_w - tw) / 2, y0 + tile_height + label_h * 0.15), text, fill=(0, 0, 0), font=font)
    return fig


def write_png(image: Image.Image, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write atomically; an all-gray figure is stored as 8-bit gray (a third of the size)."""
    a = np.asarray(image)
    if a.ndim == 3 and np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 0], a[..., 2]):
        image = image.convert("L")

    def save(fh: io.BufferedWriter) -> None:
        image.save(fh, format="PNG", optimize=True)

    return atomic_write(path, save, overwrite=overwrite)
