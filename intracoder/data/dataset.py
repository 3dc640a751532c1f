"""Both facesets decoded once into memory, and the batches the model trains on.

Crops are resized to the model resolution at load, so an iteration only augments. Batch
``i`` is a pure function of (seed, i): a resumed run sees exactly the batches an
uninterrupted run would have, and the batches can be built in any order on any thread or
process. Every random choice for face k of a batch comes from its own generator seeded
with (seed, side, iteration, stream, k), so switching one option on (yaw balancing, colour
matching) changes no other choice, and any rows of a batch can be made without the others
(``part``: each process of a multi-machine run makes only its own rows).

Two DeepFaceLab options act here rather than in augmentation.py because they need the
whole faceset: ``uniform_yaw`` (draw head poses evenly instead of as often as the footage
has them) and ``ct_mode`` (B's faces take the colours of a random A face before they are
augmented, so B's decoder learns to render under A's lighting: in an a2b swap it is A's
frames that B's face is pasted into).
"""

from __future__ import annotations

import hashlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import Any

import cv2
import numpy as np

from intracoder.data.augmentation import AugmentSettings, augment, priority_hulls
from intracoder.data.epochs import EpochOrders
from intracoder.errors import UserError
from intracoder.faces.faceset import list_faces, read_face
from intracoder.imaging.colour_transfer import COLOUR_MODES, transfer

Batch = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, ...]]

# Sub-seeds of a face's generators: default_rng([seed, side, iteration, stream, k]).
_AUGMENT_STREAM = 1  # augmentation of the batch's faces (as it has always been)
_CT_STREAM = 2  # which A face each B face takes its colours from
_YAW_STREAM = 3  # yaw-balanced choice of the faces

# Yaw bins of uniform_yaw. DeepFaceLab uses 128 bins over [-1.2, 1.2] rad (+-68.75 deg, the
# largest yaw its landmarks report), 1.07 degrees each. Our facesets are often a few hundred
# faces of one clip spanning 20-30 degrees: at 1 degree a bin at the edge of the spread holds
# one or two faces, each of which would then be drawn as often as the whole frontal bin, so
# training would revisit a handful of frames (often the worst-aligned ones) over and over,
# and 1 degree is within the noise of a landmark-based yaw estimate anyway. The same range
# in 31 bins gives 4.4-degree bins: a clearly different head turn at 64-128 px, several faces
# per bin on a 200-face clip, still 10-15 bins over a +-30 degree set. The count is odd so
# that one bin is centred on the frontal pose, which most footage is full of; an even count
# puts a bin edge at 0 and splits the commonest pose over two bins (doubling its weight).
YAW_RANGE_DEG = float(np.degrees(1.2))
YAW_BINS = 31


@dataclass
class FaceSet:
    folder: Path
    images: np.ndarray  # N x R x R x 3 uint8, RGB
    masks: np.ndarray  # N x R x R uint8
    hulls: list[list[np.ndarray]]  # per face: eye, eye, mouth hulls in R-pixel coordinates
    face_type: str
    crop_size: int  # the smallest crop in the folder, before resizing
    fingerprint: str
    held_out: list[str]  # crop names kept out of training, for evaluate's reconstruction
    # Head yaw of each face in degrees (the crop metadata's ``yaw``), float64 N. Left out,
    # every face counts as frontal; after construction it is always an N-array.
    yaws: np.ndarray | None = None
    # A pool (``pool_faceset``): the info of each folder it was made of.
    sources: list[dict] | None = None

    def __post_init__(self) -> None:
        n = len(self.images)
        yaws = np.zeros(n) if self.yaws is None else np.asarray(self.yaws, np.float64)
        if yaws.shape != (n,):
            raise ValueError(f"{n} faces but {yaws.shape} yaws")
        self.yaws = np.nan_to_num(yaws, nan=0.0)

    def __len__(self) -> int:
        return len(self.images)

    def info(self) -> dict:
        return {"path": str(self.folder.resolve()), "count": len(self),
                "fingerprint": self.fingerprint, "face_type": self.face_type,
                "crop_size": self.crop_size, "held_out": self.held_out} \
            | ({"sources": self.sources} if self.sources else {})


def fingerprint(paths: list[Path]) -> str:
    """Names and sizes of the crops: cheap for 10k files, and it changes whenever faces are
    added, removed or re-extracted."""
    h = hashlib.sha1()
    for p in paths:
        h.update(f"{p.name}:{p.stat().st_size}\n".encode())
    return h.hexdigest()[:16]


