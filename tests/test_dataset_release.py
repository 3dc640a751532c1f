"""A dataset's decoded faces go when the dataset goes: nothing it draws batches with (the
per-epoch shuffles) keeps it alive, so calling train again does not pile up facesets."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import numpy as np

from intracoder.data.dataset import FaceSet, PairDataset
from intracoder.refiner.degrade import RefinerDataset
from intracoder.training.config import TrainConfig

SIZE = 32


def _faceset(n: int = 10) -> FaceSet:
    return FaceSet(folder=Path("x"), images=np.zeros((n, SIZE, SIZE, 3), np.uint8),
                   masks=np.full((n, SIZE, SIZE), 255, np.uint8), hulls=[[]] * n,
                   face_type="full", crop_size=SIZE, fingerprint="x", held_out=[])


def _released(make, draw) -> bool:
    ds = make()
    draw(ds)
    ref = weakref.ref(ds)
    del ds
    gc.collect()
    return ref() is None


def test_pair_dataset_is_released_after_drawing_batches():
    faces = _faceset()
    # Several epochs' shuffles drawn, as training does.
    assert _released(lambda: PairDataset(faces, faces, 4, TrainConfig(), seed=1),
                     lambda ds: [ds.indices(side, it) for side in (0, 1) for it in range(12)])


def test_refiner_dataset_is_released_after_drawing_batches():
    faces = _faceset()
    assert _released(lambda: RefinerDataset(faces.images, faces.masks, 4, seed=1),
                     lambda ds: [ds._order(epoch) for epoch in range(4)])


def test_epoch_orders_are_kept_and_still_the_seeded_permutations():
    faces = _faceset(7)
    ds = PairDataset(faces, faces, 3, TrainConfig(), seed=5)
    first = ds._order(1, 2)
    assert ds._order(1, 2) is first  # computed once
    assert np.array_equal(first, np.random.default_rng([5, 1, 2]).permutation(7))
    for epoch in range(3, 20):  # older epochs fall out of the bounded store ...
        ds._order(1, epoch)
    again = ds._order(1, 2)
    assert again is not first and np.array_equal(again, first)  # ... and come back the same
    refiner = RefinerDataset(faces.images, faces.masks, 3, seed=5)
    assert np.array_equal(refiner._order(4), np.random.default_rng([5, 4]).permutation(7))
