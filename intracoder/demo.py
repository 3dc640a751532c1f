"""The built-in demo: two clips rendered from real bundled portraits, run through the whole
workflow (extract, train, convert, evaluate), with every output's location printed.

Person A is matplotlib's grace_hopper.jpg, person B scikit-image's astronaut. The default
budget keeps the whole run within 10 minutes on a 2-core CPU.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from intracoder.errors import UserError
from intracoder.faces.extract import ExtractConfig, FaceFinder, extract
from intracoder.samples import render_clip, write_clip

PERSON_A = "grace_hopper"
PERSON_B = "astronaut"


@dataclass(frozen=True)
class DemoConfig:
    out: str = field(default="demo_out", metadata={"help": "folder for everything the demo makes"})
    minutes: float = field(default=6.0, metadata={"help": "training budget in minutes"})
    iterations: int | None = field(default=None, metadata={
        "help": "train this many iterations instead of for --minutes (the same work on any "
        "machine, as the tests need)"})
    frames: int = field(default=48, metadata={"help": "frames per rendered clip"})
    clip_size: int = field(default=256, metadata={"help": "rendered clip width and height"})
    face_size: int = field(default=128, metadata={"help": "aligned crop size"})
    batch_size: int | None = field(default=None, metadata={
        "help": "faces per side per training step; none: the quick preset's"})
    # Not quick's 1e-3: on the demo's clips (stills moved, 6 minutes, no priority) 1e-3 gave
    # the same identity (0.340 vs 0.339) and a worse landmark error (0.076 vs 0.070) than 5e-4
    # (docs/quality.md, "The demo").
    lr: float | None = field(default=5e-4, metadata={
        "help": "peak learning rate; none: the quick preset's"})
    mixed_precision: str = field(default="auto", metadata={
        "help": "training precision, as train's --mixed-precision",
        "choices": ["auto", "off", "bf16", "fp16"]})
    seed: int = field(default=0, metadata={"help": "seed of batch order and augmentation"})


def render_inputs(cfg: DemoConfig, out: Path) -> dict[str, Path]:
    clips = {}
    for side, name, seed in (("a", PERSON_A, 0), ("b", PERSON_B, 1)):
        path = out / ("source.mp4" if side == "a" else "person_b.mp4")
        if not path.exists():
            clip = render_clip(name, n_frames=cfg.frames, size=cfg.clip_size, seed=seed)
            write_clip(clip.frames, path)
        clips[side] = path
    return clips


def run_demo(cfg: DemoConfig) -> dict[str, Path]:
    from intracoder.convert.pipeline import ConvertConfig, convert
    from intracoder.metrics.evaluate import EvaluateConfig, evaluate, summary_lines
    from intracoder.training.config import TrainConfig
    from intracoder.training.loop import train

    if cfg.minutes <= 0:
        raise UserError("--minutes must be positive")
    if cfg.iterations is not None and cfg.iterations < 1:
        raise UserError("--iterations must be at least 1")
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    clips = render_inputs(cfg, out)
    finder = FaceFinder(largest=True)
    faces = {}
    for side in ("a", "b"):
        faces[side] = out / f"faces_{side}"
        summary = extract(ExtractConfig(input=str(clips[side]), out_dir=str(faces[side]),
                                        size=cfg.face_size, largest=True), finder=finder)
        print(f"extract {side.upper()}: {summary.line()}")

    model_dir = out / "model"
    budget = ({"iterations": cfg.iterations} if cfg.iterations is not None
              else {"minutes": cfg.minutes})
    what = f"{cfg.iterations} iterations" if cfg.iterations else f"{cfg.minutes:g} minutes"
    print(f"train: quick preset for {what} (resumes if {model_dir} exists)")
    train(TrainConfig(a=str(faces["a"]), b=str(faces["b"]), model=str(model_dir), preset="quick",
                      batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed,
                      mixed_precision=cfg.mixed_precision, **budget,
                      # The clips are rendered from still portraits: no expression to keep,
                      # so eyes/mouth priority would only slow identity in a minutes budget.
                      eyes_mouth_priority=False,
                      preview_every=100, autosave_minutes=0),
          budget)
    for name in ("preview.png", "loss.png"):
        if (model_dir / name).exists():
            shutil.copyfile(model_dir / name, out / name)

    swapped = out / "swapped.mp4"
    result = convert(ConvertConfig(input=str(clips["a"]), output=str(swapped), model=str(model_dir),
                                   direction="a2b", label="synthetic (intracoder demo)"),
                     finder=finder)
    print(f"convert: {result.line()}")
    scores = evaluate(EvaluateConfig(model=str(model_dir), source=str(clips["a"]),
                                     swapped=str(swapped), json=str(out / "evaluation.json"),
                                     report=str(out / "report")), finder=finder)
    print("\n".join(summary_lines(scores)))
    made = {
        "clip of person A (source)": clips["a"],
        "clip of person B": clips["b"],
        "faces of A / B": Path(f"{faces['a']} / {faces['b']}"),
        "trained model": model_dir,
        "training preview": out / "preview.png",
        "loss plot": out / "loss.png",
        "A converted to B": swapped,
        "evaluation numbers": out / "evaluation.json",
        "evaluation report": out / "report" / "index.html",
    }
    print("\ndemo outputs (every converted file is marked as synthetic; check with "
          "`intracoder verify`):")
    for what, path in made.items():
        print(f"  {what:27s} {path}")
    return made