def _load_one(path: Path, resolution: int
              ) -> tuple[np.ndarray, np.ndarray, list, str, int, float]:
    face = read_face(path)
    size = face.image.shape[0]
    # INTER_AREA averages when shrinking (no aliasing); the data check forbids enlarging.
    interp = cv2.INTER_AREA if size > resolution else cv2.INTER_LINEAR
    image = cv2.resize(face.image, (resolution, resolution), interpolation=interp)
    # The learned mask once applied: the loss then ignores occluded pixels and the decoder's
    # mask learns to leave a hand or a cup out.
    mask = cv2.resize(face.train_mask, (resolution, resolution), interpolation=interp)
    landmarks = face.meta.landmarks_in_crop() * (resolution / size)
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return rgb, mask, priority_hulls(landmarks), face.meta.face_type, size, float(face.meta.yaw)


def split_held_out(paths: list[Path], every: int) -> tuple[list[Path], list[Path]]:
    """(train, held out): every ``every``-th crop by name, from the first, is held out; a
    faceset of fewer than 8 faces is too small to spare any."""
    if every <= 0 or len(paths) < 8:
        return paths, []
    held = set(range(0, len(paths), every))
    return ([p for i, p in enumerate(paths) if i not in held],
            [p for i, p in enumerate(paths) if i in held])


def load_faceset(folder: str | Path, resolution: int, workers: int = 2,
                 held_out_every: int = 0) -> FaceSet:
    folder = Path(folder)
    all_paths = list_faces(folder)
    if not all_paths:
        raise UserError(f"{folder}: no extracted faces in this folder (run extract first)")
    paths, held = split_held_out(all_paths, held_out_every)
    with ThreadPoolExecutor(workers) as pool:
        rows = list(pool.map(lambda p: _load_one(p, resolution), paths))
    face_types = sorted({r[3] for r in rows})
    if len(face_types) > 1:
        raise UserError(f"{folder}: faces of several face types ({', '.join(face_types)}); "
                        "extract them again with one --face-type")
    crop_size = min(r[4] for r in rows)
    if crop_size < resolution:
        raise UserError(f"{folder}: faces are {crop_size} px but the model is {resolution} px; "
                        f"extract with --size {resolution} or more, or train a smaller model")
    return FaceSet(folder=folder, images=np.stack([r[0] for r in rows]),
                   masks=np.stack([r[1] for r in rows]), hulls=[r[2] for r in rows],
                   face_type=face_types[0], crop_size=crop_size,
                   fingerprint=fingerprint(all_paths), held_out=[p.name for p in held],
                   yaws=np.array([r[5] for r in rows], np.float64))


def pool_faceset(sets: list[FaceSet]) -> FaceSet:
    """One faceset of the faces of several folders (pretraining's pool of many people). Its
    fingerprint changes when any folder changes; ``sources`` keeps each folder's info."""
    face_types = sorted({f.face_type for f in sets})
    if len(face_types) > 1:
        raise UserError("the --faces folders hold different face types "
                        f"({', '.join(face_types)}); extract them all with one --face-type")
    h = hashlib.sha1()
    for faces in sets:
        h.update(f"{faces.fingerprint}:{len(faces)}\n".encode())
    return FaceSet(folder=sets[0].folder, images=np.concatenate([f.images for f in sets]),
                   masks=np.concatenate([f.masks for f in sets]),
                   hulls=[h_ for f in sets for h_ in f.hulls], face_type=face_types[0],
                   crop_size=min(f.crop_size for f in sets), fingerprint=h.hexdigest()[:16],
                   held_out=[], yaws=np.concatenate([f.yaws for f in sets]),
                   sources=[f.info() for f in sets])


def yaw_bins(yaws: np.ndarray, bins: int = YAW_BINS,
             limit: float = YAW_RANGE_DEG) -> list[np.ndarray]:
    """The faces (indices, ascending) of each non-empty yaw bin, in order of yaw: ``bins``
    equal bins over [-limit, limit] degrees, yaws beyond it in the outermost bins (as DFL)."""
    width = 2.0 * limit / bins
    which = np.clip(np.floor((np.asarray(yaws, np.float64) + limit) / width), 0, bins - 1)
    which = which.astype(np.int64)
    return [np.flatnonzero(which == b) for b in np.unique(which)]


