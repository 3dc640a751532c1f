"""Fixed-budget quality protocol: extract both clips (cached), train, convert, evaluate, one row.

    python bench/quality.py [--pair b2a|a2b | --source VIDEO --target VIDEO] [--minutes 15]
                            [--name NAME] [--frames 40] [--model DIR | --resume]
                            [--sheet-frames 20,114,...] [-- TRAIN ARGS...]

b2a (default): person_b.mp4 is converted into person_a (train --a on person_b's faces,
--b on person_a's, convert person_b.mp4 a2b); a2b: person_a.mp4 into person_b. The clips
come from --facedata (default ../shared/facedata next to the repository). With --source
and --target any two videos: SOURCE is the person replaced (--a), TARGET the identity
rendered (--b).

1. extract: each clip once into --cache (default out/quality/faces), one folder per clip
   keyed by its name, size, mtime and the extract options; reused once complete;
2. train: `intracoder train --a A --b B --model OUT/model --minutes M` plus every argument
   this script does not know (or all after `--`, or --train-args "..."), verbatim; a fresh
   model folder unless --resume; --model DIR skips training and uses that model;
3. convert SOURCE with the defaults (plus --convert-args) into OUT/swapped.mp4;
4. evaluate --max-frames N into OUT/evaluation.json and OUT/report/;
5. OUT/sheet.png (source above swapped, one column per frame) and OUT/faces.png (the same
   frames cropped to the face, larger): the swapped face is judged by eye too;
6. one row, as a line and as a markdown row for docs/quality.md's ablation table, appended
   as JSON to out/quality/results.jsonl with the command, timings and the machine.

OUT is out/quality/<name>, name = --name or a slug of the train arguments. Every stage
runs as `python -m intracoder ...` in a subprocess, its output shown and kept in
OUT/logs/. A metric that this intracoder does not compute yet prints as "-".

Beside this script: quality_stages.py (running a stage, the extraction cache),
quality_sheet.py (sheet.png, faces.png), quality_row.py (the row, results.jsonl).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the helpers beside this script, also when loaded by path
    sys.path.append(str(HERE))

from quality_row import (append_record, git_head, human_row, machine,  # noqa: E402
                         markdown_row, metric_numbers, row_header, row_values, slug)
from quality_sheet import SHEET_COLUMNS, contact_sheets  # noqa: E402
from quality_stages import (ROOT, QualityError, cache_folder, cache_ready,  # noqa: E402
                            clean, extract_clip, read_state, run_main, run_stage)

sys.path.insert(0, str(ROOT))
FACEDATA = ROOT.parent / "shared" / "facedata"
QUALITY = ROOT / "out" / "quality"


PAIRS = {  # pair -> (source clip: the person replaced, target clip: the identity rendered)
    "b2a": ("person_b.mp4", "person_a.mp4"),
    "a2b": ("person_a.mp4", "person_b.mp4"),
}


# --------------------------------------------------------------------------- arguments

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], allow_abbrev=False,
        epilog="Arguments this script does not know, and everything after --, go to "
        "`intracoder train` verbatim, e.g. -- --preset quick --lr 5e-4.")
    g = p.add_argument_group("clips")
    g.add_argument("--pair", choices=sorted(PAIRS), default="b2a",
                   help="b2a: person_b.mp4 converted into person_a; a2b: the other way "
                   "(default: b2a)")
    g.add_argument("--facedata", default=str(FACEDATA),
                   help="folder with person_a.mp4 and person_b.mp4 (default: %(default)s)")
    g.add_argument("--source", help="any video: the person replaced (trained as --a)")
    g.add_argument("--target", help="any video: the identity rendered (trained as --b)")
    g = p.add_argument_group("extraction cache")
    g.add_argument("--cache", default=str(QUALITY / "faces"),
                   help="one folder of faces per clip and options (default: %(default)s)")
    g.add_argument("--size", type=int, default=256, help="crop size (default: 256)")
    g.add_argument("--largest", action=argparse.BooleanOptionalAction, default=True,
                   help="keep only the largest face of each frame (default: on)")
    g.add_argument("--extract-args", default="",
                   help='more `intracoder extract` options, one string (part of the cache '
                   'key): --extract-args="--face-type whole"')
    g = p.add_argument_group("training")
    g.add_argument("--minutes", type=float, default=15.0,
                   help="training budget in minutes (default: 15; 0: none, e.g. with "
                   "-- --iterations N)")
    g.add_argument("--train-args", default="",
                   help='`intracoder train` options as one string, with "=": '
                   '--train-args="--preset quick"')
    g.add_argument("--model", help="an already trained model folder: skip training")
    g.add_argument("--resume", action="store_true",
                   help="keep OUT/model and train it --minutes more (default: a fresh model)")
    g = p.add_argument_group("convert, evaluate, output")
    g.add_argument("--convert-args", default="",
                   help='`intracoder convert` options, one string: --convert-args="--color lct"')
    g.add_argument("--frames", type=int, default=40, help="frames scored (default: 40)")
    g.add_argument("--name", help="the row's name and OUT's (default: a slug of the train args)")
    g.add_argument("--out", help="output folder (default: out/quality/NAME)")
    g.add_argument("--results", default=str(QUALITY / "results.jsonl"),
                   help="JSON lines file every row is appended to (default: %(default)s)")
    g.add_argument("--sheet-frames",
                   help="comma-separated frame numbers for sheet.png / faces.png "
                   f"(default: {SHEET_COLUMNS} evenly spaced over the clip)")
    return p


def split_passthrough(argv: list[str]) -> tuple[list[str], list[str]]:
    """(this script's arguments, arguments for `intracoder train`): everything after the
    first bare ``--`` goes to train untouched."""
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return list(argv), []


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Parsed options and the train arguments, in order: --train-args, the unknown
    arguments, then everything after ``--``."""
    own, after = split_passthrough(argv)
    args, unknown = build_parser().parse_known_args(own)
    return args, shlex.split(args.train_args) + unknown + after


def check_stage_args(stage: str, words: list[str], fixed: tuple[str, ...] = (),
                     build_parser=None) -> None:
    """Reject options ``intracoder STAGE`` does not take, or takes from this script, before
    any extraction, instead of after minutes of it. ``build_parser``: intracoder's own
    (intracoder.cli.build_parser) unless given."""
    for word in words:
        if word.split("=")[0] in fixed:
            raise QualityError(f"{word.split('=')[0]} for {stage} is set by this script; "
                               "see --help")
    if not words:
        return
    if build_parser is None:
        from intracoder.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser = sub.choices[stage]

    def error(message: str):
        raise QualityError(f"arguments for intracoder {stage} {shlex.join(words)!r}: {message}")

    parser.error = error  # type: ignore[method-assign]
    positional = ["IN", "OUT"] if stage in ("convert", "extract") else []
    _, unknown = parser.parse_known_args([*positional, *words])
    if unknown:
        error(f"not an option of intracoder {stage}: {shlex.join(unknown)}")


def clips_of(args) -> tuple[Path, Path]:
    if bool(args.source) != bool(args.target):
        raise QualityError("--source and --target go together (or use --pair)")
    if args.source:
        source, target = Path(args.source), Path(args.target)
    else:
        names = PAIRS[args.pair]
        source, target = (Path(args.facedata) / n for n in names)
    for clip in (source, target):
        if not clip.is_file():
            raise QualityError(f"clip not found: {clip}")
    return source.resolve(), target.resolve()


def run(argv: list[str]) -> int:
    started = time.perf_counter()  # total includes checking the stage arguments
    args, train_args = parse_args(argv)
    if args.frames < 1:
        raise QualityError("--frames must be at least 1")
    if args.minutes < 0:
        raise QualityError("--minutes must be >= 0")
    if args.model and args.resume:
        raise QualityError("--model uses a trained model as it is; --resume trains OUT/model")
    source, target = clips_of(args)
    extract_extra = shlex.split(args.extract_args)
    convert_extra = shlex.split(args.convert_args)
    if args.model and train_args:
        raise QualityError(f"--model skips training, so {shlex.join(train_args)!r} would be "
                           "ignored")
    check_stage_args("train", train_args, ("--a", "--b", "--model", "--minutes"))
    check_stage_args("convert", convert_extra, ("--model",))
    check_stage_args("extract", extract_extra, ("--size", "--largest", "--no-largest"))
    budget = ["--minutes", f"{args.minutes:g}"] if args.minutes > 0 and not args.model else []
    shown_args = shlex.join(budget + train_args) if not args.model else f"(model {args.model})"
    model = Path(args.model).resolve() if args.model else None
    if args.name:
        name = args.name
    elif model is None:
        name = slug(train_args)
    else:  # out/quality/NAME/model is named after NAME
        name = "model-" + clean((model.parent if model.name == "model" else model).name)
    if "/" in name or name in ("", ".", "..", "faces"):
        raise QualityError(f"--name {name!r}: not usable as a folder name")
    out = Path(args.out).resolve() if args.out else QUALITY / name
    out.mkdir(parents=True, exist_ok=True)
    logs = out / "logs"
    timings: dict[str, float] = {}
    commands: dict[str, str] = {}

    def stage(key: str, words: list[str]) -> None:
        """`intracoder WORDS`, its command line and time kept for the record."""
        commands[key] = shlex.join(["intracoder", *words])
        start = time.perf_counter()
        run_stage(key, words, logs / f"{key}.log")
        timings[key] = time.perf_counter() - start

    # 1. extract (not needed for a given model: it knows its facesets)
    if model is not None:
        if read_state(model) is None:
            raise QualityError(f"{model}: no trained model there (no checkpoint/state.json)")
        folder = cache_folder(source, args, extract_extra)
        faces_source = folder if cache_ready(folder) else None
    else:
        faces_source = extract_clip(source, args, extract_extra, timings, logs)
        faces_target = extract_clip(target, args, extract_extra, timings, logs)
        timings.setdefault("extract", 0.0)

        # 2. train
        model = out / "model"
        if model.exists() and not args.resume:
            ours = (QUALITY in model.parents or read_state(model) is not None
                    or (model / "backups").is_dir())
            if any(model.iterdir()) and not ours:
                raise QualityError(f"{model}: exists and is not a model folder; "
                                   "move it away or pick another --name / --out")
            shutil.rmtree(model)
        stage("train", ["train", "--a", str(faces_source), "--b", str(faces_target),
                        "--model", str(model), *budget, *train_args])
        if read_state(model) is None:
            raise QualityError(f"train saved no checkpoint in {model}; see {logs / 'train.log'}")

    # 3. convert
    swapped = out / "swapped.mp4"
    stage("convert", ["convert", "--model", str(model), str(source), str(swapped),
                      *convert_extra])

    # 4. evaluate
    ev_json = out / "evaluation.json"
    stage("evaluate", ["evaluate", "--model", str(model), "--source", str(source),
                       "--swapped", str(swapped), "--max-frames", str(args.frames),
                       "--json", str(ev_json), "--report", str(out / "report")])
    try:
        evaluation = json.loads(ev_json.read_text())
    except (OSError, ValueError) as exc:
        raise QualityError(f"{ev_json}: unreadable after evaluate ({exc.__class__.__name__})") \
            from None
    summary = evaluation.get("summary", {})

    # 5. contact sheets
    start = time.perf_counter()
    sheet, faces_png = contact_sheets(source, swapped, out, args.sheet_frames, evaluation,
                                      faces_source)
    timings["sheets"] = time.perf_counter() - start
    timings["total"] = time.perf_counter() - started

    # 6. the row
    state = read_state(model)
    cells = row_values(name, shown_args, state, summary)
    record = {
        "timestamp": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": shlex.join([sys.executable, str(Path(__file__).resolve()), *argv]),
        "cwd": os.getcwd(), "git": git_head(), "machine": machine(),
        "name": name, "pair": None if args.source else args.pair,
        "source": str(source), "target": str(target), "train_args": train_args,
        "minutes": None if args.model else args.minutes, "frames": args.frames,
        "stages": commands,
        "backend": (state or {}).get("backend"),
        "iteration": (state or {}).get("iteration"),
        "train_seconds": (state or {}).get("train_seconds"),
        "metrics": metric_numbers(summary),
        "row": dict(zip(row_header(), cells)), "markdown": markdown_row(cells),
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "paths": {"out": str(out), "model": str(model), "swapped": str(swapped),
                  "evaluation": str(ev_json), "report": str(out / "report" / "index.html"),
                  "sheet": str(sheet), "faces": str(faces_png)},
    }
    results = Path(args.results)
    append_record(results, record)

    print("\n== quality")
    print(human_row(cells))
    print(markdown_row(row_header()))
    print("|" + "---|" * len(cells))
    print(markdown_row(cells))
    print(f"out: {out}  (sheet.png, faces.png, swapped.mp4, evaluation.json, report/index.html)")
    print(f"row appended to {results}")
    print("timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
          + (" (faces cached)" if not timings.get("extract") and not args.model else ""))
    return 0


def main() -> int:
    return run_main("quality", run, sys.argv[1:], "interrupted; finished stages are kept")


if __name__ == "__main__":
    raise SystemExit(main())
