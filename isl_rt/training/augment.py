"""Site augmentation of healthy training slices: what differs between one hospital's export and
another's, applied to the DeDN's training slices so it learns to inpaint them too.

The runtime maps every image series onto the bundle's presentation first (:mod:`isl_rt.presentation`:
air black, skull white, the brain at the bundle's level, padded to a square, the head at the
bundle's size); what it cannot undo, and what this module draws, is what remains after that map:

- ``contrast``: the brain's gray about its median stretched or compressed by a factor in
  [0.75, 1.35] (a brain window 25% narrower to 35% wider that the map leaves alone), white and
  black pixels kept;
- ``gamma``: a power law γ in [0.85, 1.18] on the gray between black and white (within the map's
  gamma dead band);
- ``resample``: stored at a share in [0.5, 1) of the size and brought back (bilinear): the softer
  look of a smaller export or a softer reconstruction kernel;
- ``jpeg``: a JPEG history at quality [50, 95], encoded at 1, 2 or 4 times the model's size
  (an export at full size, brought down to the model's size afterwards);
- ``noise``: Gaussian noise with σ in [0, 0.02] (a lower dose), white and black kept;
- ``affine``: rotated by up to ±10° and scaled by [0.9, 1.1] about the centre (a head placed
  otherwise and what the size map leaves), air where the slice does not reach.

Each altered slice draws each transform with probability 0.5 (at least one), in the order above,
from the generator it is given (seeded per epoch by the trainer: the same seed, the same run), and
is quantised back to 8 bits. Input and target are the same altered slice: the DeDN learns to paint
what a healthy slice of such a site shows. Canny edges are recomputed from the altered slice.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

#: the transforms, in the order they are applied
TRANSFORMS = ("contrast", "gamma", "resample", "jpeg", "noise", "affine")


@dataclass(frozen=True)
class SiteAugment:
    """Draws site transforms for a share ``p`` of the slices of each batch."""

    p: float = 0.5

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(the batch x float32 [B,C,S,S] in [0, 1] with a share ``p`` of its slices altered, bool
        [B] which were)."""
        out = np.array(x, dtype=np.float32, copy=True)
        altered = rng.random(out.shape[0]) < self.p
        for i in np.flatnonzero(altered):
            chosen = rng.random(len(TRANSFORMS)) < 0.5
            if not chosen.any():
                chosen[rng.integers(len(TRANSFORMS))] = True
            for c in range(out.shape[1]):
                out[i, c] = alter(out[i, c], [t for t, on in zip(TRANSFORMS, chosen) if on], rng)
        return out, altered


def alter(gray: np.ndarray, transforms: list[str], rng: np.random.Generator) -> np.ndarray:
    """One slice [S,S] in [0, 1] with ``transforms`` applied (the module's draws), 8-bit quantised."""
    g = np.asarray(gray, dtype=np.float32)
    for name in transforms:
        if name == "contrast":
            g = within_window(g, _contrast(g, float(rng.uniform(0.75, 1.35))))
        elif name == "gamma":
            g = within_window(g, np.power(np.clip(g, 0.0, 1.0), np.float32(rng.uniform(0.85, 1.18))))
        elif name == "resample":
            g = resample(g, float(rng.uniform(0.5, 1.0)))
        elif name == "jpeg":
            g = jpeg(g, int(rng.integers(50, 96)), int(rng.choice([1, 2, 4])))
        elif name == "noise":
            g = within_window(g, g + rng.normal(0.0, float(rng.uniform(0.0, 0.02)), g.shape).astype(np.float32))
        elif name == "affine":
            g = affine(g, float(rng.uniform(-10.0, 10.0)), float(rng.uniform(0.9, 1.1)))
        else:
            raise ValueError(f"unknown transform {name!r}; the transforms are {', '.join(TRANSFORMS)}.")
    return (np.rint(np.clip(g, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


def within_window(gray: np.ndarray, changed: np.ndarray) -> np.ndarray:
    """``changed`` where ``gray`` lies strictly between black and white, ``gray`` elsewhere (bone
    and air lie far outside any brain window: another site's window shows them white and black too)."""
    return np.where((gray > 0.0) & (gray < 1.0), np.clip(changed, 0.0, 1.0), gray).astype(np.float32)


def _contrast(gray: np.ndarray, factor: float) -> np.ndarray:
    inside = gray[(gray > 0.0) & (gray < 1.0)]
    centre = float(np.median(inside)) if inside.size else 0.5
    return centre + (gray - centre) * np.float32(factor)


def resample(gray: np.ndarray, share: float) -> np.ndarray:
    """``gray`` [S,S] stored at ``share`` of its size and brought back (bilinear both ways)."""
    from PIL import Image

    s = gray.shape[-1]
    small = max(8, int(round(s * share)))
    image = Image.fromarray(gray.astype(np.float32), mode="F")
    return np.asarray(image.resize((small, small), Image.BILINEAR).resize((s, s), Image.BILINEAR), dtype=np.float32)


def jpeg(gray: np.ndarray, quality: int, upscale: int) -> np.ndarray:
    """``gray`` [S,S] through a JPEG at ``quality``, encoded at ``upscale`` times its size."""
    from PIL import Image

    s = gray.shape[-1]
    image = Image.fromarray(np.rint(np.clip(gray, 0.0, 1.0) * 255.0).astype(np.uint8), mode="L")
    if upscale > 1:
        image = image.resize((s * upscale, s * upscale), Image.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    back = Image.open(io.BytesIO(buffer.getvalue())).convert("L")
    if upscale > 1:
        back = back.resize((s, s), Image.BOX)
    return np.asarray(back, dtype=np.float32) / 255.0


def affine(gray: np.ndarray, degrees: float, scale: float) -> np.ndarray:
    """``gray`` [S,S] rotated by ``degrees`` and scaled by ``scale`` about its centre, air (0) outside."""
    from scipy import ndimage

    t = np.deg2rad(degrees)
    rotation = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]) / scale
    centre = (np.array(gray.shape) - 1) / 2.0
    return ndimage.affine_transform(gray, rotation, offset=centre - rotation @ centre, order=1, cval=0.0).astype(np.float32)