def _bgr(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2BGR)


def _to_float(batch: list[np.ndarray]) -> np.ndarray:
    return np.multiply(np.stack(batch), np.float32(1 / 255), dtype=np.float32)


class _WarpOff:
    """Augmentation settings as given, with the random warp off."""

    random_warp = False

    def __init__(self, settings: AugmentSettings) -> None:
        self._settings = settings

    def __getattr__(self, name: str) -> Any:
        return getattr(self._settings, name)


class PairDataset:
    """Training batches over faceset A and B (the PyDataset role: ``dataset[i]``).

    Batch i is x = (warped_a, warped_b), y = (target_a, mask_a, target_b, mask_b) plus
    (priority_a, priority_b) when ``priority`` is on; images NHWC float32 in [0, 1], RGB,
    masks NHW1. Each side walks through its faces in a fresh random order every epoch,
    so every face is seen equally often.

    ``uniform_yaw`` (DFL's option of that name) draws each face of a batch by drawing a yaw
    bin first, uniformly over the side's non-empty bins (see YAW_BINS), then a face
    uniformly inside it: every head pose the faceset has is trained as often as any other,
    instead of the frontal ones a clip is mostly made of. A side whose faces all fall in one
    bin keeps the epoch order. ``ct_mode`` (DFL's, a key of COLOUR_MODES) colour-transfers
    each B face onto a random A face before augmentation, with the part of the two face
    masks they share as the statistics selection; colours only, the geometry and the mask
    are B's own.

    ``part`` = (lo, hi): batches hold only rows lo..hi-1 of the global batch of
    ``batch_size`` faces per side, equal to those rows of the whole batch.
    """

    def __init__(self, a: FaceSet, b: FaceSet, batch_size: int, settings: AugmentSettings,
                 seed: int = 0, priority: bool = False, *, uniform_yaw: bool = False,
                 ct_mode: str = "none", part: tuple[int, int] | None = None) -> None:
        ct_mode = ct_mode or "none"
        if ct_mode not in COLOUR_MODES:
            raise UserError(f"unknown colour transfer mode {ct_mode!r} for training; "
                            f"choose from {', '.join(COLOUR_MODES)}")
        if ct_mode != "none" and a.images.shape[1:3] != b.images.shape[1:3]:
            raise ValueError(f"faces of A are {a.images.shape[1:3]} and of B "
                             f"{b.images.shape[1:3]}: colour matching needs one size")
        lo, hi = part or (0, batch_size)
        if not 0 <= lo < hi <= batch_size:
            raise ValueError(f"part {part} is not a range of rows of a batch of {batch_size}")
        self.sides = (a, b)
        self.batch_size = batch_size
        self.rows = range(lo, hi)
        self.settings = settings
        self.seed = seed
        self.priority = priority
        self.uniform_yaw = bool(uniform_yaw)
        self.ct_mode = ct_mode
        # Per side: the non-empty yaw bins, or None where balancing is off or pointless.
        self._bins = tuple(self._balancing_bins(faces) for faces in self.sides)
        self._warp_off_from: int | None = None
        self._orders = EpochOrders((seed,))

    @property
    def local_batch_size(self) -> int:
        """Faces per side in the batches this dataset makes (its ``part``)."""
        return len(self.rows)

    @property
    def warp_off_iteration(self) -> int | None:
        """The iteration from which batches are made without the random warp, or None."""
        return self._warp_off_from

    def warp_off_from(self, iteration: int | None) -> None:
        """Draw batches from ``iteration`` on without the random warp, whatever the settings
        say (the sharpening phase); None: as the settings say. Batches a prefetcher has
        already made keep the warp they were made with."""
        self._warp_off_from = iteration

    def _balancing_bins(self, faces: FaceSet) -> list[np.ndarray] | None:
        if not self.uniform_yaw:
            return None
        bins = yaw_bins(faces.yaws)
        return bins if len(bins) > 1 else None

    def _order(self, side: int, epoch: int) -> np.ndarray:
        return self._orders.order((side, epoch), len(self.sides[side]))

    def _rng(self, side: int, iteration: int, stream: int, k: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, side, iteration, stream, k])

    def indices(self, side: int, iteration: int) -> list[int]:
        """The faces of this dataset's rows of batch ``iteration``."""
        bins = self._bins[side]
        if bins is not None:
            return [self._balanced_index(bins, side, iteration, k) for k in self.rows]
        n = len(self.sides[side])
        first = iteration * self.batch_size
        return [int(self._order(side, (first + k) // n)[(first + k) % n]) for k in self.rows]

    def _balanced_index(self, bins: list[np.ndarray], side: int, iteration: int,
                        k: int) -> int:
        """A bin uniformly over the non-empty ones, then a face uniformly inside it."""
        rng = self._rng(side, iteration, _YAW_STREAM, k)
        chosen = bins[int(rng.integers(len(bins)))]
        return int(chosen[int(rng.integers(len(chosen)))])

    def colour_references(self, iteration: int) -> list[int]:
        """The A face whose colours each B face of batch ``iteration`` takes (ct_mode)."""
        return [int(self._rng(1, iteration, _CT_STREAM, k).integers(len(self.sides[0])))
                for k in self.rows]

    def _colour_matched(self, indices: list[int], iteration: int) -> list[np.ndarray]:
        """B's faces ``indices`` with the colours of random A faces (ct_mode). The colour
        functions work in OpenCV's BGR order (rct's LAB conversion depends on it)."""
        a, b = self.sides
        out = []
        for i, j in zip(indices, self.colour_references(iteration)):
            inside = np.minimum(b.masks[i], a.masks[j])  # face in both crops
            moved = transfer(self.ct_mode, _bgr(b.images[i]), _bgr(a.images[j]), inside)
            out.append(cv2.cvtColor(moved, cv2.COLOR_BGR2RGB))
        return out

    def side_batch(self, side: int, iteration: int) -> tuple[np.ndarray, ...]:
        faces = self.sides[side]
        settings = self.settings
        if self._warp_off_from is not None and iteration >= self._warp_off_from:
            settings = _WarpOff(settings)
        columns: tuple[list, ...] = ([], [], [], [])
        indices = self.indices(side, iteration)
        if side == 1 and self.ct_mode != "none":
            images = self._colour_matched(indices, iteration)
        else:
            images = [faces.images[i] for i in indices]
        for k, i, image in zip(self.rows, indices, images):
            hulls = faces.hulls[i] if self.priority else None
            rng = self._rng(side, iteration, _AUGMENT_STREAM, k)
            for column, array in zip(columns, augment(image, faces.masks[i], rng,
                                                      settings, hulls)):
                column.append(array)
        warped, target, mask, prio = columns
        out = (_to_float(warped), _to_float(target), _to_float(mask)[..., None])
        return out + ((_to_float(prio)[..., None],) if self.priority else ())

    def __getitem__(self, iteration: int) -> Batch:
        wa, ta, ma, *pa = self.side_batch(0, iteration)
        wb, tb, mb, *pb = self.side_batch(1, iteration)
        return (wa, wb), (ta, ma, tb, mb, *pa, *pb)

    def fixed_faces(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``count`` unaugmented faces per side, spread over each set, float32 [0, 1]:
        the same faces in every preview, so previews are comparable over time."""
        out = []
        for faces in self.sides:
            idx = np.linspace(0, len(faces) - 1, min(count, len(faces))).round().astype(int)
            out.append(_to_float(list(faces.images[idx])))
        return out[0], out[1]


class Prefetcher:
    """Builds the next ``depth`` batches on a thread pool while the model trains.

    Threads, not processes: cv2 and albumentations' LUT work release the GIL, the faces
    are shared without copying, and there is no start-up cost. ``wait_seconds`` is how
    long the loop sat waiting for data, the number that says whether this keeps up.
    """

    def __init__(self, dataset: PairDataset, start: int, workers: int = 2, depth: int = 4):
        self.dataset = dataset
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="augment")
        self.pending: deque[Future] = deque()
        self.next_index = start
        self.wait_seconds = 0.0
        for _ in range(max(depth, workers)):
            self._submit()

    def _submit(self) -> None:
        self.pending.append(self.pool.submit(self.dataset.__getitem__, self.next_index))
        self.next_index += 1

    def __iter__(self) -> Prefetcher:
        return self

    def __next__(self) -> Batch:
        future = self.pending.popleft()
        self._submit()
        start = perf_counter()
        batch = future.result()
        self.wait_seconds += perf_counter() - start
        return batch

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
