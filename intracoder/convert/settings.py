"""Per-scene convert settings: the options that may change from one frame to the next, and a
keyframed file of them.

A settings file lists keyframes in increasing frame order; each keyframe's settings hold
from its frame until the next keyframe (``settings_at``). Frames are counted as in the video
(an image folder: the image's position in the sorted folder), not from ``--start``. Before
the first keyframe, and for any key a hand-written keyframe leaves out, the options of the
convert itself apply (the CLI flags or their defaults): the file wins wherever it says
something. The studio saves the file as MODEL/convert_settings.json::

    {"schema": 1, "keyframes": [{"frame": 0, "settings": {"erode": 0, ...}},
                                {"frame": 120, "settings": {"erode": 30, ...}}]}
"""

from __future__ import annotations

import bisect
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from intracoder.atomic import write_json
from intracoder.convert.colour import COLOUR_MODES
from intracoder.errors import UserError

SCHEMA = 1
FILE_NAME = "convert_settings.json"
REFINER = "refiner"  # the colour choice that runs the model folder's refiner net
COLOURS = (*sorted(COLOUR_MODES), REFINER)
BLENDS = ("seamless", "alpha")
# auto: learned when a mask model is at hand (--mask-model or MODEL/mask), else predicted;
# predicted: the model's mask within the landmark hull (never leaks past the hull);
# hull: the landmark hull alone (a mask that is still poor early in training);
# predicted-only: the model's mask alone (hair or a beard the hull cuts off);
# learned: the mask net's segmentation of the face in the frame (what is visible there: a
# hand or a cup in front of the face is kept); learned-predicted: its product with the
# model's mask (DeepFaceLab's XSeg-dst * XSeg-prd).
MASK_MODES = ("auto", "predicted", "hull", "predicted-only", "learned", "learned-predicted")
LEARNED_MODES = ("auto", "learned", "learned-predicted")  # modes that use a mask model
# Beyond these the pasted face no longer lines up with the head it is pasted on.
FACE_SCALE_RANGE = (0.5, 2.0)


@dataclass(frozen=True)
class Settings:
    """What may be tuned per frame; the defaults are ConvertConfig's."""

    color: str = "rct"
    blend: str = "seamless"
    erode: float = 8.0
    blur: float = 16.0
    sharpen: float = 1.0
    face_scale: float = 1.0
    mask: str = "auto"
    smooth: bool = True
    face_index: int | None = None

    @classmethod
    def from_config(cls, cfg) -> Settings:
        """The settings of a ConvertConfig (or anything with these attributes)."""
        return cls(**{k: getattr(cfg, k) for k in KEYS})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def problems(self) -> list[tuple[str, str]]:
        """(key, what is wrong with its value) for every bad value; empty when all are fine."""
        return [(k, why) for k in KEYS if (why := problem(k, getattr(self, k))) is not None]


KEYS = tuple(f.name for f in dataclasses.fields(Settings))


def _number(value) -> bool:
    # JSON true/false would otherwise pass as the numbers 1 and 0.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def problem(key: str, value) -> str | None:
    """Why ``value`` cannot be setting ``key``, or None when it can."""
    choices = {"color": COLOURS, "blend": BLENDS, "mask": MASK_MODES}.get(key)
    if choices is not None:
        return None if value in choices else f"must be one of {', '.join(choices)}, got {value!r}"
    if key == "smooth":
        return None if isinstance(value, bool) else f"must be true or false, got {value!r}"
    if key == "face_index":
        ok = value is None or (isinstance(value, int) and not isinstance(value, bool)
                               and value >= 0)
        return None if ok else f"must be null (every face) or a face number >= 0, got {value!r}"
    if not _number(value) or value != value:  # value != value: NaN
        return f"must be a number, got {value!r}"
    if key in ("blur", "sharpen") and value < 0:
        return f"must be >= 0, got {value}"
    lo, hi = FACE_SCALE_RANGE
    if key == "face_scale" and not lo <= value <= hi:
        return f"must be within {lo}..{hi}, got {value}"
    return None


def check_config(cfg) -> None:
    """The tunable options of a ConvertConfig, as flags: one UserError for the first bad one."""
    for key, why in Settings.from_config(cfg).problems():
        raise UserError(f"--{key.replace('_', '-')} {why}")


