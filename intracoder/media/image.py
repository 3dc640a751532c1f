"""Still images in and out: decode any common format, write PNG or JPEG carrying text.

Text (provenance notices) rides along in the file itself, so a converted still says what it
is wherever it is copied; writes are atomic like every other output.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, PngImagePlugin

from intracoder.atomic import atomic_path
from intracoder.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
WRITE_SUFFIXES = (".png", ".jpg", ".jpeg")
_EXIF_IMAGE_DESCRIPTION = 0x010E
# A ``text`` entry under this key is an XMP packet. It is PNG's own key for XMP (the iTXt
# chunk exiftool reads), so for PNG it is just another text chunk; JPEG keeps XMP in an APP1
# segment instead, which Pillow writes from its ``xmp`` argument.
XMP_TEXT_KEY = "XML:com.adobe.xmp"


def is_image_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def read_image(path: str | os.PathLike) -> np.ndarray:
    """A BGR uint8 image; UserError when the file is missing or not a decodable image."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"image not found: {p}")
    image = cv2.imread(str(p), cv2.IMREAD_COLOR)
    if image is None:
        raise UserError(f"{p}: not an image that can be decoded")
    return image


def write_image(path: str | os.PathLike, bgr: np.ndarray, text: dict | None = None,
                quality: int = 95, compress_level: int = 3) -> None:
    """Write a BGR uint8 image as PNG or JPEG, atomically, carrying ``text`` (key -> value;
    non-string values are stored as JSON). PNG: one iTXt chunk per key (UTF-8). JPEG, which
    has no key/value text: the whole dict as JSON in the comment (COM) segment, and again,
    ASCII-escaped, in EXIF ImageDescription where photo tools show it. An XMP packet under
    XMP_TEXT_KEY goes into PNG's iTXt of that key, or JPEG's XMP APP1 segment."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in WRITE_SUFFIXES:
        raise UserError(f"cannot write image {p}: use .png, .jpg or .jpeg")
    if not p.parent.is_dir():
        raise UserError(f"cannot write image {p}: folder {p.parent} does not exist")
    if bgr.dtype != np.uint8 or bgr.ndim != 3 or bgr.shape[2] != 3:
        raise ValueError(f"image must be HxWx3 uint8, got {bgr.shape} {bgr.dtype}")
    img = Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    items = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in (text or {}).items()}
    with atomic_path(p) as tmp:
        if suffix == ".png":
            info = PngImagePlugin.PngInfo()
            for key, value in items.items():
                info.add_itxt(key, value)
            img.save(tmp, format="PNG", pnginfo=info, compress_level=compress_level)
        else:
            kwargs: dict = {"quality": quality}
            xmp = items.pop(XMP_TEXT_KEY, None)
            if xmp:
                kwargs["xmp"] = xmp.encode("utf-8")
            if items:
                exif = Image.Exif()
                exif[_EXIF_IMAGE_DESCRIPTION] = json.dumps(items, ensure_ascii=True)
                kwargs.update(comment=json.dumps(items, ensure_ascii=False).encode("utf-8"),
                              exif=exif.tobytes())
            img.save(tmp, format="JPEG", **kwargs)


def read_image_text(path: str | os.PathLike) -> dict[str, str]:
    """The ``text`` dict that write_image stored in a PNG or JPEG ({} if none)."""
    with Image.open(path) as img:
        if img.format == "PNG":
            return {str(k): str(v) for k, v in getattr(img, "text", {}).items()}
        raw = img.info.get("comment")
        if raw is None:
            raw = img.getexif().get(_EXIF_IMAGE_DESCRIPTION)
        xmp = img.info.get("xmp")
    found: dict[str, str] = {}
    if raw is not None:
        try:
            data = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
        except ValueError:
            data = None
        if isinstance(data, dict):
            found = {str(k): str(v) for k, v in data.items()}
    if xmp:
        found[XMP_TEXT_KEY] = xmp.decode("utf-8", "replace") if isinstance(xmp, bytes) else xmp
    return found
