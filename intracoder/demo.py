"""The built-in demo: two clips rendered from real bundled portraits, run through the
workflow stage by stage, with every output's location printed at the end."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from intracoder.faces.extract import ExtractConfig, FaceFinder, extract
from intracoder.samples import render_clip, write_clip

PERSON_A = "grace_hopper"
PERSON_B = "astronaut"


@dataclass(frozen=True)
class DemoConfig:
    out: str = field(default="demo_out", metadata={"help": "folder for everything the demo makes"})
    frames: int = field(default=48, metadata={"help": "frames per rendered clip"})
    clip_size: int = field(default=256, metadata={"help": "rendered clip width and height"})
    face_size: int = field(default=128, metadata={"help": "aligned crop size"})


def render_inputs(cfg: DemoConfig, out: Path) -> dict[str, Path]:
    clips = {}
    for side, name, seed in (("a", PERSON_A, 0), ("b", PERSON_B, 1)):
        path = out / ("source.mp4" if side == "a" else "person_b.mp4")
        if not path.exists():
            write_clip(render_clip(name, n_frames=cfg.frames, size=cfg.clip_size, seed=seed).frames,
                       path)
        clips[side] = path
    return clips


def run_demo(cfg: DemoConfig) -> dict[str, Path]:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    made = {}
    clips = render_inputs(cfg, out)
    made["clip of person A (source)"] = clips["a"]
    made["clip of person B"] = clips["b"]
    finder = FaceFinder(largest=True)
    for side in ("a", "b"):
        faces = out / f"faces_{side}"
        summary = extract(ExtractConfig(input=str(clips[side]), out_dir=str(faces),
                                        size=cfg.face_size, largest=True), finder=finder)
        print(f"extract {side}: {summary.line()}")
        made[f"faces of person {side.upper()}"] = faces
    print("\ndemo outputs:")
    for what, path in made.items():
        print(f"  {what:28s} {path}")
    return made
