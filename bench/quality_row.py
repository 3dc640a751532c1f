"""bench/quality.py's row: its name, its cells (a line and a markdown row for
docs/quality.md's ablation table), and the JSON record appended to results.jsonl."""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import subprocess
from pathlib import Path

from quality_stages import ROOT, clean

# (column, dotted key in evaluation.json's summary, format). None / missing -> "-".
METRICS = (
    ("id dist", "identity.swapped.mean_distance_to_target", "{:.3f}"),
    ("<0.6", "identity.swapped.share_under_threshold", "{:.0%}"),
    ("retrieval", "identity.swapped.retrieval", "{:.0%}"),
    ("expr 468", "expression.landmark_error_iod", "{:.3f}"),
    ("expr dlib5", "expression.dlib5_error_iod", "{:.3f}"),
    ("sharpness", "sharpness_ratio", "{:.2f}"),
    ("sharp dlib", "sharpness_ratio_dlib_box", "{:.2f}"),
    ("flicker", "temporal_stability", "{:.2f}"),
    ("seam", "seam_score", "{:.3g}"),
    ("colour", "colour_error_lab", "{:.1f}"),
)


# --------------------------------------------------------------------------- name

def slug(words: list[str]) -> str:
    """A folder name from train arguments: '--preset quick --lr 5e-4' -> 'preset-quick_lr-5e-4'."""
    return ("_".join(_pairs(words)) or "defaults")[:80]


def _is_flag(word: str) -> bool:
    return word.startswith("-") and not _is_number(word)


def _is_number(word: str) -> bool:
    try:
        float(word)
        return True
    except ValueError:
        return False


def _pairs(words: list[str]) -> list[str]:
    """['--preset', 'quick', '--flip'] -> ['preset-quick', 'flip']."""
    out: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        if _is_flag(w):
            key, _, value = w.lstrip("-").partition("=")
            if not value and i + 1 < len(words) and not _is_flag(words[i + 1]):
                value = words[i + 1]
                i += 1
            sign = "-" if value.startswith("-") else ""  # --rotation -10: 'rotation--10'
            out.append(clean(key) + (f"-{sign}{clean(value)}" if value else ""))
        else:
            out.append(clean(w))
        i += 1
    return [w for w in out if w]


# --------------------------------------------------------------------------- cells

def lookup(data: dict | None, dotted: str):
    """``data['a']['b']`` for 'a.b'; None when any part is missing."""
    cur = data
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def fmt(value, pattern: str) -> str:
    if value is None or isinstance(value, bool):
        return "-"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    try:
        return pattern.format(value)
    except (TypeError, ValueError):
        return str(value)


def row_values(name: str, train_args: str, state: dict | None, summary: dict | None) -> list[str]:
    state = state or {}
    cells = [name, train_args or "(defaults)", fmt(state.get("iteration"), "{:d}"),
             fmt(state.get("train_seconds"), "{:.0f}")]
    return cells + [fmt(lookup(summary, key), pattern) for _, key, pattern in METRICS]


def row_header() -> list[str]:
    return ["name", "train args", "iterations", "train s"] + [col for col, _, _ in METRICS]


def markdown_row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def human_row(cells: list[str]) -> str:
    head = row_header()
    return f"{cells[0]} [{cells[1]}]: " + ", ".join(f"{h} {c}" for h, c in zip(head[2:], cells[2:]))


# --------------------------------------------------------------------------- results.jsonl

def metric_numbers(summary: dict | None) -> dict:
    return {key: lookup(summary, key) for _, key, _ in METRICS}


def strict_json(obj):
    """NaN / infinity -> None, so every line is JSON that any reader parses."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    return obj


def append_record(results: Path, record: dict) -> None:
    """``record`` as one line of strict JSON at the end of ``results``."""
    results.parent.mkdir(parents=True, exist_ok=True)
    with open(results, "a") as f:
        f.write(json.dumps(strict_json(record)) + "\n")


def git_head() -> str | None:
    """The repository's short HEAD, '+dirty' with uncommitted changes to tracked files."""
    try:
        res = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                             capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, capture_output=True, text=True, timeout=10)
        head = res.stdout.strip()
        return (head + ("+dirty" if dirty.stdout.strip() else "")) if head else None
    except (OSError, subprocess.SubprocessError):
        return None


def machine() -> dict:
    info = {"cpu_count": os.cpu_count(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "node": platform.node(),
            "keras_backend_env": os.environ.get("KERAS_BACKEND")}
    with contextlib.suppress(OSError):
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return info
