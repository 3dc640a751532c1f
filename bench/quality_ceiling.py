"""The ceiling of bench/quality.py's image figures at a model resolution.

    python bench/quality_ceiling.py --model out/quality/NAME/model [--source VIDEO]
                                    [--resolutions 128,160,192,256] [--frames 40]
                                    [--convert-args "--sharpen 0"]

A trained model's swap can be no sharper than the source face itself cut, shrunk to the
model's resolution and pasted back. This script converts with a stand-in for the model that
returns the face it is given (and a full mask), through the real convert path (cut, INTER_AREA
shrink, colour transfer, sharpening, inverse warp, mask, Poisson blend), then runs
`intracoder evaluate`, once per resolution. Its sharpness figures are what a perfect model of
that resolution would score; flicker and seam show what the path alone adds. A trained
model's sharpness divided by its resolution's ceiling says how much of the gap is training
and how much is resolution.

--model is any trained model folder: its state gives the face type and the decoder; its
weights are not loaded. --source defaults to the clip the model's A faces came from when that
is person_b.mp4 or person_a.mp4 in --facedata, else give it. Rows go to stdout (a markdown
row each) and OUT/ceiling.json (OUT: out/quality/ceiling unless --out).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.append(str(HERE))

from quality_row import METRICS, fmt, lookup, markdown_row  # noqa: E402
from quality_stages import ROOT, QualityError, read_state, run_main, run_stage  # noqa: E402

sys.path.insert(0, str(ROOT))
FACEDATA = ROOT.parent / "shared" / "facedata"

# The image figures of bench/quality.py's row: identity and expression are the source's own.
COLUMNS = tuple(m for m in METRICS if m[0] in ("sharpness", "sharp dlib", "flicker", "seam",
                                                "colour"))


class SourceFace:
    """Stands in for a SwapModel in convert: decode returns its input face unchanged, with a
    mask that covers the whole crop (so the face hull alone shapes the paste)."""

    def __init__(self, config):
        self.config = config

    def decode(self, faces: np.ndarray, decoder: str, batch_size: int = 32):
        faces = np.asarray(faces)
        rgb = faces.astype(np.float32) / 255.0 if faces.dtype == np.uint8 else \
            faces.astype(np.float32)
        return rgb, np.ones(rgb.shape[:3] + (1,), np.float32)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a trained model folder (state only is read)")
    p.add_argument("--source", help="the video to convert (default: see above)")
    p.add_argument("--facedata", default=str(FACEDATA))
    p.add_argument("--resolutions", default="128,160,192,256",
                   help="comma-separated model resolutions to measure")
    p.add_argument("--frames", type=int, default=40, help="evaluate --max-frames")
    p.add_argument("--convert-args", default="",
                   help='`intracoder convert` options, one string: --convert-args="--sharpen 0"')
    p.add_argument("--out", help="output folder (default out/quality/ceiling)")
    return p


def default_source(state: dict, facedata: Path) -> Path:
    """The clip the model's A faces were extracted from, if it is one of the two clips."""
    faces_a = str(state.get("facesets", {}).get("a", {}).get("path", ""))
    for clip in ("person_a", "person_b"):
        if clip.replace("_", "-") in Path(faces_a).name and (facedata / f"{clip}.mp4").is_file():
            return facedata / f"{clip}.mp4"
    raise QualityError("--source is needed: the model's A faces are not from a known clip")


def convert_at(model: Path, state: dict, source: Path, res: int, convert_args: list[str],
               swapped: Path, finder=None) -> None:
    """`intracoder convert --model MODEL SOURCE SWAPPED CONVERT_ARGS` with the source faces,
    cut and shrunk to ``res`` px, in place of the model's output."""
    from intracoder.cli import build_parser as intracoder_parser
    from intracoder.config import from_args
    from intracoder.convert.pipeline import ConvertConfig, convert
    from intracoder.models.config import ModelConfig

    args = intracoder_parser().parse_args(["convert", "--model", str(model), str(source),
                                           str(swapped), *convert_args])
    config = dataclasses.replace(ModelConfig(**state["model_config"]), resolution=res)
    convert(from_args(ConvertConfig, args), finder, loaded=(SourceFace(config), state))


def ceiling_row(model: Path, state: dict, source: Path, res: int, convert_args: list[str],
                frames: int, out: Path) -> dict:
    """Convert ``source`` with the source faces at ``res`` px, evaluate, return the summary."""
    swapped = out / f"r{res}.mp4"
    print(f"\n== convert at {res} px: {shlex.join(['intracoder convert', *convert_args])}",
          flush=True)
    convert_at(model, state, source, res, convert_args, swapped)
    ev_json = out / f"r{res}.json"
    run_stage(f"evaluate {res}", ["evaluate", "--model", str(model), "--source", str(source),
                                  "--swapped", str(swapped), "--max-frames", str(frames),
                                  "--json", str(ev_json)], out / "logs" / f"evaluate{res}.log")
    return json.loads(ev_json.read_text()).get("summary", {})


def run(argv: list[str]) -> int:
    from intracoder.atomic import write_json

    args = build_parser().parse_args(argv)
    model = Path(args.model).resolve()
    state = read_state(model)
    if state is None:
        raise QualityError(f"{model}: no trained model there (no checkpoint/state.json)")
    try:
        resolutions = [int(r) for r in args.resolutions.split(",") if r.strip()]
    except ValueError:
        raise QualityError(f"--resolutions {args.resolutions!r}: integers, comma-separated") \
            from None
    if not resolutions or min(resolutions) < 16 or args.frames < 1:
        raise QualityError("--resolutions must be at least 16 px and --frames at least 1")
    source = Path(args.source) if args.source else default_source(state, Path(args.facedata))
    if not source.is_file():
        raise QualityError(f"clip not found: {source}")
    out = Path(args.out).resolve() if args.out else ROOT / "out" / "quality" / "ceiling"
    out.mkdir(parents=True, exist_ok=True)
    convert_args = shlex.split(args.convert_args)
    rows = []
    for res in resolutions:
        summary = ceiling_row(model, state, source, res, convert_args, args.frames, out)
        rows.append({"resolution": res, "convert_args": convert_args, "summary": summary})
    header = ["resolution", "convert args", *(c[0] for c in COLUMNS)]
    print("\n== ceiling: the source face at each resolution, through the convert path")
    print(markdown_row(header) + "\n|" + "---|" * len(header))
    for row in rows:
        print(markdown_row([str(row["resolution"]), shlex.join(convert_args) or "(defaults)",
                            *(fmt(lookup(row["summary"], key), pattern)
                              for _, key, pattern in COLUMNS)]))
    write_json(out / "ceiling.json",
               {"model": str(model), "source": str(source), "frames": args.frames, "rows": rows})
    print(f"out: {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main("quality_ceiling", run, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
