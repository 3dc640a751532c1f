"""What a person watching a training run looks at: the preview grid, the loss plot and,
on request, TensorBoard scalars.

The figures use matplotlib's object API with the Agg canvas: no pyplot global state, no
display needed, and safe to call from a training loop. Both PNGs are written under a
temporary name and renamed, so an image viewer never shows half a file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from intracoder.atomic import atomic_path
from intracoder.errors import UserError
from intracoder.training.phase import describe_switches

PREVIEW = "preview.png"
LOSS_PLOT = "loss.png"


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def preview_rows(model, faces_a: np.ndarray, faces_b: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(label, faces) rows: each person's input, its reconstruction and its swap (a layout
    that cannot swap B into A, LIAE, shows B's row without one)."""
    recon_a, _ = model.decode(faces_a, "a")
    swap_ab, _ = model.decode(faces_a, "b")
    recon_b, _ = model.decode(faces_b, "b")
    rows = [("A input", faces_a), ("A recon", recon_a), ("A to B", swap_ab),
            ("B input", faces_b), ("B recon", recon_b)]
    if "b2a" in model.config.directions:
        rows.append(("B to A", model.decode(faces_b, "a")[0]))
    return rows


def write_preview(model, faces_a: np.ndarray, faces_b: np.ndarray, path: str | Path,
                  title: str) -> None:
    rows = preview_rows(model, faces_a, faces_b)
    res = faces_a.shape[1]
    cols = max(len(faces_a), len(faces_b))
    # One mosaic image instead of 6 x cols axes: drawing stays fast at any size.
    mosaic = np.ones((len(rows) * res, cols * res, 3), np.float32)
    for r, (_, faces) in enumerate(rows):
        for c, face in enumerate(faces):
            mosaic[r * res:(r + 1) * res, c * res:(c + 1) * res] = face
    height = max(3.0, len(rows) * 1.1)
    fig = Figure(figsize=(1.0 + cols * height / len(rows), height), dpi=max(100, res * 0.9))
    ax = fig.add_axes((0.14, 0.02, 0.84, 0.9))
    ax.imshow(np.clip(mosaic, 0, 1), interpolation="nearest")
    ax.set_yticks([(r + 0.5) * res for r in range(len(rows))], [label for label, _ in rows],
                  fontsize=8)
    ax.set_xticks([])
    ax.axhline(3 * res - 0.5, color="white", linewidth=2)  # person A above, B below
    ax.set_title(title, fontsize=9)
    _save(fig, Path(path))


def _smooth(values: np.ndarray, span: int) -> np.ndarray:
    """Exponential moving average, in log space so one spike does not dominate."""
    if len(values) == 0:
        return values
    alpha = 2.0 / (span + 1)
    out = np.empty_like(values)
    acc = np.log(values[0])
    for i, v in enumerate(np.log(values)):
        acc = alpha * v + (1 - alpha) * acc
        out[i] = acc
    return np.exp(out)


def write_loss_plot(history: list[list[float]], rollbacks: list[dict], path: str | Path,
                    title: str, rates: list[list[float]] | None = None,
                    phases: list[dict] | None = None, gan: list[list[float]] | None = None) -> None:
    """Both sides' loss on a log scale, raw (faint) and smoothed; the discriminator's loss
    (``gan``: [iteration, loss_d, loss_g]) in purple while the GAN trains (near 1.39, ln 4,
    it cannot tell real from generated; falling to 0 it wins and the generator learns
    nothing from it); rollbacks as red lines;
    phase switches (training/phase.py) as green lines labelled with what changed; the
    learning rate the steps trained at (``rates``: [iteration, rate]) on a right axis, so a
    loss that flattens can be read against the schedule."""
    fig = Figure(figsize=(7, 3.5), dpi=100)
    ax = fig.add_subplot()
    if history:
        h = np.asarray(history, np.float64)
        h = h[np.isfinite(h).all(axis=1) & (h[:, 1:] > 0).all(axis=1)]
        span = max(5, len(h) // 30)
        for col, name, colour in ((1, "A", "tab:blue"), (2, "B", "tab:orange")):
            ax.plot(h[:, 0], h[:, col], color=colour, alpha=0.25, linewidth=0.8)
            ax.plot(h[:, 0], _smooth(h[:, col], span), color=colour, label=f"loss {name}")
        if gan:
            g = np.asarray(gan, np.float64)
            g = g[np.isfinite(g).all(axis=1) & (g[:, 1] > 0)]
            ax.plot(g[:, 0], _smooth(g[:, 1], span), color="tab:purple",
                    label="discriminator")
        ax.set_yscale("log")
        plain = FuncFormatter(lambda v, _: f"{v:g}")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
        ax.legend(loc="upper right")
    for rb in rollbacks:
        ax.axvline(rb["iteration"], color="red", linewidth=0.8, alpha=0.6)
    for change in phases or []:
        ax.axvline(change["iteration"], color="tab:green", linewidth=1.0)
        # At the foot of the line: the legend sits at the top right.
        ax.annotate(describe_switches(change), (change["iteration"], 0.0),
                    xycoords=("data", "axes fraction"), xytext=(3, 3),
                    textcoords="offset points", va="bottom", fontsize=7, color="tab:green")
    if rates:
        lr = ax.twinx()
        r = np.asarray(rates, np.float64)
        lr.plot(r[:, 0], r[:, 1], color="grey", linewidth=1.0, linestyle="--")
        lr.set_ylabel("learning rate (dashed)", color="grey")
        lr.set_ylim(0, r[:, 1].max() * 1.1)
        lr.tick_params(axis="y", colors="grey", labelsize=8)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    _save(fig, Path(path))


class TensorBoardLog:
    """Scalar summaries readable by TensorBoard.

    The event files are written with TensorFlow's own writer (tensorboard itself need
    not be installed); under the jax or torch backend TensorFlow is imported for this
    alone and kept off the GPU.
    """

    def __init__(self, logdir: str | Path) -> None:
        try:
            import tensorflow as tf
            from tensorflow.core.framework import summary_pb2
        except ImportError:
            raise UserError("--tensorboard needs TensorFlow installed (it writes the event "
                            "files); install tensorflow or train without --tensorboard") from None
        import keras

        if keras.backend.backend() != "tensorflow":
            tf.config.set_visible_devices([], "GPU")
        self._tf = tf
        self._meta = summary_pb2.SummaryMetadata()
        self._meta.plugin_data.plugin_name = "scalars"
        self._writer = tf.summary.create_file_writer(str(logdir))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        with self._writer.as_default():
            for tag, value in values.items():
                self._tf.summary.write(tag, self._tf.constant(float(value), self._tf.float32),
                                       step=step, metadata=self._meta)

    def close(self) -> None:
        self._writer.flush()
        self._writer.close()
