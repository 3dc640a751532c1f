"""What bf16 does to one training step: the loss and each part's gradient under
mixed_bfloat16 against float32, from the same weights on the same batches.

    python bench/precision.py --model MODEL [--batches 4] [--iteration 1000]

MODEL is a trained model folder (its facesets, recipe and weights are used as they are).
For every variable the gradient's relative error ||g_bf16 - g_f32|| / ||g_f32||, its cosine
and the share of elements whose sign agrees (what Adam's first steps follow) are averaged
over the batches, then summarised per part (the encoder, the inter, each decoder block). A
part whose gradient disagrees far more than the others is where bf16 costs precision it
should not. The step time of each precision is bench/train.py's (--mixed-precision).
Runs on the TensorFlow backend (it takes the gradients with a GradientTape); bf16 is
emulated, and slow, on a CPU without AVX512-BF16, with the same rounding.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from intracoder.data.dataset import PairDataset, load_faceset  # noqa: E402
from intracoder.models.autoencoder import LossConfig, ModelConfig, build_model  # noqa: E402
from intracoder.training import checkpoint  # noqa: E402
from intracoder.training.config import TrainConfig  # noqa: E402


def gradients(model_dir: str, state: dict, policy: str,
              batches: list) -> tuple[list[float], dict]:
    """(loss per batch, {variable path: [gradient per batch]}) under ``policy``."""
    import tensorflow as tf

    keras.mixed_precision.set_global_policy(policy)
    try:
        model = build_model(ModelConfig(**state["model_config"]),
                            LossConfig(**state["loss_config"]))
        checkpoint.load_weights(model, checkpoint.find_checkpoint(model_dir))
        owner = {id(v): part for part in model.parts
                 for v in getattr(model, part).trainable_variables}
        losses, grads = [], defaultdict(list)
        for x, y in batches:
            with tf.GradientTape() as tape:
                pred = model(tuple(tf.constant(v) for v in x), training=True)
                loss = model.compute_loss(x, [tf.constant(v) for v in y], pred)
            for var, g in zip(model.trainable_variables,
                              tape.gradient(loss, model.trainable_variables)):
                grads[f"{owner[id(var)]}/{var.path}"].append(np.asarray(g, np.float64))
            losses.append(float(loss))
        return losses, grads
    finally:
        keras.mixed_precision.set_global_policy("float32")


def part_of(path: str) -> str:
    """'decoder_b/res0/conv1/kernel' -> 'decoder_b res0': decoders per block (the error grows
    towards the output), the encoder and inter as one part each."""
    head, _, rest = path.partition("/")
    return f"{head} {rest.split('/')[0]}" if head.startswith("decoder") else head


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="a trained model folder")
    p.add_argument("--batches", type=int, default=4)
    p.add_argument("--iteration", type=int, default=1000, help="which batches (augmentation)")
    args = p.parse_args(argv)
    if keras.backend.backend() != "tensorflow":
        print("bench/precision.py: run it with the tensorflow backend", file=sys.stderr)
        return 2
    state = checkpoint.read_state(args.model)
    if state is None:
        print(f"bench/precision.py: {args.model}: no model in it", file=sys.stderr)
        return 2
    stored = state["config"]
    cfg = TrainConfig(**{k: v for k, v in stored.items()
                         if k in TrainConfig.__dataclass_fields__}).resolved()
    res = state["model_config"]["resolution"]
    faces = [load_faceset(getattr(cfg, side), res) for side in ("a", "b")]
    dataset = PairDataset(*faces, cfg.batch_size, cfg, cfg.seed, cfg.eyes_mouth_priority)
    batches = [dataset[args.iteration + i] for i in range(args.batches)]
    loss32, g32 = gradients(args.model, state, "float32", batches)
    loss16, g16 = gradients(args.model, state, "mixed_bfloat16", batches)
    print(f"{args.model} at iteration {state['iteration']}, {args.batches} batches of "
          f"{cfg.batch_size} per side")
    print(f"loss float32 {np.mean(loss32):.5f}  bf16 {np.mean(loss16):.5f}  "
          f"(bf16 / float32 - 1: {np.mean(loss16) / np.mean(loss32) - 1:+.2%})")
    parts = defaultdict(list)
    for path, ref in g32.items():
        rel = [np.linalg.norm(b - a) / max(np.linalg.norm(a), 1e-30)
               for a, b in zip(ref, g16[path])]
        cos = [float(a.ravel() @ b.ravel()) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-30)
               for a, b in zip(ref, g16[path])]
        sign = [np.mean(np.sign(a) == np.sign(b)) for a, b in zip(ref, g16[path])]
        parts[part_of(path)].append((np.mean(rel), np.mean(cos), np.mean(sign), ref[0].size))
    print("| part | variables | weights | gradient rel. error (mean / worst) | cosine (worst) | "
          "sign agrees (worst) |")
    print("|---|---|---|---|---|---|")
    for part, rows in parts.items():
        rel, cos, sign, size = (np.array(c) for c in zip(*rows))
        print(f"| {part} | {len(rows)} | {int(size.sum())} | {rel.mean():.3f} / {rel.max():.3f} "
              f"| {cos.min():.4f} | {sign.min():.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
