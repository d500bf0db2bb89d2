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


# --------------------------------------------------------------------------- labelled scenes
#
# Street scenes with per-pixel classes and boxes, for the downstream (segmentation/detection) protocol.
# The two modalities are made complementary on purpose, as in MSRS/M3FD: people are warm (bright in
# infrared) but often stand in shadow or at night (nearly invisible in the visible image); parked cars
# and bicycles are colourful in the visible image but at the temperature of the road (faint in
# infrared). A task network trained on either modality alone misses part of the targets; a fused
# image that keeps both should do better than the weaker modality.

#: segmentation classes of the scenes (MSRS's indices for the classes they share)
SCENE_SEG_CLASSES = ("unlabelled", "car", "person", "bike")
#: detection classes of the scenes (the MSRS detection labels' order)
SCENE_DET_CLASSES = ("person", "bicycle", "car")
SCENE_SIZE = (128, 160)  # (height, width)
_SEG_INDEX = {"car": 1, "person": 2, "bike": 3}
_DET_INDEX = {"person": 0, "bike": 1, "car": 2}


def _disk(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, r: float) -> np.ndarray:
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _segment(yy: np.ndarray, xx: np.ndarray, p: tuple[float, float], q: tuple[float, float],
             width: float) -> np.ndarray:
    """Pixels within ``width / 2`` of the segment p-q (points as (y, x))."""
    py, px = p
    dy, dx = q[0] - py, q[1] - px
    t = np.clip(((yy - py) * dy + (xx - px) * dx) / max(dy * dy + dx * dx, 1e-9), 0, 1)
    return (yy - py - t * dy) ** 2 + (xx - px - t * dx) ** 2 <= (width / 2) ** 2


