"""Task metrics for the downstream protocol (spec ``downstream.md`` §3), implemented once.

Segmentation: one confusion matrix accumulated over the whole split (rows = ground truth, columns
= prediction), per-class IoU = TP / (TP + FP + FN), mIoU over the classes that are defined.

Detection, two named conventions (a table always says which one it uses):

* ``coco`` — what ``pycocotools.cocoeval.COCOeval`` computes for bounding boxes (area range
  "all", at most 100 detections per image and class): per image and class, detections in
  descending score greedily take the unmatched ground truth of highest IoU >= t; all detections
  of a class over the split sorted by score (stable); precision envelope from the right, sampled
  at the first recall >= each of 101 thresholds 0, 0.01, ..., 1 (0 past the last recall); AP =
  mean of the 101 samples. Classes without ground truth are left out of the mean.
* ``yolov5`` — what YOLOv5's ``val.py`` prints (ultralytics/yolov5 v7.0: ``process_batch`` in
  ``val.py``, ``ap_per_class`` and ``compute_ap`` in ``utils/metrics.py``): per image and IoU
  threshold t, every (label, prediction) pair of the same class with IoU >= t, sorted by IoU
  (highest first); each prediction keeps its best label, then each label keeps one prediction (the
  first in the image's prediction order, descending score after NMS; YOLOv5 leaves the re-sort by
  IoU commented out). Recall/precision over the split (stable sort by score), padded with (0, 1)
  and (1, 0), envelope made non-increasing, AP = trapezoidal integral of the envelope interpolated
  at 101 evenly spaced recall points (so a perfect detector scores 0.995). A class with labels but
  no predictions scores 0 and counts; no true positive at all gives 0 everywhere (``val.py``'s
  ``stats[0].any()`` guard). YOLOv5 v6.0 matched once at t = 0.5 and reused those matches at the
  higher thresholds: the same AP@0.5, a slightly different mAP@0.5:0.95.

Box IoU: corners in pixels, intersection over union, continuous coordinates (no +1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from mlfuse.errors import MLFuseError

#: detection conventions, as mlfuse names its fusion-metric conventions
CONVENTIONS = ("coco", "yolov5")
#: IoU thresholds of mAP@0.5:0.95
IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
_REC_THRS = np.linspace(0.0, 1.0, 101)
_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy < 2 names it trapz


# --------------------------------------------------------------------------- segmentation


class ConfusionMatrix:
    """C x C pixel counts accumulated over a split; rows = ground truth, columns = prediction."""

    def __init__(self, num_classes: int, ignore_index: int | None = None) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, target: np.ndarray, prediction: np.ndarray) -> None:
        """Add one image (or a batch): integer arrays of the same shape."""
        t = np.asarray(target).reshape(-1).astype(np.int64)
        p = np.asarray(prediction).reshape(-1).astype(np.int64)
        if t.shape != p.shape:
            raise ValueError(f"target has {t.size} pixels, prediction {p.size}")
        keep = np.ones(t.shape, bool) if self.ignore_index is None else t != self.ignore_index
        t, p = t[keep], p[keep]
        c = self.num_classes
        if t.size and (t.min() < 0 or t.max() >= c or p.min() < 0 or p.max() >= c):
            raise ValueError(f"class index outside 0..{c - 1}")
        self.matrix += np.bincount(t * c + p, minlength=c * c).reshape(c, c)

    def iou(self) -> np.ndarray:
        """Per-class IoU in [0, 1]; NaN for a class absent from both ground truth and prediction."""
        m = self.matrix.astype(np.float64)
        tp = np.diag(m)
        union = m.sum(0) + m.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)

    def miou(self) -> float:
        """Mean IoU over the defined classes (NaN when none is)."""
        iou = self.iou()
        return float(np.nanmean(iou)) if np.isfinite(iou).any() else math.nan

    def pixel_accuracy(self) -> float:
        total = self.matrix.sum()
        return float(np.trace(self.matrix) / total) if total else math.nan


# --------------------------------------------------------------------------- detection


@dataclass
class Detections:
    """One image's boxes: ``boxes`` N x 4 corners (x0, y0, x1, y1) in pixels, ``classes`` N ints,
    ``scores`` N floats (predictions only)."""

    boxes: np.ndarray
    classes: np.ndarray
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        self.classes = np.asarray(self.classes, dtype=np.int64).reshape(-1)
        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        if len(self.classes) != len(self.boxes):
            raise ValueError("boxes and classes differ in length")
        if len(self.scores) not in (0, len(self.boxes)):
            raise ValueError("boxes and scores differ in length")


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a) x len(b)) of corner boxes; continuous coordinates, no +1."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


@dataclass
class DetectionScores:
    """AP per class and threshold (NaN: class left out), in [0, 1]."""

    convention: str
    thresholds: tuple[float, ...]
    classes: list[int]
    ap: np.ndarray  # len(classes) x len(thresholds)

    def ap50(self) -> dict[int, float]:
        j = self.thresholds.index(0.5)
        return {c: float(self.ap[i, j]) for i, c in enumerate(self.classes)}

    def map50(self) -> float:
        col = self.ap[:, self.thresholds.index(0.5)]
        return float(np.nanmean(col)) if np.isfinite(col).any() else math.nan

    def map50_95(self) -> float:
        per_t = [np.nanmean(self.ap[:, j]) if np.isfinite(self.ap[:, j]).any() else math.nan
                 for j in range(len(self.thresholds))]
        return float(np.mean(per_t)) if per_t else math.nan


def _check(preds: Sequence[Detections], truths: Sequence[Detections]) -> None:
    if len(preds) != len(truths):
        raise ValueError(f"{len(preds)} prediction sets for {len(truths)} images")


def _coco_ap(preds: Sequence[Detections], truths: Sequence[Detections], cls: int, t: float,
             max_dets: int) -> float:
    scores, matched, n_gt = [], [], 0
    for pred, gt in zip(preds, truths, strict=True):
        g = gt.boxes[gt.classes == cls]
        n_gt += len(g)
        keep = pred.classes == cls
        d, s = pred.boxes[keep], pred.scores[keep]
        order = np.argsort(-s, kind="mergesort")[:max_dets]
        d, s = d[order], s[order]
        ious = box_iou(d, g)
        used = np.zeros(len(g), bool)
        thr = min(t, 1 - 1e-10)
        for k in range(len(d)):
            best, best_iou = -1, thr
            for j in range(len(g)):
                if used[j] or ious[k, j] < best_iou:
                    continue
                best, best_iou = j, ious[k, j]
            if best >= 0:
                used[best] = True
            matched.append(best >= 0)
        scores.append(s)
    if n_gt == 0:
        return math.nan
    s = np.concatenate(scores) if scores else np.zeros(0)
    tp = np.asarray(matched, bool)
    order = np.argsort(-s, kind="mergesort")
    tp = tp[order]
    tpc = np.cumsum(tp).astype(np.float64)
    fpc = np.cumsum(~tp).astype(np.float64)
    rc = tpc / n_gt
    pr = tpc / (tpc + fpc + np.spacing(1))
    for i in range(len(pr) - 1, 0, -1):  # envelope, non-increasing from the right
        pr[i - 1] = max(pr[i - 1], pr[i])
    idx = np.searchsorted(rc, _REC_THRS, side="left")
    q = np.array([pr[i] if i < len(pr) else 0.0 for i in idx])
    return float(q.mean())


def _yolov5_correct(pred: Detections, gt: Detections, thresholds: Sequence[float]) -> np.ndarray:
    """Per prediction (in the given order) and threshold: is it a true positive (``process_batch``)."""
    correct = np.zeros((len(pred.boxes), len(thresholds)), bool)
    if not len(pred.boxes) or not len(gt.boxes):
        return correct
    iou = box_iou(gt.boxes, pred.boxes)  # labels x predictions
    same = gt.classes[:, None] == pred.classes[None, :]
    for k, t in enumerate(thresholds):
        li, pi = np.nonzero((iou >= t) & same)
        if not len(li):
            continue
        m = np.stack([li, pi, iou[li, pi]], 1)
        if len(m) > 1:
            m = m[m[:, 2].argsort(kind="stable")[::-1]]
            m = m[np.unique(m[:, 1], return_index=True)[1]]
            m = m[np.unique(m[:, 0], return_index=True)[1]]
        correct[m[:, 1].astype(int), k] = True
    return correct


def _yolov5_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([1.0], precision, [0.0]))
    mpre = np.flip(np.maximum.accumulate(np.flip(mpre)))
    x = np.linspace(0, 1, 101)
    return float(_trapezoid(np.interp(x, mrec, mpre), x))


def detection_scores(preds: Sequence[Detections], truths: Sequence[Detections], num_classes: int,
                     convention: str = "coco", thresholds: Sequence[float] = IOU_THRESHOLDS,
                     max_dets: int = 100) -> DetectionScores:
    """AP per class (0..num_classes-1) and IoU threshold over a split, in the named convention."""
    if convention not in CONVENTIONS:
        raise MLFuseError(f"unknown AP convention '{convention}' (choose from {', '.join(CONVENTIONS)})")
    _check(preds, truths)
    thresholds = tuple(float(t) for t in thresholds)
    classes = list(range(num_classes))
    ap = np.full((num_classes, len(thresholds)), math.nan)
    if convention == "coco":
        for c in classes:
            for j, t in enumerate(thresholds):
                ap[c, j] = _coco_ap(preds, truths, c, t, max_dets)
        return DetectionScores(convention, thresholds, classes, ap)
    tp_all, conf, pcls = [], [], []
    for pred, gt in zip(preds, truths, strict=True):
        order = np.argsort(-pred.scores, kind="mergesort")[:max_dets]  # NMS output order
        p = Detections(pred.boxes[order], pred.classes[order], pred.scores[order])
        tp_all.append(_yolov5_correct(p, gt, thresholds))
        conf.append(p.scores)
        pcls.append(p.classes)
    tp = np.concatenate(tp_all) if tp_all else np.zeros((0, len(thresholds)), bool)
    conf_a = np.concatenate(conf) if conf else np.zeros(0)
    pcls_a = np.concatenate(pcls) if pcls else np.zeros(0, np.int64)
    tcls = np.concatenate([g.classes for g in truths]) if truths else np.zeros(0, np.int64)
    order = np.argsort(-conf_a, kind="mergesort")
    tp, pcls_a = tp[order], pcls_a[order]
    for c in classes:
        n_l = int((tcls == c).sum())
        if n_l == 0:
            continue  # YOLOv5 scores only the classes present in the labels
        sel = pcls_a == c
        if not sel.any() or not tp.any():
            ap[c] = 0.0
            continue
        tpc = tp[sel].cumsum(0).astype(np.float64)
        fpc = (1 - tp[sel]).cumsum(0).astype(np.float64)
        recall = tpc / (n_l + 1e-16)
        precision = tpc / (tpc + fpc)
        for j in range(len(thresholds)):
            ap[c, j] = _yolov5_ap(recall[:, j], precision[:, j])
    return DetectionScores(convention, thresholds, classes, ap)