@dataclass
class SettingsFile:
    """Keyframes (frame, Settings), frames strictly increasing, over ``base`` (the convert's
    own options, which hold before the first keyframe)."""

    base: Settings = field(default_factory=Settings)
    keyframes: list[tuple[int, Settings]] = field(default_factory=list)

    def settings_at(self, frame: int) -> Settings:
        """The settings of the last keyframe at or before ``frame``; ``base`` before any."""
        i = bisect.bisect_right([f for f, _ in self.keyframes], frame)
        return self.keyframes[i - 1][1] if i else self.base

    def boundaries(self) -> list[int]:
        return [f for f, _ in self.keyframes]

    def in_use(self, start: int = 0) -> list[Settings]:
        """Every Settings some frame from ``start`` on can get."""
        used = [s for _, s in self.keyframes]
        return used if self.keyframes and self.keyframes[0][0] <= start else [self.base, *used]

    def apply_from(self, frame: int, settings: Settings) -> None:
        """Make ``settings`` hold from ``frame`` on, up to the next keyframe, which is kept:
        later scenes keep their own settings. The keyframe at ``frame``, if any, is
        replaced. A keyframe that would repeat the settings of the keyframe before it
        changes nothing and is dropped (the new one, or the next one if it now repeats the
        new one), so the file lists only the frames where something changes."""
        if frame < 0:
            raise ValueError(f"frame must be >= 0, got {frame}")
        if settings.problems():
            key, why = settings.problems()[0]
            raise ValueError(f"{key} {why}")
        kept = [(f, s) for f, s in self.keyframes if f != frame]
        bisect.insort(kept, (frame, settings), key=lambda k: k[0])
        self.keyframes = [k for i, k in enumerate(kept) if i == 0 or k[1] != kept[i - 1][1]]

    def remove(self, frame: int) -> None:
        """Drop the keyframe at ``frame`` (the scene before it then runs on)."""
        self.keyframes = [(f, s) for f, s in self.keyframes if f != frame]

    def to_json(self) -> dict:
        return {"schema": SCHEMA, "keyframes": [{"frame": f, "settings": s.to_dict()}
                                                for f, s in self.keyframes]}

    def dumps(self) -> str:
        """The canonical text: the same keyframes give the same text, whatever the file's
        layout was (a resumed convert in parts compares it)."""
        return json.dumps(self.to_json(), sort_keys=True)

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_json())

    @classmethod
    def from_json(cls, data, base: Settings = Settings(), where: str = "settings") -> SettingsFile:
        """Validated keyframes from the parsed JSON; a UserError naming ``where`` and the
        keyframe for anything wrong."""
        if not isinstance(data, dict) or set(data) != {"schema", "keyframes"}:
            raise UserError(f"{where}: not a convert settings file (an object with 'schema' "
                            "and 'keyframes' is expected)")
        if data["schema"] != SCHEMA:
            raise UserError(f"{where}: settings schema {data['schema']!r}, this intracoder "
                            f"reads schema {SCHEMA}")
        if not isinstance(data["keyframes"], list):
            raise UserError(f"{where}: 'keyframes' must be a list")
        out, last = cls(base), -1
        for i, entry in enumerate(data["keyframes"]):
            if not isinstance(entry, dict) or set(entry) != {"frame", "settings"} \
                    or not isinstance(entry["settings"], dict):
                raise UserError(f"{where}: keyframe {i} must be {{\"frame\": N, \"settings\": "
                                "{...}}")
            frame = entry["frame"]
            if not isinstance(frame, int) or isinstance(frame, bool) or frame < 0:
                raise UserError(f"{where}: keyframe {i}: frame must be a number >= 0, got "
                                f"{frame!r}")
            if frame <= last:
                raise UserError(f"{where}: keyframe {i}: frames must increase, but frame "
                                f"{frame} follows frame {last}")
            unknown = sorted(set(entry["settings"]) - set(KEYS))
            if unknown:
                raise UserError(f"{where}: keyframe {i} (frame {frame}): unknown setting "
                                f"{unknown[0]!r} (known: {', '.join(KEYS)})")
            settings = dataclasses.replace(base, **entry["settings"])
            for key, why in settings.problems()[:1]:
                raise UserError(f"{where}: keyframe {i} (frame {frame}): {key} {why}")
            out.keyframes.append((frame, settings))
            last = frame
        return out

    @classmethod
    def load(cls, path: str | Path, base: Settings = Settings()) -> SettingsFile:
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise UserError(f"{path}: settings file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"{path}: cannot read the settings file ({exc})") from None
        except ValueError as exc:
            raise UserError(f"{path}: not valid JSON ({exc})") from None
        return cls.from_json(data, base, str(path))


def default_path(model_dir: str | Path) -> Path:
    """Where the studio keeps a model's convert settings."""
    return Path(model_dir) / FILE_NAME


def schedule(cfg) -> SettingsFile:
    """The settings every frame of a convert gets: ``cfg.settings_json`` (the file's
    content, carried inside the config to worker processes) or the file ``cfg.settings``
    over the config's own options; just those options without either."""
    base = Settings.from_config(cfg)
    if cfg.settings_json is not None:
        return SettingsFile.from_json(json.loads(cfg.settings_json), base,
                                      cfg.settings or "settings")
    if cfg.settings is not None:
        return SettingsFile.load(cfg.settings, base)
    return SettingsFile(base)


def with_settings(cfg):
    """``cfg`` with its settings file read into ``settings_json`` (once, before any worker
    starts: every part then uses the same keyframes even if the file is edited meanwhile,
    and a resume compares them)."""
    if cfg.settings is None or cfg.settings_json is not None:
        return cfg
    return dataclasses.replace(cfg, settings_json=schedule(cfg).dumps())