def _car_shape(yy: np.ndarray, xx: np.ndarray, foot: int, cx: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """(whole car, cabin) masks of a side-view car whose wheels touch row ``foot``."""
    hb = length * 0.28
    body = (np.abs(xx - cx) < length / 2) & (yy > foot - hb - length * 0.06) & (yy <= foot - length * 0.06)
    cabin = (np.abs(xx - cx + length * 0.04) < length * 0.3) & (yy > foot - hb - length * 0.24) & (
        yy <= foot - hb - length * 0.06)
    r = length * 0.1
    wheels = _disk(yy, xx, foot - r, cx - length * 0.3, r) | _disk(yy, xx, foot - r, cx + length * 0.3, r)
    return body | cabin | wheels, cabin


def _bike_shape(yy: np.ndarray, xx: np.ndarray, foot: int, cx: int, length: int) -> np.ndarray:
    r = length * 0.22
    back, front = (foot - r, cx - length * 0.28), (foot - r, cx + length * 0.28)
    rings = np.zeros(yy.shape, bool)
    for cy_, cx_ in (back, front):
        d = np.sqrt((yy - cy_) ** 2 + (xx - cx_) ** 2)
        rings |= np.abs(d - r) <= max(1.5, length * 0.07)
    seat, bar = (foot - 2.1 * r, cx - length * 0.1), (foot - 2.3 * r, cx + length * 0.2)
    w = max(2.0, length * 0.1)
    frame = (_segment(yy, xx, back, seat, w) | _segment(yy, xx, seat, (foot - r, cx), w)
             | _segment(yy, xx, (foot - r, cx), front, w) | _segment(yy, xx, seat, bar, w)
             | _segment(yy, xx, bar, front, w))
    return rings | frame


def _box(mask: np.ndarray) -> tuple[float, float, float, float]:
    """Tight corner box (x0, y0, x1, y1) of a mask, continuous coordinates (pixel i spans [i, i+1])."""
    ys, xs = np.nonzero(mask)
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def render_scene(seed: int, size: tuple[int, int] = SCENE_SIZE) -> dict:
    """One labelled street scene, deterministic for ``seed``.

    Returns a dict: ``vis`` (H x W x 3 uint8), ``ir`` (H x W uint8), ``mask`` (H x W uint8, classes
    of :data:`SCENE_SEG_CLASSES`), ``boxes`` (list of (class of :data:`SCENE_DET_CLASSES`, x0, y0,
    x1, y1) in pixels) and ``night`` (bool)."""
    rng = np.random.default_rng([2026, seed])
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    horizon = int(h * rng.uniform(0.3, 0.42))
    night = bool(rng.random() < 0.4)

    t = yy / max(horizon, 1)
    vis = np.stack([90 + 110 * t, 110 + 70 * t, 170 - 20 * t], -1)
    vis += 25 * (_value_noise(rng, h, w, 16)[..., None] - 0.5)
    ir = 25 + 15 * _value_noise(rng, h, w, 24)
    ground = yy >= horizon
    road_tex = _value_noise(rng, h, w, 3)
    grass = ground & (np.abs(xx - w / 2) > (yy - horizon) * 1.6 + 25)
    vis[ground] = np.stack([85 + 30 * road_tex] * 3, -1)[ground]
    vis[grass] = np.stack([60 + 40 * road_tex, 90 + 50 * road_tex, 45 + 20 * road_tex], -1)[grass]
    ir_road = 120 + 14 * road_tex
    ir[ground] = ir_road[ground]
    ir[grass] = (100 + 14 * road_tex)[grass]
    # buildings on the horizon: texture in both modalities, no label
    x = 0
    while x < w:
        bw = int(rng.integers(w // 8, w // 4))
        top = int(rng.integers(max(2, horizon // 4), max(3, horizon - 4)))
        bld = (xx >= x) & (xx < x + bw) & (yy >= top) & (yy < horizon)
        tone = rng.uniform(0.5, 1.0)
        vis[bld] = np.array([150, 90, 70]) * tone
        ir[bld] = 60 + 30 * tone
        for wy in range(top + 3, horizon - 4, 8):
            for wx in range(x + 3, x + bw - 4, 7):
                win = (yy >= wy) & (yy < wy + 4) & (xx >= wx) & (xx < wx + 3)
                lit = rng.random() < 0.4
                vis[win] = (250, 220, 130) if lit else (30, 35, 50)
                ir[win] = 105 if lit else 55
        x += bw + int(rng.integers(2, 10))

    mask = np.zeros((h, w), np.uint8)
    instance = np.zeros((h, w), np.int32)  # which object each pixel shows (0: none)
    n_obj = int(rng.integers(2, 6))
    kinds = rng.choice(["person", "car", "bike"], size=n_obj, p=[0.45, 0.3, 0.25])
    objects = []
    for kind in kinds:
        foot = int(rng.integers(horizon + (h - horizon) // 5, h - 2))
        depth = (foot - horizon) / (h - horizon)  # 0 at the horizon, 1 at the bottom: nearer is larger
        scale = 0.45 + 0.75 * depth
        cx = int(rng.integers(w // 10, w - w // 10))
        objects.append((foot, kind, cx, scale))
    for k, (foot, kind, cx, scale) in enumerate(sorted(objects), 1):  # far to near: nearer ones occlude
        if kind == "person":
            height = int(h * 0.42 * scale)
            shape = _person(h, w, foot, cx, height)
            in_shadow = night or rng.random() < 0.55
            cloth = rng.uniform(30, 230, 3)
            # in shadow: a shade darker than what stands behind, hard to tell apart in the visible image
            vis[shape] = vis[shape] * 0.8 if in_shadow else cloth
            ir[shape] = 215 + 25 * _value_noise(rng, h, w, 4)[shape]  # always warm
        elif kind == "car":
            length = int(w * 0.32 * scale)
            shape, cabin = _car_shape(yy, xx, foot, cx, length)
            paint = np.array([(200, 30, 30), (30, 60, 200), (230, 200, 40), (235, 235, 235), (30, 160, 70)][
                rng.integers(0, 5)], float)
            vis[shape] = paint
            vis[cabin] = (60, 70, 85)
            running = rng.random() < 0.35
            if running:  # a warm engine and tyres
                ir[shape] = 165
                ir[cabin] = 140
            else:  # parked: the road's temperature, a faint outline only
                ir[shape] = ir_road[shape] + rng.uniform(-6, 6)
        else:
            length = int(w * 0.26 * scale)
            shape = _bike_shape(yy, xx, foot, cx, length)
            vis[shape] = np.array([(20, 20, 20), (200, 40, 40), (40, 80, 220)][rng.integers(0, 3)], float)
            ir[shape] = ir_road[shape] - 8  # cool metal, close to the road
        mask[shape] = _SEG_INDEX[kind]
        instance[shape] = k
    # a box spans what stays visible of its object; objects hidden down to a few pixels get none
    boxes = [(_DET_INDEX[kind], *_box(instance == k))
             for k, (_f, kind, _c, _s) in enumerate(sorted(objects), 1) if (instance == k).sum() >= 12]

    if night:
        vis *= 0.25
    vis *= (1.0 - 0.3 * np.clip((yy - horizon) / (h - horizon), 0, 1))[..., None]
    vis += rng.normal(0, 6 if night else 3, vis.shape)
    ir = _blur3(ir + rng.normal(0, 2.5, ir.shape))
    return {"vis": np.clip(np.rint(vis), 0, 255).astype(np.uint8),
            "ir": np.clip(np.rint(ir), 0, 255).astype(np.uint8),
            "mask": mask, "boxes": boxes, "night": night}


def write_scenes(folder: str | Path, count: int = 64, *, test_fraction: float = 0.25,
                 size: tuple[int, int] = SCENE_SIZE, overwrite: bool = False) -> Path:
    """Write ``count`` labelled scenes in the MSRS layout: ``{train,test}/{vi,ir,Segmentation_labels}``
    PNGs, ``{train,test}/labels/*.txt`` (YOLO ``class cx cy w h``), ``classes.txt`` (detection) and
    ``seg_classes.txt``. Scene ``i`` is ``render_scene(i)``; the last ``test_fraction`` go to test."""
    from mlfuse.data.io import atomic_write, write_image

    root = Path(folder)
    n_test = max(1, round(count * test_fraction))
    h, w = size
    for i in range(count):
        split = "test" if i >= count - n_test else "train"
        s = render_scene(i, size)
        name = f"{i:05d}"
        write_image(s["vis"], root / split / "vi" / f"{name}.png", overwrite=overwrite)
        write_image(s["ir"], root / split / "ir" / f"{name}.png", overwrite=overwrite)
        write_image(s["mask"], root / split / "Segmentation_labels" / f"{name}.png", overwrite=overwrite)
        lines = [f"{c} {(x0 + x1) / 2 / w:.6f} {(y0 + y1) / 2 / h:.6f} {(x1 - x0) / w:.6f} {(y1 - y0) / h:.6f}"
                 for c, x0, y0, x1, y1 in s["boxes"]]
        text = "\n".join(lines) + ("\n" if lines else "")
        atomic_write(root / split / "labels" / f"{name}.txt", lambda fh, t=text: fh.write(t.encode()),
                     overwrite=overwrite)
    for fname, names in (("classes.txt", SCENE_DET_CLASSES), ("seg_classes.txt", SCENE_SEG_CLASSES)):
        text = "".join(f"{n}\n" for n in names)
        atomic_write(root / fname, lambda fh, t=text: fh.write(t.encode()), overwrite=overwrite)
    return root
