"""Both facesets decoded once into memory, and the batches the model trains on.

Crops are resized to the model resolution at load, so an iteration only augments. Batch
``i`` is a pure function of (seed, i): a resumed run sees exactly the batches an
uninterrupted run would have, and the batches can be built in any order on any thread.
"""

from __future__ import annotations

import hashlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from time import perf_counter

import cv2
import numpy as np

from intracoder.data.augmentation import AugmentSettings, augment, priority_hulls
from intracoder.errors import UserError
from intracoder.faces.faceset import list_faces, read_face

Batch = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, ...]]


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

    def __len__(self) -> int:
        return len(self.images)

    def info(self) -> dict:
        return {"path": str(self.folder.resolve()), "count": len(self),
                "fingerprint": self.fingerprint, "face_type": self.face_type,
                "crop_size": self.crop_size, "held_out": self.held_out}


def fingerprint(paths: list[Path]) -> str:
    """Names and sizes of the crops: cheap for 10k files, and it changes whenever faces are
    added, removed or re-extracted."""
    h = hashlib.sha1()
    for p in paths:
        h.update(f"{p.name}:{p.stat().st_size}\n".encode())
    return h.hexdigest()[:16]


def _load_one(path: Path, resolution: int) -> tuple[np.ndarray, np.ndarray, list, str, int]:
    face = read_face(path)
    size = face.image.shape[0]
    # INTER_AREA averages when shrinking (no aliasing); the data check forbids enlarging.
    interp = cv2.INTER_AREA if size > resolution else cv2.INTER_LINEAR
    image = cv2.resize(face.image, (resolution, resolution), interpolation=interp)
    mask = cv2.resize(face.mask, (resolution, resolution), interpolation=interp)
    landmarks = face.meta.landmarks_in_crop() * (resolution / size)
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return rgb, mask, priority_hulls(landmarks), face.meta.face_type, size


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
                   fingerprint=fingerprint(all_paths), held_out=[p.name for p in held])


def _to_float(batch: list[np.ndarray]) -> np.ndarray:
    return np.multiply(np.stack(batch), np.float32(1 / 255), dtype=np.float32)


class PairDataset:
    """Training batches over faceset A and B (the PyDataset role: ``dataset[i]``).

    Batch i is x = (warped_a, warped_b), y = (target_a, mask_a, target_b, mask_b) plus
    (priority_a, priority_b) when ``priority`` is on; images NHWC float32 in [0, 1], RGB,
    masks NHW1. Each side walks through its faces in a fresh random order every epoch,
    so every face is seen equally often.
    """

    def __init__(self, a: FaceSet, b: FaceSet, batch_size: int, settings: AugmentSettings,
                 seed: int = 0, priority: bool = False) -> None:
        self.sides = (a, b)
        self.batch_size = batch_size
        self.settings = settings
        self.seed = seed
        self.priority = priority

    @lru_cache(maxsize=8)
    def _order(self, side: int, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, side, epoch]).permutation(len(self.sides[side]))

    def indices(self, side: int, iteration: int) -> list[int]:
        n = len(self.sides[side])
        first = iteration * self.batch_size
        return [int(self._order(side, k // n)[k % n])
                for k in range(first, first + self.batch_size)]

    def side_batch(self, side: int, iteration: int) -> tuple[np.ndarray, ...]:
        faces = self.sides[side]
        rng = np.random.default_rng([self.seed, side, iteration, 1])
        columns: tuple[list, ...] = ([], [], [], [])
        for i in self.indices(side, iteration):
            hulls = faces.hulls[i] if self.priority else None
            for column, array in zip(columns, augment(faces.images[i], faces.masks[i], rng,
                                                      self.settings, hulls)):
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
