"""What the mask net learns from: the facesets' crops, each with a target of what of it is
visible face, and synthetic occluders pasted on them on the fly.

The target of a crop is, in order of trust: its user's label (include/exclude polygons drawn
in the studio), a label propagated from a neighbouring frame, else its landmark hull (which
the trainer may redraw at the edge once the net is confident, ``MaskSet.refine``). A pasted
occluder is cut out of whichever target the crop has.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from intracoder.data.occluders import OccluderPool, occlude
from intracoder.errors import UserError
from intracoder.faces.faceset import list_faces, read_face
from intracoder.faces.labels import is_user_label, labels_of, rasterise
from intracoder.progress import progress

SYNTHETIC, PROPAGATED, USER = 0, 1, 2  # where a crop's target comes from
ROTATION, SCALE, SHIFT = 12.0, 0.08, 0.06  # augmentation ranges: degrees, +- fraction


@dataclass
class MaskSet:
    """Crops at the net's resolution with their targets, in memory (128 px: 48 KB a crop)."""

    names: list[str]
    images: np.ndarray  # N x R x R x 3 uint8 BGR
    hulls: np.ndarray  # N x R x R uint8: the landmark hull
    targets: np.ndarray  # N x R x R uint8: what training asks for before occluders
    sources: np.ndarray  # N: SYNTHETIC, PROPAGATED or USER
    landmarks: np.ndarray  # N x 468 x 2 float32, crop pixels at resolution R
    face_type: str = "full"  # how every crop was cut: a mask model learns one face type

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, idx) -> "MaskSet":
        idx = np.asarray(idx, int)
        return MaskSet([self.names[i] for i in idx], self.images[idx], self.hulls[idx],
                       self.targets[idx], self.sources[idx], self.landmarks[idx], self.face_type)


def _resize(image: np.ndarray, res: int) -> np.ndarray:
    interp = cv2.INTER_AREA if image.shape[0] > res else cv2.INTER_LINEAR
    return cv2.resize(image, (res, res), interpolation=interp)


def load_maskset(folders: list[str | Path], res: int, quiet: bool = False) -> MaskSet:
    paths = [p for f in folders for p in list_faces(f)]
    if not paths:
        raise UserError(f"no face crops in {', '.join(str(f) for f in folders)}: extract faces first")
    names, images, hulls, targets, sources, marks, types = [], [], [], [], [], [], set()
    bar = progress(len(paths), unit="face", desc="load", quiet=quiet)
    for path in paths:
        bar.update(1)
        face = read_face(path)
        types.add(face.meta.face_type)
        size = face.image.shape[0]
        names.append(f"{path.parent.name}/{path.name}")
        images.append(_resize(face.image, res))
        hull = _resize(face.mask, res)
        hulls.append(hull)
        polygons = labels_of(face.meta)
        if polygons:
            targets.append(_resize(rasterise(polygons, size), res))
            sources.append(USER if is_user_label(face.meta) else PROPAGATED)
        else:
            targets.append(hull.copy())
            sources.append(SYNTHETIC)
        marks.append(face.meta.landmarks_in_crop() * (res / size))
    bar.close()
    if len(types) > 1:
        raise UserError(f"the facesets hold different face types ({', '.join(sorted(types))}); "
                        "a mask model learns one: extract them with the same --face-type")
    return MaskSet(names, np.stack(images), np.stack(hulls), np.stack(targets),
                   np.array(sources, np.int8), np.stack(marks).astype(np.float32), types.pop())


def split(data: MaskSet, every: int) -> tuple[MaskSet, MaskSet]:
    """(train, held out): every ``every``-th crop without a label is held out; labelled
    crops are too few to spare and always train."""
    held = [i for i in range(len(data)) if data.sources[i] == SYNTHETIC and i % every == every // 2]
    train = sorted(set(range(len(data))) - set(held))
    return data.subset(train), data.subset(held)


def _affine(rng: np.random.Generator, res: int) -> np.ndarray:
    centre = (res - 1) / 2.0
    m = cv2.getRotationMatrix2D((centre, centre), rng.uniform(-ROTATION, ROTATION),
                                1.0 + rng.uniform(-SCALE, SCALE))
    m[:, 2] += rng.uniform(-SHIFT, SHIFT, 2) * res
    if rng.random() < 0.5:
        m = np.array([[-1.0, 0.0, res - 1.0], [0.0, 1.0, 0.0]]) @ np.vstack([m, [0, 0, 1]])
    return m


def _colour(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Light, contrast, colour cast, and now and then blur or noise: what footage varies by."""
    out = image.astype(np.float32) * rng.uniform(0.7, 1.3) + rng.uniform(-25, 25)
    out = (out - out.mean()) * rng.uniform(0.75, 1.25) + out.mean()
    out *= rng.uniform(0.9, 1.1, 3)
    if rng.random() < 0.2:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.5, 1.5))
    if rng.random() < 0.2:
        out += rng.normal(0, rng.uniform(2, 8), out.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def make_sample(data: MaskSet, i: int, rng: np.random.Generator, pool: OccluderPool,
                occlude_share: float, augment: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(crop BGR uint8, target uint8 0/255) for crop ``i``: augmented, maybe occluded."""
    image, target, marks = data.images[i], data.targets[i], data.landmarks[i]
    res = image.shape[0]
    if augment:
        m = _affine(rng, res)
        image = cv2.warpAffine(image, m, (res, res), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT101)
        target = cv2.warpAffine(target, m, (res, res), flags=cv2.INTER_LINEAR)
        marks = marks @ m[:, :2].T + m[:, 2]
        image = _colour(image, rng)
    if rng.random() < occlude_share:
        image, alpha = occlude(image, rng, pool, marks)
        # A faint tint (sunglasses' lens, smoke) still shows the face: only alpha >= 0.5 hides it.
        target = np.where(alpha >= 0.5, 0, target).astype(np.uint8)
    return image, np.where(target >= 128, 255, 0).astype(np.uint8)


def make_batch(data: MaskSet, idx: np.ndarray, rng: np.random.Generator, pool: OccluderPool,
               occlude_share: float, weights: tuple[float, float, float]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x N x R x R x 3 RGB float32 [0, 1], y N x R x R x 1 float32, sample weights N)."""
    pairs = [make_sample(data, int(i), rng, pool, occlude_share) for i in idx]
    x = np.stack([p[0][..., ::-1] for p in pairs]).astype(np.float32) / 255.0
    y = np.stack([p[1] for p in pairs]).astype(np.float32)[..., None] / 255.0
    w = np.array([weights[data.sources[int(i)]] for i in idx], np.float32)
    return x, y, w


def draw_indices(data: MaskSet, rng: np.random.Generator, batch: int) -> np.ndarray:
    """A batch of crop indices; labelled crops, when there are any, fill a quarter of each
    batch whatever their number, so ten labels among thousands of crops still count."""
    labelled = np.flatnonzero(data.sources != SYNTHETIC)
    if len(labelled) == 0 or len(labelled) == len(data):
        return rng.integers(0, len(data), batch)
    k = max(1, batch // 4)
    return np.concatenate([rng.choice(labelled, k), rng.integers(0, len(data), batch - k)])


def build_pool(data: MaskSet, seed: int) -> OccluderPool:
    return OccluderPool.build(list(data.images), list(data.hulls), np.random.default_rng(seed),
                              size=data.images.shape[1])
