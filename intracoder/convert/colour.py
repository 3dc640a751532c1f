"""Colour transfer in convert: move the colours of a generated face towards the destination
face it replaces.

The modes themselves are pure ``f(source, reference, mask)`` functions shared with training
(DeepFaceLab's ``ct_mode``) and live in intracoder.imaging.colour_transfer; this module keeps
the names convert (and its callers) have always imported from here. In convert, ``source``
is the generated face, ``reference`` the destination face, ``mask`` the destination's face
mask; the random modes (idt, sot) draw from a fixed seed, so converting the same frame twice
gives the same bytes, which keeps video free of flicker from the colour step alone.
"""

from __future__ import annotations

from intracoder.imaging.colour_transfer import (  # noqa: F401  (re-exported)
    _MAX_SAMPLE,
    _MIN_PIXELS,
    _SEED,
    COLOUR_MODES,
    ColourFn,
    _distributions,
    _quantile_map,
    _random_rotation,
    _sample,
    _selection,
    _sqrtm_sym,
    _to_uint8,
    _unique_colours,
    hist,
    idt,
    lct,
    none,
    rct,
    sot,
    transfer,
)

__all__ = ["COLOUR_MODES", "ColourFn", "hist", "idt", "lct", "none", "rct", "sot", "transfer"]
