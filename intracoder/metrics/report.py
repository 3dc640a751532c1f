"""The evaluate report: an HTML page that reads as a report. A table with one row per figure
(value, source baseline, what it means, which way is better), per-frame plots, a strip of
frames, a short side-by-side animation (GIF), and the raw numbers collapsed at the bottom.
Everything is local: no script, font or style is loaded from elsewhere."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from intracoder.atomic import atomic_path, write_bytes  # noqa: E402
from intracoder.identity.embedding import SAME_PERSON  # noqa: E402


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
        ax.plot(x, _series(frames, key), style, label=label)
    ax.axhline(SAME_PERSON, color="grey", lw=0.8)
    ax.text(x[0] if x else 0, SAME_PERSON + 0.01, "same-person threshold", fontsize=8, color="grey")
    ax.set_xlabel("frame")
    ax.set_ylabel("identity distance (L2)")
    ax.set_title("Identity: distance to each person's mean face embedding (lower = closer)")
    ax.legend(fontsize=8, loc="upper right")
    _save(fig, path)


def _series(frames: list[dict], key: str) -> list[float]:
    return [np.nan if f.get(key) is None else f[key] for f in frames]


def landmark_plot(frames: list[dict], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 3.2))
    x = [f["frame"] for f in frames]
    ax.plot(x, _series(frames, "landmark_error"), label="468-point mesh")
    if any(f.get("dlib5_error") is not None for f in frames):
        ax.plot(x, _series(frames, "dlib5_error"), "--", label="dlib 5 points")
        ax.legend(fontsize=8, loc="upper right")
    ax.set_xlabel("frame")
    ax.set_ylabel("mean landmark error / IOD")
    ax.set_title("Expression and pose kept: landmark distance, swapped vs. source (lower = better)")
    _save(fig, path)


def quality_plot(frames: list[dict], path: Path) -> None:
    """Per-frame sharpness ratio and seam score; both are 1.0 for an untouched frame."""
    fig, ax = plt.subplots(figsize=(8, 3.2))
    x = [f["frame"] for f in frames]
    ax.plot(x, _series(frames, "sharpness_ratio"), label="sharpness, swapped / source (< 1 = blurrier)")
    ax.plot(x, _series(frames, "seam_score"), "--", label="seam, edge added at the boundary (> 1 = visible)")
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xlabel("frame")
    ax.set_ylabel("ratio (1 = as the source)")
    ax.set_title("Image quality: sharpness of the face and visibility of the blend seam")
    ax.legend(fontsize=8, loc="best")
    _save(fig, path)


REPORT_HEIGHT = 256  # px, of the strip's and the GIF's frames
GIF_FRAMES = 40


def report_picks(n: int) -> set[int]:
    """Which of ``n`` scored frames the report shows (0-based): the GIF's evenly spaced
    ones; the frame strip picks among them, so evaluate need keep only these."""
    return {int(i) for i in np.unique(np.linspace(0, max(n, 1) - 1, min(GIF_FRAMES, max(n, 1)))
                                      .round().astype(int))}


def thumbnail(image: np.ndarray) -> np.ndarray:
    """A copy of ``image`` no taller than the report shows it: the report's frames are kept
    through a whole evaluation, and forty full 1080p pairs would be half a gigabyte."""
    h, w = image.shape[:2]
    if h <= REPORT_HEIGHT:
        return image.copy()
    size = (max(1, round(w * REPORT_HEIGHT / h)), REPORT_HEIGHT)
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _pair(src: np.ndarray, sw: np.ndarray, h: int) -> np.ndarray:
    return np.hstack([cv2.resize(im, (max(1, round(im.shape[1] * h / im.shape[0])), h),
                                 interpolation=cv2.INTER_AREA) for im in (src, sw)])


def frame_strip(source: list[np.ndarray], swapped: list[np.ndarray], path: Path, n: int = 6) -> None:
    picks = np.unique(np.linspace(0, len(source) - 1, min(n, len(source))).round().astype(int))
    h = REPORT_HEIGHT
    cols = []
    for i in picks:
        pair = [cv2.resize(im, (round(im.shape[1] * h / im.shape[0]), h)) for im in (source[i], swapped[i])]
        cols.append(np.vstack(pair))
    strip = np.hstack(cols)
    with atomic_path(path) as tmp:
        cv2.imwrite(str(tmp), strip)


def side_by_side_gif(source: list[np.ndarray], swapped: list[np.ndarray], path: Path,
                     n: int = GIF_FRAMES, height: int = REPORT_HEIGHT,
                     duration_ms: int = 100) -> None:
    """An animated GIF of up to ``n`` evenly spaced frames, source | swapped, ``height`` px."""
    from PIL import Image

    picks = np.unique(np.linspace(0, len(source) - 1, min(n, len(source))).round().astype(int))
    images = [Image.fromarray(np.ascontiguousarray(_pair(source[i], swapped[i], height)[..., ::-1]))
              for i in picks]
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                       duration=duration_ms, loop=0)


def _num(v, fmt: str = "{:.3f}") -> str:
    if v is None:
        return "—"
    if isinstance(v, float) and not math.isfinite(v):
        return "n/a"
    return fmt.format(v)


def summary_rows(result: dict) -> list[tuple[str, str, str, str, str]]:
    """(figure, swapped value, source baseline, what it means, which way is better) per row."""
    s = result["summary"]
    ident = s.get("identity", {})
    sw, base = ident.get("swapped", {}), ident.get("source_baseline", {})
    target, origin = result["direction"][-1].upper(), result["direction"][0].upper()
    e = s.get("expression", {})
    pct = "{:.0%}"
    one = "1 (by definition)"
    rows = [
        ("identity distance to target", _num(sw.get("mean_distance_to_target")),
         _num(base.get("mean_distance_to_target")),
         f"L2 distance of the face's dlib embedding to the mean face of person {target}",
         f"lower is better; under {SAME_PERSON} = same person"),
        ("identity distance to source", _num(sw.get("mean_distance_to_source")),
         _num(base.get("mean_distance_to_source")),
         f"L2 distance to the mean face of person {origin}, the one replaced",
         f"higher is better; over {SAME_PERSON} = no longer the same person"),
        (f"share under {SAME_PERSON}", _num(sw.get("share_under_threshold"), pct),
         _num(base.get("share_under_threshold"), pct),
         f"frames in which the face passes as person {target}", "higher is better"),
        ("retrieval", _num(sw.get("retrieval"), pct), _num(base.get("retrieval"), pct),
         f"frames in which the face is closer to person {target} than to {origin}", "higher is better"),
        ("468-pt expression error", _num(e.get("landmark_error_iod")), "0 (by definition)",
         "mean distance between swapped and source face-mesh points / inter-ocular distance",
         "lower is better; 0 = expression kept exactly"),
        ("dlib 5-pt expression error", _num(e.get("dlib5_error_iod")), "0 (by definition)",
         "the same with dlib's 5 points (eye corners, nose base), an independent check",
         "lower is better; 0 = kept exactly"),
        ("yaw / pitch / roll diffs",
         " / ".join(_num(e.get(k), "{:.1f}") for k in ("yaw_diff_deg", "pitch_diff_deg", "roll_diff_deg"))
         + " deg", "0 (by definition)", "head pose of the swapped face minus the source's, in degrees",
         "lower is better"),
        ("sharpness ratio", _num(s.get("sharpness_ratio"), "{:.2f}"), one,
         "Laplacian variance inside the face box, swapped / source",
         "closer to 1 is better; under 1 = blurrier than the source"),
        ("sharpness ratio, dlib box", _num(s.get("sharpness_ratio_dlib_box"), "{:.2f}"), one,
         "the same inside dlib's face-detector box (brows to chin): fewer unswapped pixels",
         "closer to 1 is better; under 1 = blurrier than the source"),
        ("seam score", _num(s.get("seam_score"), "{:.2f}"), one,
         "edge strength on the blend boundary vs. just inside and outside it, relative to the source",
         "closer to 1 is better; over 1 = a visible seam or halo"),
        ("colour error", _num(s.get("colour_error_lab"), "{:.1f}"), "0",
         "CIELAB distance between the mean colour of the face in the output and in the source",
         "lower is better; over about 5 = a visibly different skin tone or light"),
        ("flicker ratio", _num(s.get("temporal_stability"), "{:.2f}"), one,
         "frame-to-frame change inside the face, swapped / source",
         "closer to 1 is better; over 1 = flicker added"),
    ]
    for side, r in sorted(s.get("reconstruction", {}).items()):
        if r.get("faces"):
            rows.append((f"held-out reconstruction, decoder {side.upper()}",
                         f"SSIM {_num(r.get('ssim'))}, PSNR {_num(r.get('psnr'), '{:.1f}')} dB", "—",
                         f"decoder {side.upper()} rebuilding {r['faces']} faces of its own person "
                         "that it never trained on",
                         "higher is better (SSIM 1 = identical)"))
    rows.append(("frames scored", str(s.get("frames_scored", "—")), "—",
                 f"frames scored; a swapped face was found in {s.get('frames_with_swapped_face', '—')}",
                 "—"))
    return rows


def _table(rows) -> str:
    head = ("figure", "swapped", "source baseline", "what it means", "better")
    out = ["<table><thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"]
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def write_report(folder: Path, result: dict, source: list[np.ndarray], swapped: list[np.ndarray]) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    frames = result["frames"]
    target, src_side = result["direction"][-1].upper(), result["direction"][0].upper()
    identity_plot(frames, folder / "identity.png", f"person {target}", f"person {src_side}")
    landmark_plot(frames, folder / "landmarks.png")
    quality_plot(frames, folder / "quality.png")
    frame_strip(source, swapped, folder / "frames.png")
    side_by_side_gif(source, swapped, folder / "side_by_side.gif")
    raw = json.dumps(result["summary"], indent=1, sort_keys=True)
    inputs = result.get("inputs", {})
    iteration = html.escape(str(result["model"].get("iteration")))
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>intracoder evaluation</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto;line-height:1.4}}
pre{{background:#f4f4f4;padding:1em;overflow:auto}}
table{{border-collapse:collapse;width:100%;font-size:0.92em}}
th,td{{border:1px solid #ccc;padding:0.3em 0.5em;text-align:left;vertical-align:top}}
th{{background:#eee}} td:nth-child(2),td:nth-child(3){{white-space:nowrap}}</style>
</head><body>
<h1>Swap evaluation</h1>
<p><b>This report describes synthetic (face-swapped) media made with intracoder.</b></p>
<p>Model: {html.escape(str(result['model']['path']))}, iteration {iteration};
source {html.escape(str(inputs.get('source')))}; swapped {html.escape(str(inputs.get('swapped')))};
direction {html.escape(result['direction'])} (person {src_side}'s face replaced by person {target}'s).</p>
<h2>Summary</h2>
<p>The source baseline is the same figure measured on the unswapped source frames.</p>
{_table(summary_rows(result))}
<h2>Source and swapped, side by side</h2><img src="side_by_side.gif" alt="source | swapped animation">
<h2>Frames (top: source, bottom: swapped)</h2><img src="frames.png" width="100%">
<h2>Identity per frame</h2><img src="identity.png" width="100%">
<h2>Expression and pose per frame</h2><img src="landmarks.png" width="100%">
<h2>Sharpness and seam per frame</h2><img src="quality.png" width="100%">
<details><summary>Raw numbers (JSON)</summary><pre>{html.escape(raw)}</pre></details>
</body></html>"""
    write_bytes(folder / "index.html", page.encode())
    return folder / "index.html"
