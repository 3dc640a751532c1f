"""Data-parallel training over the devices of one or many machines (keras.distribution).

``--devices all|N`` puts a keras.distribution.DataParallel over N devices of each process:
the weights are replicated, every device takes an equal share of the batch, and the
gradients are averaged across all of them inside the jit-compiled step. Keras 3.15
distributes only on JAX (its torch backend has no distribution support, its TensorFlow
backend none for custom train steps), so this needs KERAS_BACKEND=jax or ``--backend jax``.

Many machines: start one ``intracoder train`` per machine with the same arguments and
KERAS_DISTRIBUTION_JOB_ADDRESSES (host:port of each process, the first is the
coordinator), KERAS_DISTRIBUTION_NUM_PROCESSES and KERAS_DISTRIBUTION_PROCESS_ID; they
call keras.distribution.initialize. Numpy batches are not sharded for us in 3.15, so
the mesh is built with auto_shard_dataset=False and each process makes only its own rows
of the global batch (PairDataset's ``part``); Keras assembles the global array from the
processes' local ones. Only process 0 (the chief) writes checkpoints, previews, logs and
progress; all processes read the same model folder when they start. They must also stop
at the same iteration and set the same learning rate, or the replicated weights would
silently diverge (or a collective would hang): each iteration they agree on the chief's
clock and on "stop" when any process wants to stop (``agree``).

The global batch per side is the per-device ``--batch-size`` times the device count.
The peak learning rate scales with the square root of that count (the square-root rule
for Adam-type optimisers: Malladi et al. 2022, "On the SDEs and scaling rules for adaptive
gradient algorithms"); warm-up and decay keep their length in iterations.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from intracoder.errors import UserError

ENV = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES",
       "KERAS_DISTRIBUTION_PROCESS_ID")


@dataclass(frozen=True)
class Cluster:
    """Where this process sits in a run: one device (the default), or a DataParallel mesh
    of ``local_devices`` devices on each of ``num_processes`` processes."""

    process_id: int = 0
    num_processes: int = 1
    local_devices: int = 1
    distribution: Any = None

    @property
    def devices(self) -> int:
        return self.local_devices * self.num_processes

    @property
    def chief(self) -> bool:
        return self.process_id == 0

    def global_batch(self, per_device: int) -> int:
        return per_device * self.devices

    def batch_part(self, per_device: int) -> tuple[int, int] | None:
        """The rows of the global batch this process makes (None: all of them)."""
        if self.num_processes == 1:
            return None
        local = per_device * self.local_devices
        return self.process_id * local, (self.process_id + 1) * local

    @property
    def lr_factor(self) -> float:
        return math.sqrt(self.devices)

    def describe(self) -> str:
        if self.distribution is None:
            return "1 device"
        where = f" on each of {self.num_processes} processes" if self.num_processes > 1 else ""
        return f"data parallel over {self.local_devices} devices{where}"

    def agree(self, stop: bool, seconds: float) -> tuple[bool, float]:
        """(stop, seconds) every process acts on: stop if any process asks, the chief's
        clock for the schedule."""
        if self.num_processes == 1:
            return stop, seconds
        # Cross-process agreement is not part of keras.ops; JAX is the only backend here.
        from jax.experimental import multihost_utils

        both = multihost_utils.process_allgather(np.array([float(stop), seconds]))
        return bool(both[:, 0].max()), float(both[0, 1])

    def activate(self) -> None:
        keras.distribution.set_distribution(self.distribution)


def processes_from_env() -> int:
    value = os.environ.get(ENV[1], "")
    try:
        return int(value) if value else 1
    except ValueError:
        raise UserError(f"{ENV[1]}={value!r}: expected the number of processes") from None


def parse_devices(value: str | int) -> int | None:
    """--devices: 'all' -> None (every local device), or a positive count."""
    if str(value) == "all":
        return None
    try:
        count = int(value)
    except ValueError:
        raise UserError(f"--devices {value!r}: give 'all' or a number of devices") from None
    if count < 1:
        raise UserError("--devices must be at least 1")
    return count


def setup(devices: str | int = 1) -> Cluster:
    """The cluster of this run; does not install the distribution (``activate`` does)."""
    wanted = parse_devices(devices)
    processes = processes_from_env()
    if wanted == 1 and processes == 1:
        return Cluster()
    backend = keras.backend.backend()
    if backend != "jax":
        raise UserError(f"--devices and multi-machine training need the JAX backend "
                        f"(--backend jax or KERAS_BACKEND=jax); Keras {keras.__version__} "
                        f"cannot distribute training on {backend}")
    import jax

    if processes > 1:
        missing = [name for name in ENV if not os.environ.get(name)]
        if missing:
            raise UserError(f"a {processes}-process run needs {', '.join(missing)} set too")
        # Cross-process collectives between CPU devices (tests, CPU clusters) go through
        # gloo; GPUs use NCCL whatever this says.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        keras.distribution.initialize()
    mine = jax.local_devices()
    count = len(mine) if wanted is None else wanted
    if count > len(mine):
        raise UserError(f"--devices {count}: this process sees only {len(mine)} "
                        f"({', '.join(d.platform for d in mine[:1])}) device(s)")
    per_process: dict[int, list] = {}
    for device in jax.devices():
        per_process.setdefault(device.process_index, []).append(device)
    mesh = [f"{d.platform}:{d.id}" for p in sorted(per_process) for d in per_process[p][:count]]
    distribution = keras.distribution.DataParallel(devices=mesh, auto_shard_dataset=False)
    return Cluster(jax.process_index(), jax.process_count(), count, distribution)
