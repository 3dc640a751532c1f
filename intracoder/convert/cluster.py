"""The parts of a video as Ray tasks (``--cluster ray://HOST:PORT``, ``auto``, ``local``).

Ray is an optional extra (``pip install 'intracoder[cluster]'``). The model folder and the
input must be readable at the same path on every node (a shared disk); each finished part
comes back through Ray's object store and is written into the work folder here, so OUTPUT
needs no shared disk. Ray reuses its worker processes, so each loads the model once. A task
asks for its share of a node's CPUs, and for a GPU when the cluster has them.
"""

from __future__ import annotations

from intracoder.errors import UserError
from intracoder.progress import progress


def require_ray():
    try:
        import ray
    except ImportError:
        raise UserError("--cluster needs Ray, which is not installed: "
                        "pip install 'intracoder[cluster]'") from None
    return ray


def _connect(ray, address: str, workers: int) -> bool:
    """Join the cluster (or start a local one); True when this call started it."""
    if ray.is_initialized():
        return False
    kwargs = {"ignore_reinit_error": True, "log_to_driver": False, "include_dashboard": False}
    try:
        if address == "local":
            ray.init(num_cpus=max(1, workers), **kwargs)
        else:
            ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UserError(f"--cluster {address}: cannot connect to Ray ({exc})") from None
    return True


def _remote_part(cfg, seg, work, total, threads: int):
    """Runs on a Ray worker: the part converted into a local scratch folder, returned as
    (record, bytes of the video)."""
    import tempfile
    from pathlib import Path

    from intracoder.convert import workers
    from intracoder.convert.segments import WorkFolder, convert_part

    if workers._threads != threads:
        workers._limit_threads(threads)
    job = workers._job_for(cfg)
    with tempfile.TemporaryDirectory() as scratch:
        local = WorkFolder(Path(scratch) / Path(cfg.output).name)
        local.path.mkdir()
        record = convert_part(job, cfg, seg, local, total, lambda n: None, threads)
        return record, local.video(seg.number).read_bytes()


def run_on_ray(cfg, todo, work, total: int, done_frames: int, workers: int) -> None:
    from intracoder.atomic import write_bytes, write_json

    ray = require_ray()
    started = _connect(ray, cfg.cluster, workers)
    try:
        resources = ray.cluster_resources()
        cpus = max(1, int(resources.get("CPU", 1)))
        gpus = 1 if resources.get("GPU", 0) >= 1 else 0
        threads = max(1, cpus // max(1, min(len(todo), cpus)))
        task = ray.remote(num_cpus=threads, num_gpus=gpus, max_retries=1)(_remote_part)
        frames = {}
        with progress(total, "frame", "convert", initial=done_frames) as bar:
            for seg in todo:
                frames[task.remote(cfg, seg, work, total, threads)] = seg
            pending = list(frames)
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                try:
                    record, video = ray.get(ready[0])
                except ray.exceptions.RayError as exc:
                    cause = getattr(exc, "cause", None)
                    if isinstance(cause, UserError):  # the task's own one-line error
                        raise UserError(str(cause)) from None
                    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                    raise UserError(f"a Ray task failed ({first}); the parts finished are "
                                    "kept: run the same command again to convert the rest") \
                        from None
                seg = frames[ready[0]]
                write_bytes(work.video(seg.number), video)
                write_json(work.record(seg.number), record)
                bar.update(seg.frames)
    finally:
        if started:
            ray.shutdown()
