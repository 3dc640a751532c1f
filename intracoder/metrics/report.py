"""The evaluate report: an HTML page with per-frame plots and a strip of frames."""

from __future__ import annotations

import html
import json
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from intracoder.atomic import atomic_path, write_bytes  # noqa: E402
from intracoder.metrics.identity import SAME_PERSON  # noqa: E402


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)


def identity_plot(frames: list[dict], path: Path, target: str, source: str) -> None:
    fig, ax = plt.subplots(figsize=(8, 3.2))
    x = [f["frame"] for f in frames]
    for key, label, style in (("dist_b", f"swapped → {target}", "-"),
                              ("dist_a", f"swapped → {source}", "--"),
                              ("source_dist_b", f"source → {target}", ":")):
        y = [np.nan if f[key] is None else f[key] for f in frames]
        ax.plot(x, y, style, label=label)
    ax.axhline(SAME_PERSON, color="grey", lw=0.8)
    ax.text(x[0] if x else 0, SAME_PERSON + 0.01, "same-person threshold", fontsize=8, color="grey")
    ax.set_xlabel("frame")
    ax.set_ylabel("identity distance (L2)")
    ax.set_title("Identity: distance to each person's mean face embedding (lower = closer)")
    ax.legend(fontsize=8, loc="upper right")
    _save(fig, path)


def landmark_plot(frames: list[dict], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 3.2))
    x = [f["frame"] for f in frames]
    ax.plot(x, [np.nan if f["landmark_error"] is None else f["landmark_error"] for f in frames])
    ax.set_xlabel("frame")
    ax.set_ylabel("mean landmark error / IOD")
    ax.set_title("Expression and pose kept: 468-point distance, swapped vs. source")
    _save(fig, path)


def frame_strip(source: list[np.ndarray], swapped: list[np.ndarray], path: Path, n: int = 6) -> None:
    picks = np.unique(np.linspace(0, len(source) - 1, min(n, len(source))).round().astype(int))
    h = 256
    cols = []
    for i in picks:
        pair = [cv2.resize(im, (round(im.shape[1] * h / im.shape[0]), h)) for im in (source[i], swapped[i])]
        cols.append(np.vstack(pair))
    strip = np.hstack(cols)
    with atomic_path(path) as tmp:
        cv2.imwrite(str(tmp), strip)


def write_report(folder: Path, result: dict, source: list[np.ndarray], swapped: list[np.ndarray]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    frames = result["frames"]
    target, src_side = result["direction"][-1].upper(), result["direction"][0].upper()
    identity_plot(frames, folder / "identity.png", f"person {target}", f"person {src_side}")
    landmark_plot(frames, folder / "landmarks.png")
    frame_strip(source, swapped, folder / "frames.png")
    summary = json.dumps(result["summary"], indent=1)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>intracoder evaluation</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto}}pre{{background:#f4f4f4;padding:1em}}</style>
</head><body>
<h1>Swap evaluation</h1>
<p><b>This report describes synthetic (face-swapped) media made with intracoder.</b></p>
<p>Model: {html.escape(result['model']['path'])}, iteration {result['model']['iteration']};
source {html.escape(result['inputs']['source'])}; swapped {html.escape(result['inputs']['swapped'])}.</p>
<h2>Summary</h2><pre>{html.escape(summary)}</pre>
<h2>Identity per frame</h2><img src="identity.png" width="100%">
<h2>Expression and pose per frame</h2><img src="landmarks.png" width="100%">
<h2>Frames (top: source, bottom: swapped)</h2><img src="frames.png" width="100%">
</body></html>"""
    write_bytes(folder / "index.html", page.encode())
    return folder / "index.html"
