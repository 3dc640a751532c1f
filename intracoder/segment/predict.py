"""Running a trained mask net: crops in, masks out, at whatever size the crops are."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from intracoder.errors import UserError
from intracoder.models.segmenter_config import SegmenterConfig
from intracoder.segment import store


@dataclass
class MaskPredictor:
    net: object  # keras.Model: RGB [0, 1] -> logits
    config: SegmenterConfig
    face_type: str  # the crops it learnt from were cut this way
    folder: Path

    @classmethod
    def load(cls, folder: str | Path) -> "MaskPredictor":
        state = store.read_state(folder)
        if state is None:
            raise UserError(f"{folder}: not a mask model folder (no {store.STATE}); "
                            "train one with intracoder mask train")
        return cls(store.load_net(folder), SegmenterConfig(**state["segmenter"]),
                   state.get("face_type", "full"), Path(folder))

    @property
    def resolution(self) -> int:
        return self.config.resolution

    def probabilities(self, crops_bgr: np.ndarray, batch: int = 16) -> np.ndarray:
        """N x R x R float32 in [0, 1] (R: the net's resolution) for BGR uint8 crops of
        any one size. Batches are padded to ``batch`` so the net is traced once."""
        res = self.resolution
        if not len(crops_bgr):
            return np.zeros((0, res, res), np.float32)
        return net_probabilities(self.net, np.stack([fit(c, res) for c in crops_bgr]), batch)

    def masks(self, crops_bgr: np.ndarray, size: int | None = None, batch: int = 16) -> np.ndarray:
        """N x S x S uint8 (255: visible face) at ``size`` (default: the crops' own)."""
        size = size or crops_bgr.shape[1]
        probs = self.probabilities(crops_bgr, batch)
        return np.stack([to_mask(p, size) for p in probs]) if len(probs) else \
            np.zeros((0, size, size), np.uint8)


def net_probabilities(net, crops_bgr: np.ndarray, batch: int = 16) -> np.ndarray:
    """N x R x R float32 in [0, 1] from a segmenter for BGR uint8 crops at its resolution.
    Short batches are padded to ``batch`` so the net is traced once."""
    x = crops_bgr[..., ::-1].astype(np.float32) / 255.0
    out = []
    for start in range(0, len(x), batch):
        chunk = x[start:start + batch]
        padded = np.concatenate([chunk, np.zeros((batch - len(chunk), *chunk.shape[1:]),
                                                 np.float32)]) if len(chunk) < batch else chunk
        logits = np.asarray(net.predict_on_batch(padded), np.float32)[:len(chunk), ..., 0]
        out.append(1.0 / (1.0 + np.exp(-np.clip(logits, -30, 30))))
    return np.concatenate(out)


def fit(crop: np.ndarray, res: int) -> np.ndarray:
    if crop.shape[0] == res:
        return crop
    interp = cv2.INTER_AREA if crop.shape[0] > res else cv2.INTER_LINEAR
    return cv2.resize(crop, (res, res), interpolation=interp)


def to_mask(prob: np.ndarray, size: int) -> np.ndarray:
    """A probability map as a uint8 mask of ``size``: resized as probabilities (a smooth
    edge), then hardened so 0.5 lands on 128."""
    if prob.shape[0] != size:
        prob = cv2.resize(prob, (size, size), interpolation=cv2.INTER_LINEAR)
    return np.clip(np.rint(prob * 255.0), 0, 255).astype(np.uint8)


def uncertainty(prob: np.ndarray) -> float:
    """How unsure the net is about a crop: the share of its pixels with a probability
    between 0.2 and 0.8, weighted by how close to 0.5 (0: sure everywhere)."""
    p = np.asarray(prob, np.float32)
    return float(np.mean(np.clip(1.0 - np.abs(p - 0.5) / 0.3, 0.0, 1.0)))
