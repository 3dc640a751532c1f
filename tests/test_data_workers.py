"""Batches from worker processes (data/workers.py) and rows of a batch (PairDataset's
``part``): the same batches as the threads make, on real faces from the bundled portraits."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from intracoder.data.dataset import PairDataset, Prefetcher, load_faceset
from intracoder.data.workers import (ProcessPrefetcher, WorkerDied, WorkerError,
                                     make_prefetcher)
from intracoder.training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
RES = 64


@pytest.fixture(scope="module")
def sides(facesets):
    return load_faceset(facesets[0], RES), load_faceset(facesets[1], RES)


def _dataset(sides, batch=4, **kw) -> PairDataset:
    return PairDataset(*sides, batch, TrainConfig(preset="quick"), 3, **kw)


def _equal(got, want) -> bool:
    (ga, gb), gy = got
    (wa, wb), wy = want
    return len(gy) == len(wy) and all(np.array_equal(g, w) for g, w in
                                      zip((ga, gb, *gy), (wa, wb, *wy)))


@pytest.mark.parametrize("options", [dict(priority=True),
                                     dict(ct_mode="rct", uniform_yaw=True)])
def test_processes_make_the_batches_threads_make(sides, options):
    dataset = _dataset(sides, **options)
    with Prefetcher(dataset, 7, 2, 3) as threads, ProcessPrefetcher(dataset, 7, 2, 3) as procs:
        for _ in range(6):
            assert _equal(next(procs), next(threads))


def test_a_part_is_those_rows_of_the_whole_batch(sides):
    whole = _dataset(sides, batch=6, priority=True, uniform_yaw=True)
    part = _dataset(sides, batch=6, priority=True, uniform_yaw=True, part=(2, 5))
    assert part.local_batch_size == 3
    (wa, wb), y = whole[11]
    want = (wa[2:5], wb[2:5]), tuple(a[2:5] for a in y)
    assert _equal(part[11], want)
    with ProcessPrefetcher(part, 11, 1, 2) as procs:
        assert _equal(next(procs), want)
    assert not _equal(_dataset(sides, batch=3, priority=True, uniform_yaw=True)[11], want)
    with pytest.raises(ValueError):
        _dataset(sides, batch=6, part=(4, 7))


def test_the_warp_switch_reaches_the_workers(sides):
    dataset, unwarped = _dataset(sides), _dataset(sides)
    unwarped.warp_off_from(0)
    with make_prefetcher(dataset, 0, 2, 2, "processes") as procs:
        first = next(procs)
        assert _equal(first, dataset[0]) and not _equal(first, unwarped[0])
        dataset.warp_off_from(5)
        # Batches 1..8 (1 and 2 were submitted before the switch). A batch is valid until
        # the next one is taken: compare each as it comes.
        got = [(_equal(next(procs), dataset[i]), _equal(unwarped[i], dataset[i]))
               for i in range(1, 9)]
    assert got[1] == (True, False) and got[-1] == (True, True)  # warped at 2, not at 8
    assert all(ok for ok, _ in got)


def test_a_failing_worker_says_why_and_a_killed_one_does_not_hang(sides):
    dataset = _dataset(sides)
    broken = _dataset(sides, priority=True)  # priority reads hulls this side lacks
    broken.sides = (broken.sides[0], _without_hulls(broken.sides[1]))
    with ProcessPrefetcher(broken, 0, 1, 2) as procs, pytest.raises(WorkerError,
                                                                     match="IndexError"):
        next(procs)
    procs = ProcessPrefetcher(dataset, 0, 1, 2)
    try:
        next(procs)
        procs._procs[0].kill()
        with pytest.raises(WorkerDied, match="died"):
            for _ in range(10):
                next(procs)
    finally:
        procs.close()


def _without_hulls(side):
    import copy

    bare = copy.copy(side)
    bare.hulls = []
    return bare


def test_close_leaves_no_process_and_no_shared_memory(sides):
    procs = ProcessPrefetcher(_dataset(sides), 0, 2, 2)
    next(procs)
    names = [block.name for block in procs._blocks]
    children = list(procs._procs)
    procs.close()
    assert names and not any(p.is_alive() for p in children)
    assert not any(os.path.exists(f"/dev/shm/{name}") for name in names)


def test_workers_import_no_deep_learning_framework():
    """A spawned worker imports what unpickling its arguments needs: the workers module and
    the settings' class. None of it may pull in Keras or a backend (seconds of start-up and
    hundreds of MB per worker, and TensorFlow would grab the GPU)."""
    check = textwrap.dedent("""
        import sys
        import intracoder.data.workers, intracoder.training.config
        print("LOADED", sorted(m for m in ("keras", "tensorflow", "jax", "torch")
                               if m in sys.modules))
    """)
    proc = subprocess.run([sys.executable, "-c", check], env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120)
    assert "LOADED []" in proc.stdout, proc.stderr[-2000:]
