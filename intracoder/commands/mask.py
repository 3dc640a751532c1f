"""`intracoder mask train|apply|uncertain|propagate|labels`: the learned face mask."""

from __future__ import annotations

import argparse

from intracoder.config import add_arguments, from_args, given_options


def add_parser(sub) -> None:
    from intracoder.commands.mask_labels import add_label_parsers
    from intracoder.segment.config import MaskTrainConfig

    p = sub.add_parser(
        "mask", help="learn a face mask that knows what stands in front of the face",
        description="A segmentation net that tells visible face from everything else (hair, "
        "hands, cups, microphones), taught on your facesets with synthetic occluders and any "
        "labels drawn in the studio. Apply it to facesets (training then ignores occluded "
        "pixels) and convert with --mask learned.")
    steps = p.add_subparsers(dest="mask_command", metavar="STEP", required=True)

    t = steps.add_parser(
        "train", help="train (or resume) a mask model on facesets",
        description="Trains the mask net on the crops of --faces with synthetic occluders "
        "pasted on them; crops labelled in the studio count more. Running it again on the "
        "same --model resumes. Put the mask model in MODEL/mask to have convert use it "
        "without --mask-model. Ctrl-C saves and stops.")
    add_arguments(t, MaskTrainConfig)
    t.set_defaults(func=run_train)

    a = steps.add_parser(
        "apply", help="write the learned mask into every crop of a faceset",
        description="Stores the learned mask in each crop beside its landmark hull; training "
        "on the faceset then weights its loss by it and the decoder learns it as its mask.")
    a.add_argument("faces_dir", metavar="FACES_DIR", help="a folder of extracted faces")
    a.add_argument("--mask-model", required=True, metavar="MASKDIR", help="a trained mask model")
    a.set_defaults(func=run_apply)

    u = steps.add_parser(
        "uncertain", help="list the crops the mask net is least sure of (the next to label)",
        description="Ranks the crops of FACES_DIR by how unsure the mask net is of them; "
        "label the first few in the studio's mask editor and train again.")
    u.add_argument("faces_dir", metavar="FACES_DIR", help="a folder of extracted faces")
    u.add_argument("--mask-model", required=True, metavar="MASKDIR", help="a trained mask model")
    u.add_argument("--count", type=int, default=20, help="how many to list (default: 20)")
    u.set_defaults(func=run_uncertain)

    add_label_parsers(steps)


def run_train(args: argparse.Namespace) -> int:
    from intracoder.segment.config import MaskTrainConfig
    from intracoder.segment.train import train_masks

    cfg = from_args(MaskTrainConfig, args)
    state = train_masks(cfg, given_options(MaskTrainConfig, args))
    scores = state.get("scores", {})
    print(f"mask model {cfg.model}: iteration {state['iteration']}, loss {state['loss']:.4f}, "
          f"{state['faces_per_second']} faces/s; held-out IoU with occluders "
          f"{scores.get('occluded_iou', 'n/a')} (the hull alone: "
          f"{scores.get('hull_occluded_iou', 'n/a')}), agreement with the hull on clean crops "
          f"{scores.get('clean_hull_iou', 'n/a')} ({scores.get('held_out', 0)} crops)")
    return 0


def run_apply(args: argparse.Namespace) -> int:
    from intracoder.segment.apply import apply_masks

    result = apply_masks(args.faces_dir, args.mask_model)
    print(f"learned mask written into {result['faces']} crops of {args.faces_dir}; it keeps "
          f"{result['hull_kept']:.1%} of the hull on average")
    return 0


def run_uncertain(args: argparse.Namespace) -> int:
    from intracoder.errors import UserError
    from intracoder.segment.apply import rank_uncertain

    if args.count < 1:
        raise UserError(f"--count must be at least 1, got {args.count}")
    for name, value in rank_uncertain(args.faces_dir, args.mask_model, args.count):
        print(f"{value:.4f}  {name}")
    return 0
