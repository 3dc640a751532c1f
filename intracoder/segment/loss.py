"""The mask net's loss and scores, in keras.ops (every backend).

Cross-entropy learns every pixel; the Dice term (one minus the soft overlap of the visible
face) keeps a small occluder from being drowned by the many easy pixels around it, which is
what the IoU bar measures.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from intracoder.models.blocks import PACKAGE


@keras.saving.register_keras_serializable(package=PACKAGE)
def segmentation_loss(y_true, logits):
    """Per crop: mean binary cross-entropy over its pixels + (1 - soft Dice)."""
    y = ops.cast(y_true, "float32")
    logits = ops.cast(logits, "float32")
    # log(1 + exp(-|x|)) + max(x, 0) - x*y: the stable form of BCE from logits.
    bce = ops.relu(logits) - logits * y + ops.log1p(ops.exp(-ops.abs(logits)))
    bce = ops.mean(bce, axis=(1, 2, 3))
    p = ops.sigmoid(logits)
    inter = ops.sum(p * y, axis=(1, 2, 3))
    dice = (2.0 * inter + 1.0) / (ops.sum(p, axis=(1, 2, 3)) + ops.sum(y, axis=(1, 2, 3)) + 1.0)
    return bce + (1.0 - dice)


def iou(pred: np.ndarray, target: np.ndarray) -> float:
    """Intersection over union of two masks (uint8 0..255 or bool); two empty masks agree."""
    a, b = np.asarray(pred) >= 128 if pred.dtype == np.uint8 else pred, \
        np.asarray(target) >= 128 if target.dtype == np.uint8 else target
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)
