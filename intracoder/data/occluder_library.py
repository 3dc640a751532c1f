"""The sample images that ship with scikit-image and matplotlib, as occluder textures."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

RESERVED = ("coffee", "rocket")  # the held-out benchmark's images: never a texture here
# scikit-image sample files (name without extension). Faces are not textures: astronaut
# gives only her suit and the flag below her face, and lfw_subset is left out.
SKIMAGE_TEXTURES = ("astronaut", "chelsea", "camera", "brick", "grass", "gravel", "cell", "ihc",
                    "hubble_deep_field", "coins", "moon", "page", "text", "color", "horse", "logo",
                    "motorcycle_left", "retina", "clock_motion", "chessboard_RGB", "microaneurysms")
# matplotlib sample data; grace_hopper.jpg is a portrait (the demo's face A), so not here.
MPL_TEXTURES = ("Minduka_Present_Blue_Pack.png", "logo2.png")
_ROWS = {"astronaut": slice(230, None)}  # only what is below her face


@functools.lru_cache(maxsize=1)
def library_images() -> tuple[tuple[str, np.ndarray], ...]:
    """(name, BGR uint8) of every shipped sample image found; read once per process."""
    import matplotlib.cbook as cbook
    import skimage.data

    paths = [(f"skimage:{n}", p) for n in SKIMAGE_TEXTURES if n not in RESERVED
             for p in sorted(Path(skimage.data.__file__).parent.glob(f"{n}.*"))[:1]]
    paths += [(f"matplotlib:{n}", p) for n in MPL_TEXTURES  # skipping files not shipped
              if (p := Path(cbook.get_sample_data(n, asfileobj=False))).exists()]
    found = ((name, _read(path)) for name, path in paths)
    return tuple((n, img[_ROWS.get(n.split(":")[1], slice(None))]) for n, img in found
                 if img is not None)


def _read(path: Path) -> np.ndarray | None:
    # Through PIL: libpng, under cv2, warns on stderr about one sample's colour profile.
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.ascontiguousarray(np.asarray(im.convert("RGB"))[..., ::-1])
    except OSError:
        return None
