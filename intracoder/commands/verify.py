"""`intracoder verify FILE`: is this image or video marked as made by intracoder?

Exit codes are part of the interface, so scripts can gate uploads on them:
0 marked as synthetic (watermark, metadata notice or XMP source type), 1 no mark found,
2 unreadable input.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_parser(sub) -> None:
    p = sub.add_parser(
        "verify", help="check an image or video for intracoder's synthetic-content marks",
        description="Look for the invisible watermark, the metadata notice and the XMP "
        "digital source type that intracoder "
        "puts on everything it writes. Exit code 0: marked as synthetic; 1: no mark found; "
        "2: the file cannot be read.")
    p.add_argument("file", help="an image (PNG, JPEG, ...) or a video (MP4, MKV, ...)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--frames", type=int, default=None,
                   help="video frames to sample evenly (default: 32)")
    p.set_defaults(func=run)


def _text(result) -> str:
    lines = [f"{result.path}: {result.kind}, {result.width}x{result.height}"]
    if result.metadata_found:
        lines.append(f"  metadata:  synthetic notice found ({result.metadata_key}: "
                     f"{result.metadata_text})")
    else:
        lines.append("  metadata:  no synthetic notice")
    if result.xmp_found:
        lines.append(f"  xmp:       digital source type {result.digital_source_type}")
    elif result.digital_source_type:
        lines.append(f"  xmp:       digital source type {result.digital_source_type} "
                     "(not written by intracoder)")
    else:
        lines.append("  xmp:       no intracoder digital source type")
    if result.watermark_found:
        fields = result.payload_fields
        where = ""
        if result.kind == "video":
            where = (f" in {result.frames_found} of {result.frames_sampled} sampled frames "
                     f"({100 * result.share_found:.0f}%)")
            if result.combined_found:
                where += ", and in their average"
        lines.append(f"  watermark: found{where}; {fields['tool']} {fields['version']}, "
                     f"model id {fields['model_hash']}; confidence {result.confidence:.2f}")
    else:
        sampled = (f" in {result.frames_sampled} sampled frames"
                   if result.kind == "video" else "")
        lines.append(f"  watermark: not found{sampled}")
    lines.append("  verdict:   " + ("MARKED AS SYNTHETIC (made with intracoder)"
                                    if result.marked else "no intracoder mark found"))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from intracoder.provenance.verify import DEFAULT_FRAMES, UnreadableInput, verify_file

    frames = DEFAULT_FRAMES if args.frames is None else args.frames
    if frames < 1:
        print("intracoder: error: --frames must be at least 1", file=sys.stderr)
        return 2
    try:
        result = verify_file(args.file, frames=frames)
    except UnreadableInput as exc:
        print(f"intracoder: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.to_dict(), indent=1, sort_keys=True))
    else:
        print(_text(result))
    return 0 if result.marked else 1
