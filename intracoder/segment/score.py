"""How good a mask net is, and where it may correct its own targets.

``score``: on held-out crops, the IoU of the visible face with synthetic occluders pasted
(a fixed seed, so runs compare) and, on the same crops left clean, its agreement with the
landmark hull. ``refine_outline``: where the net is sure the hull's edge is wrong, the
target follows the net.
"""

from __future__ import annotations

import cv2
import numpy as np

from intracoder.segment import samples
from intracoder.segment.loss import iou
from intracoder.segment.predict import net_probabilities

BAND = 0.06  # the hull's edge zone the net may redraw, as a share of the crop side
SURE = 0.9  # a probability this far from 0.5 (or 1 - it) is an opinion, not a guess


def score(net, held: samples.MaskSet, pool, res: int, seed: int) -> dict:
    """Medians over the held-out crops: ``occluded_iou`` (the net, occluders pasted),
    ``hull_occluded_iou`` (the hull alone on the same crops), ``clean_hull_iou`` (the net
    against the hull on the crops left clean), and their count."""
    rng = np.random.default_rng(seed + 7919)
    pairs = [samples.make_sample(held, i, rng, pool, occlude_share=1.0, augment=False)
             for i in range(len(held))]
    occluded = net_probabilities(net, np.stack([p[0] for p in pairs]))
    clean = net_probabilities(net, held.images)
    occ = [iou(p >= 0.5, t >= 128) for p, (_, t) in zip(occluded, pairs)]
    # What the hull alone scores on the same occluded crops: the bar to beat.
    base = [iou(h >= 128, t >= 128) for h, (_, t) in zip(held.hulls, pairs)]
    hull = [iou(p >= 0.5, h >= 128) for p, h in zip(clean, held.hulls)]
    return {"occluded_iou": round(float(np.median(occ)), 4),
            "occluded_iou_p10": round(float(np.percentile(occ, 10)), 4),
            "hull_occluded_iou": round(float(np.median(base)), 4),
            "clean_hull_iou": round(float(np.median(hull)), 4),
            "held_out": len(held)}


def edge_band(hull: np.ndarray, res: int) -> np.ndarray:
    k = max(1, int(round(BAND * res))) * 2 + 1
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    return (cv2.dilate(hull, disk) > 127) & ~(cv2.erode(hull, disk) > 127)


def refine_outline(net, data: samples.MaskSet, res: int) -> float:
    """Redraw the targets of the unlabelled crops of ``data`` in place: inside a band along
    the hull's edge, a pixel the net is sure of takes the net's answer (a beard line under
    the jaw points, a fringe over the forehead's top points, a cheek the hull cut short);
    elsewhere the hull stands. Returns the share of band pixels that changed."""
    todo = np.flatnonzero(data.sources == samples.SYNTHETIC)
    changed = total = 0
    for start in range(0, len(todo), 64):
        idx = todo[start:start + 64]
        probs = net_probabilities(net, data.images[idx])
        for i, p in zip(idx, probs):
            band = edge_band(data.hulls[i], res)
            target = data.hulls[i].copy()
            target[band & (p >= SURE)] = 255
            target[band & (p <= 1.0 - SURE)] = 0
            changed += int(np.count_nonzero((target >= 128) != (data.hulls[i] >= 128)))
            total += int(band.sum())
            data.targets[i] = target
    return round(changed / total, 4) if total else 0.0
