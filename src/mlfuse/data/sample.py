"""A synthetic infrared/visible sample pair rendered by mlfuse itself (no third-party image).

The scene is a street at dusk: a textured colour visible image (sky, brick buildings with lit and
dark windows, trees, a road with markings) in which two pedestrians and a car stand in shadow and
are hard to see, and an infrared image of the same scene in which those targets are warm and
bright while the sky is cold. A fusion method should keep the visible texture and the infrared
targets, which makes the pair a meaningful smoke test rather than a blank toy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SAMPLE_SIZE = (288, 384)  # (height, width)


def _value_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Smooth noise in [0, 1]: a coarse random grid bilinearly upsampled."""
    gh, gw = h // cell + 2, w // cell + 2
    grid = rng.random((gh, gw))
    y = np.arange(h) / cell
    x = np.arange(w) / cell
    y0, x0 = y.astype(int), x.astype(int)
    fy, fx = (y - y0)[:, None], (x - x0)[None, :]
    fy, fx = fy * fy * (3 - 2 * fy), fx * fx * (3 - 2 * fx)
    a = grid[y0][:, x0]
    b = grid[y0][:, x0 + 1]
    c = grid[y0 + 1][:, x0]
    d = grid[y0 + 1][:, x0 + 1]
    return a * (1 - fy) * (1 - fx) + b * (1 - fy) * fx + c * fy * (1 - fx) + d * fy * fx


def _ellipse(h: int, w: int, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def _person(h: int, w: int, foot_y: int, cx: int, height: int) -> np.ndarray:
    head = _ellipse(h, w, foot_y - 0.9 * height, cx, 0.08 * height, 0.07 * height)
    body = _ellipse(h, w, foot_y - 0.55 * height, cx, 0.28 * height, 0.12 * height)
    legs = np.zeros((h, w), bool)
    legs[foot_y - int(0.3 * height):foot_y, cx - int(0.1 * height):cx + int(0.1 * height)] = True
    return head | body | legs


def render_sample(seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Return (visible RGB uint8 H x W x 3, infrared gray uint8 H x W), deterministic for a seed."""
    rng = np.random.default_rng(seed)
    h, w = SAMPLE_SIZE
    yy, xx = np.mgrid[0:h, 0:w]
    horizon = int(0.45 * h)

    # visible: dusk sky gradient with clouds
    t = yy / horizon
    sky = np.stack([90 + 110 * t, 110 + 70 * t, 170 - 20 * t], -1)
    sky += 25 * (_value_noise(rng, h, w, 24)[..., None] - 0.5)
    vis = sky.copy()
    ir = 20 + 15 * _value_noise(rng, h, w, 40)  # cold sky

    # ground and road
    ground = yy >= horizon
    grass_tex = _value_noise(rng, h, w, 6)
    vis[ground] = np.stack([60 + 40 * grass_tex, 85 + 50 * grass_tex, 45 + 20 * grass_tex], -1)[ground]
    ir[ground] = (95 + 20 * grass_tex)[ground]
    road = ground & (np.abs(xx - w / 2) < (yy - horizon) * 1.4 + 20)
    asphalt = _value_noise(rng, h, w, 3)
    vis[road] = np.stack([70 + 25 * asphalt] * 3, -1)[road]
    ir[road] = (120 + 10 * asphalt)[road]
    marks = road & (np.abs(xx - w / 2) < 2 + (yy - horizon) * 0.03) & ((yy // 12) % 2 == 0)
    vis[marks] = (230, 225, 200)

    # brick buildings with windows
    for x0, x1, top in ((10, 120, 70), (130, 200, 40), (270, 370, 60)):
        bld = (xx >= x0) & (xx < x1) & (yy >= top) & (yy < horizon + 5)
        brick = ((yy // 6) % 2 == 0) ^ (((xx + 5 * ((yy // 6) % 2)) // 10) % 2 == 0)
        shade = 0.8 + 0.2 * _value_noise(rng, h, w, 4)
        vis[bld] = (np.stack([150 * shade, 80 * shade, 60 * shade], -1) * np.where(brick, 1.0, 0.85)[..., None])[bld]
        ir[bld] = 70 + 10 * shade[bld]
        for wy in range(top + 8, horizon - 8, 22):
            for wx in range(x0 + 8, x1 - 14, 20):
                win = (yy >= wy) & (yy < wy + 12) & (xx >= wx) & (xx < wx + 10)
                lit = rng.random() < 0.4
                vis[win] = (250, 220, 130) if lit else (30, 35, 50)
                ir[win] = 110 if lit else 60

    # trees: dark green crowns, cool in IR
    for cx in (230, 250):
        crown = _ellipse(h, w, horizon - 30, cx, 35, 22)
        leaves = _value_noise(rng, h, w, 3)
        vis[crown] = np.stack([30 + 30 * leaves, 70 + 60 * leaves, 30 + 20 * leaves], -1)[crown]
        ir[crown] = (55 + 15 * leaves)[crown]
        trunk = (np.abs(xx - cx) < 4) & (yy >= horizon - 5) & (yy < horizon + 25)
        vis[trunk] = (70, 50, 30)
        ir[trunk] = 80

    # warm targets in shadow: barely visible, bright in IR
    shadow = np.zeros((h, w), bool)
    for foot, cx, ht in ((int(0.92 * h), 95, 95), (int(0.80 * h), 300, 70)):
        body = _person(h, w, foot, cx, ht)
        vis[body] = (vis[body] * 0.35 + np.array([35, 30, 30]) * 0.65)
        ir[body] = 225 + 20 * _value_noise(rng, h, w, 5)[body]
        shadow |= body
    car = (np.abs(xx - 200) < 38) & (yy > int(0.62 * h)) & (yy < int(0.72 * h))
    cabin = (np.abs(xx - 196) < 22) & (yy > int(0.56 * h)) & (yy <= int(0.62 * h))
    vis[car | cabin] = (45, 45, 55)
    vis[cabin] = (60, 70, 85)
    ir[car] = 150
    ir[cabin] = 130
    engine = (np.abs(xx - 225) < 12) & (yy > int(0.63 * h)) & (yy < int(0.70 * h))
    ir[engine] = 235
    for wx in (172, 226):
        wheel = _ellipse(h, w, int(0.72 * h), wx, 7, 7)
        vis[wheel] = (20, 20, 20)
        ir[wheel] = 190

    # dusk darkening of the lower visible frame, sensor noise in both
    vis *= (1.0 - 0.35 * np.clip((yy - horizon) / (h - horizon), 0, 1))[..., None]
    vis += rng.normal(0, 3, vis.shape)
    ir = ir + rng.normal(0, 2.5, ir.shape)
    ir = _blur3(ir)  # thermal optics are softer
    return np.clip(np.rint(vis), 0, 255).astype(np.uint8), np.clip(np.rint(ir), 0, 255).astype(np.uint8)


def _blur3(img: np.ndarray) -> np.ndarray:
    p = np.pad(img, 1, mode="edge")
    k = (1, 2, 1)
    rows = sum(k[i] * p[i:i + img.shape[0], :] for i in range(3)) / 4
    return sum(k[j] * rows[:, j:j + img.shape[1]] for j in range(3)) / 4


def write_sample(folder: str | Path, *, overwrite: bool = False) -> tuple[Path, Path]:
    """Write ``vis.png`` and ``ir.png`` into ``folder`` and return their paths."""
    from mlfuse.data.io import write_image

    vis, ir = render_sample()
    folder = Path(folder)
    return (write_image(vis, folder / "vis.png", overwrite=overwrite),
            write_image(ir, folder / "ir.png", overwrite=overwrite))
