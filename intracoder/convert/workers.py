"""Where the parts of a video are converted: worker processes on this machine, or Ray tasks
on a cluster (``--cluster``). Either way each worker loads the model and the detector once
and converts part after part with its share of the cores; progress over all workers is one
bar with rate and ETA.

Workers are spawned, not forked (TensorFlow does not survive a fork), and ignore Ctrl-C: the
main process takes it, stops the pool and keeps every part already finished for the resume.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from intracoder.errors import UserError
from intracoder.progress import progress

# Set by a test to make the worker converting this part die part-way (os._exit), as a worker
# killed by the system would: the run must fail cleanly and the rerun convert only the rest.
FAULT_ENV = "INTRACODER_FAULT_PART"

_job = None  # the worker process's loaded model and detector
_queue = None  # where a local worker reports frames done
_threads: int | None = None


def threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def _limit_threads(threads: int) -> None:
    """This process's share of the cores, for every library that would take them all."""
    global _threads
    _threads = threads
    os.environ["INTRACODER_THREADS"] = str(threads)  # convert.swap's paste pool
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ.setdefault("INTRACODER_NO_PROGRESS", "1")
    import cv2

    cv2.setNumThreads(threads)
    from intracoder.quiet import import_backend, import_tensorflow

    tf = import_tensorflow()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # already initialised in this process: it keeps its pools
        pass
    import_backend()  # Keras, with its native start-up notices silenced as in the CLI


def _worker_init(threads: int, queue) -> None:
    global _queue
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _queue = queue
    _limit_threads(threads)


def _job_for(cfg):
    global _job
    if _job is None or _job.cfg != cfg:
        from intracoder.convert.pipeline import load_job

        _job = load_job(cfg)
    return _job


def _advance(frames: int) -> None:
    if _queue is not None:
        _queue.put(frames)


def _fault(seg) -> None:
    if os.environ.get(FAULT_ENV) == str(seg.number):
        os._exit(3)


def _local_part(cfg, seg, work, total):
    from intracoder.convert.segments import convert_part

    job = _job_for(cfg)

    def advance(frames: int) -> None:
        _advance(frames)
        _fault(seg)

    return convert_part(job, cfg, seg, work, total, advance, _threads)


def run_parts(cfg, todo, work, total: int, done_frames: int, workers: int, finder=None,
              loaded=None) -> None:
    """Convert the parts ``todo`` into ``work``; returns once every one is done."""
    if not todo:
        return
    if cfg.cluster:
        from intracoder.convert.cluster import run_on_ray

        run_on_ray(cfg, todo, work, total, done_frames, workers)
        return
    workers = min(workers, len(todo))
    with progress(total, "frame", "convert", initial=done_frames) as bar:
        if workers == 1:  # no process to start: convert here, with what the caller loaded
            from intracoder.convert.pipeline import load_job
            from intracoder.convert.segments import convert_part

            job = load_job(cfg, finder, loaded)
            for seg in todo:
                convert_part(job, cfg, seg, work, total, bar.update)
            return
        _run_pool(cfg, todo, work, total, workers, bar)


def _run_pool(cfg, todo, work, total, workers, bar) -> None:
    context = multiprocessing.get_context("spawn")
    manager = context.Manager()
    queue = manager.Queue()
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init,
                               initargs=(threads_per_worker(workers), queue))
    try:
        pending = {pool.submit(_local_part, cfg, seg, work, total) for seg in todo}
        while pending:
            finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            while not queue.empty():
                bar.update(queue.get_nowait())
            for future in finished:
                future.result()  # a part's UserError is the run's
    except KeyboardInterrupt:
        # Running parts would otherwise finish first; the finished ones stay for the resume.
        for process in list(getattr(pool, "_processes", {}).values()):
            process.terminate()
        raise
    except BrokenProcessPool:
        raise UserError("a convert worker stopped unexpectedly (killed, or out of memory); "
                        "the parts it finished are kept: run the same command again to "
                        "convert the rest") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        manager.shutdown()
