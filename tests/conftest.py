"""Shared fixtures: real faces from the bundled portraits, and ../shared/facedata when present."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

os.environ.setdefault("INTRACODER_NO_PROGRESS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# ../shared/facedata beside the checkout; INTRACODER_FACEDATA points elsewhere (a CI runner
# whose clone does not sit next to it).
FACEDATA = Path(os.environ.get("INTRACODER_FACEDATA")
                or Path(__file__).resolve().parents[1].parent / "shared" / "facedata")


BENCH = Path(__file__).resolve().parents[1] / "bench"


def load_bench(name: str):
    """bench/NAME.py, loaded by path (bench/ is not a package; the script puts bench/ on
    sys.path itself, so its helpers import by name afterwards)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def facedata() -> Path:
    if not (FACEDATA / "person_a.mp4").exists():
        pytest.skip("../shared/facedata is not present")
    return FACEDATA


@pytest.fixture(scope="session")
def finder():
    """MTCNN + face mesh, loaded once for the whole session."""
    from intracoder.faces.extract import FaceFinder

    return FaceFinder()


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> dict[str, Path]:
    """Short H.264 clips rendered from the two bundled portraits (moving, zooming,
    rotating +-20 degrees, lighting changes)."""
    from intracoder.samples import render_clip, write_clip

    root = tmp_path_factory.mktemp("clips")
    out = {}
    for name in ("grace_hopper", "astronaut"):
        clip = render_clip(name, n_frames=12, size=256, seed=1)
        write_clip(clip.frames, root / f"{name}.mp4")
        out[name] = root / f"{name}.mp4"
    return out


@pytest.fixture(scope="session")
def facesets(tmp_path_factory, clips, finder) -> tuple[Path, Path]:
    """(dir_a, dir_b): 12 aligned 128-px crops each, A = grace_hopper, B = astronaut."""
    from intracoder.faces.extract import ExtractConfig, extract

    root = tmp_path_factory.mktemp("facesets")
    dirs = []
    for side, name in (("a", "grace_hopper"), ("b", "astronaut")):
        out = root / side
        extract(ExtractConfig(input=str(clips[name]), out_dir=str(out), size=128, largest=True),
                finder=finder)
        dirs.append(out)
    return dirs[0], dirs[1]


@pytest.fixture(scope="session")
def quick_model(tmp_path_factory, facesets) -> Path:
    """A quick-preset model (64 px) trained for a few seconds on ``facesets``: A =
    grace_hopper, B = astronaut. Its swaps are crude, but it has every part a real model
    has, so convert runs exactly as it would on a well-trained one."""
    from intracoder.training.config import TrainConfig
    from intracoder.training.loop import train

    model_dir = tmp_path_factory.mktemp("quick_model") / "model"
    train(TrainConfig(a=str(facesets[0]), b=str(facesets[1]), model=str(model_dir),
                      preset="quick", arch="df", resolution=64, iterations=12, batch_size=4,
                      lr=5e-4, preview_every=0, autosave_minutes=0,
                      # Fixed iterations, judged after: the same float32 on every CPU (auto
                      # picks bf16 where the CPU has it, which moves every figure).
                      mixed_precision="off"), {})
    return model_dir
