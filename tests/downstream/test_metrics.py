"""Downstream metrics on hand-computed cases, and against pycocotools where it is installed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlfuse.downstream.metrics import ConfusionMatrix, Detections, box_iou, detection_scores


def test_confusion_matrix_iou_by_hand() -> None:
    cm = ConfusionMatrix(4, ignore_index=255)
    gt = np.array([[0, 0, 1, 1], [0, 2, 2, 255]])
    pr = np.array([[0, 1, 1, 1], [0, 2, 0, 3]])  # the 255 pixel is ignored whatever it predicts
    cm.update(gt, pr)
    # class 0: TP 2 (gt0->0 twice), FP 1 (gt2->0), FN 1 (gt0->1) -> 2/4
    # class 1: TP 2, FP 1, FN 0 -> 2/3; class 2: TP 1, FN 1 -> 1/2; class 3: absent -> undefined
    iou = cm.iou()
    assert iou[:3] == pytest.approx([0.5, 2 / 3, 0.5])
    assert math.isnan(iou[3])
    assert cm.miou() == pytest.approx((0.5 + 2 / 3 + 0.5) / 3)
    assert cm.pixel_accuracy() == pytest.approx(5 / 7)
    cm.update(np.array([3]), np.array([0]))  # accumulated over the split, not per image
    assert cm.iou()[3] == 0.0 and cm.matrix.sum() == 8


def test_box_iou_continuous() -> None:
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]])
    assert box_iou(a, b)[0] == pytest.approx([50 / 150, 0.0, 1.0])


def _one_class_case() -> tuple[list[Detections], list[Detections]]:
    # 2 images, 3 ground-truth boxes; detections scored 0.9 (TP), 0.8 (FP), 0.7 (TP), 0.6 (FP)
    gt = [Detections([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 0]), Detections([[0, 0, 10, 10]], [0])]
    pred = [Detections([[0, 0, 10, 10], [50, 50, 60, 60], [21, 21, 30, 30]], [0, 0, 0], [0.9, 0.8, 0.7]),
            Detections([[40, 40, 50, 50]], [0], [0.6])]
    return pred, gt


def test_coco_ap_by_hand() -> None:
    pred, gt = _one_class_case()
    s = detection_scores(pred, gt, 1, "coco", thresholds=(0.5,))
    # recall 1/3, 1/3, 2/3, 2/3; precision 1, .5, .667, .5 -> envelope 1, .667, .667, .5
    # thresholds 0..0.33 (34 values) -> 1; 0.34..0.66 (33) -> 2/3; 0.67..1 (34) -> 0
    assert s.ap50()[0] == pytest.approx((34 * 1 + 33 * 2 / 3) / 101)


def test_yolov5_ap_by_hand() -> None:
    pred, gt = _one_class_case()
    s = detection_scores(pred, gt, 1, "yolov5", thresholds=(0.5,))
    # padded curve (0,1) (1/3,1) (1/3,.5) (2/3,2/3) (2/3,.5) (1,0); envelope from the right: 1, 1, 2/3, 2/3, .5, 0;
    # sampled at 101 recall points (none hits 1/3 or 2/3 exactly) and integrated by trapezoids
    x = np.linspace(0, 1, 101)
    env = np.where(x <= 1 / 3, 1.0, np.where(x <= 2 / 3, 2 / 3, 0.5 * (1 - x) / (1 / 3)))
    assert s.ap50()[0] == pytest.approx(float(np.sum((env[1:] + env[:-1]) / 2 * np.diff(x))))


def test_conventions_differ_in_integration() -> None:
    # one label; a high-score loose box (IoU .55) and a low-score exact one. At t=.5 both conventions give the
    # label to the first prediction: coco samples the envelope (1 everywhere) -> 1.0; yolov5 integrates the
    # envelope padded with (1, 0), which falls to 0 at recall 1 on the last of 101 points -> 0.995
    gt = [Detections([[0, 0, 10, 10]], [0])]
    pred = [Detections([[0, 0, 10, 5.5], [0, 0, 10, 10]], [0, 0], [0.9, 0.8])]
    assert detection_scores(pred, gt, 1, "coco", thresholds=(0.5,)).ap50()[0] == pytest.approx(1.0)
    assert detection_scores(pred, gt, 1, "yolov5", thresholds=(0.5,)).ap50()[0] == pytest.approx(0.995)
    # at t=.6 only the exact box (second by score) matches: precision 1/2 at recall 1 -> coco 0.5
    assert detection_scores(pred, gt, 1, "coco", thresholds=(0.6,)).ap[0, 0] == pytest.approx(0.5)


def test_class_without_labels_left_out_and_missing_predictions() -> None:
    gt = [Detections([[0, 0, 10, 10]], [0])]
    pred = [Detections([[0, 0, 10, 10], [5, 5, 9, 9]], [0, 1], [0.9, 0.9])]
    for conv, perfect in (("coco", 1.0), ("yolov5", 0.995)):  # yolov5's integral ends at (1, 0)
        s = detection_scores(pred, gt, 3, conv)
        assert s.ap50()[0] == pytest.approx(perfect)
        assert math.isnan(s.ap50()[1]) and math.isnan(s.ap50()[2])
        assert s.map50() == pytest.approx(perfect) and s.map50_95() == pytest.approx(perfect)
    gt2 = [Detections([[0, 0, 10, 10], [0, 0, 5, 5]], [0, 1])]
    pred2 = [Detections([[0, 0, 10, 10]], [0], [0.9])]
    assert detection_scores(pred2, gt2, 2, "yolov5").map50() == pytest.approx(0.995 / 2)  # class 1: labels, no preds
    assert detection_scores(pred2, gt2, 2, "coco").map50() == pytest.approx(0.5)


def _random_split(seed: int, n_img: int = 12, n_cls: int = 3) -> tuple[list[Detections], list[Detections]]:
    rng = np.random.default_rng(seed)
    preds, gts = [], []
    for _ in range(n_img):
        k = rng.integers(0, 6)
        xy = rng.uniform(0, 80, (k, 2))
        wh = rng.uniform(4, 30, (k, 2))
        g = np.concatenate([xy, xy + wh], 1)
        gc = rng.integers(0, n_cls, k)
        # predictions: jittered copies of some labels plus a few random boxes
        keep = rng.random(k) < 0.8
        jit = g[keep] + rng.normal(0, 3, (keep.sum(), 4))
        m = rng.integers(0, 4)
        xy2 = rng.uniform(0, 80, (m, 2))
        rnd = np.concatenate([xy2, xy2 + rng.uniform(4, 30, (m, 2))], 1)
        pb = np.concatenate([jit, rnd])
        pb = np.concatenate([np.minimum(pb[:, :2], pb[:, 2:]), np.maximum(pb[:, :2], pb[:, 2:])], 1)
        pc = np.concatenate([gc[keep], rng.integers(0, n_cls, m)])
        ps = np.round(rng.random(len(pb)), 3)
        preds.append(Detections(pb, pc, ps))
        gts.append(Detections(g, gc))
    return preds, gts


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_coco_matches_pycocotools(seed: int) -> None:
    pytest.importorskip("pycocotools", reason="pycocotools (optional test dependency) not installed")
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    preds, gts = _random_split(seed)
    n_cls = 3
    images = [{"id": i + 1, "width": 120, "height": 120} for i in range(len(gts))]
    anns, dets = [], []
    for i, (p, g) in enumerate(zip(preds, gts, strict=True)):
        for b, c in zip(g.boxes, g.classes, strict=True):
            w, h = b[2] - b[0], b[3] - b[1]
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": int(c) + 1,
                         "bbox": [b[0], b[1], w, h], "area": w * h, "iscrowd": 0})
        for b, c, s in zip(p.boxes, p.classes, p.scores, strict=True):
            dets.append({"image_id": i + 1, "category_id": int(c) + 1, "score": float(s),
                         "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]})
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {"images": images, "annotations": anns,
                        "categories": [{"id": c + 1, "name": str(c)} for c in range(n_cls)]}
        coco.createIndex()
        res = coco.loadRes(dets)
        ev = COCOeval(coco, res, "bbox")
        ev.evaluate()
        ev.accumulate()
    prec = ev.eval["precision"][:, :, :, 0, 2]  # T x R x K, area all, maxDets 100
    ours = detection_scores(preds, gts, n_cls, "coco")
    for k in range(n_cls):
        for t in range(10):
            col = prec[t, :, k]
            ref = math.nan if (col < 0).all() else float(col[col > -1].mean())
            if math.isnan(ref):
                assert math.isnan(ours.ap[k, t])
            else:
                assert ours.ap[k, t] == pytest.approx(ref, abs=1e-12), (k, t)


def test_yolov5_no_true_positive_at_all_is_zero() -> None:
    # val.py reports 0 when no prediction is correct anywhere; the padded integral alone would give 0.005
    gt = [Detections([[0, 0, 10, 10]], [0])]
    pred = [Detections([[50, 50, 60, 60]], [0], [0.9])]
    assert detection_scores(pred, gt, 1, "yolov5").map50() == 0.0
    assert detection_scores(pred, gt, 1, "coco").map50() == 0.0
