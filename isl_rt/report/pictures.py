"""The report's images: slices as 8-bit PNG at the source matrix, heat maps as transparent
PNG overlays on the same grid, and small index thumbnails of a slice with its heat map.

Heat is drawn per slice: scaled to that slice's peak (the page prints the peak), square-root
stretched so that weaker heat around a peak stays visible, transparent below 2 % of the peak,
and coloured from dark red through orange to pale yellow.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

#: slices larger than this (longest side, pixels) are shown downsampled
MAX_SIDE = 1024
#: heat below this share of the slice's peak is not drawn
HEAT_FLOOR = 0.02
_MAX_ALPHA = 0.85


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()


def _fit(image: Image.Image, max_side: int) -> Image.Image:
    width, height = image.size
    if max(width, height) <= max_side:
        return image
    scale = max_side / max(width, height)
    return image.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.LANCZOS)


def slice_image(pixels: np.ndarray) -> Image.Image:
    """An 8-bit gray [H,W] or RGB [H,W,3] slice as a Pillow image."""
    return Image.fromarray(np.ascontiguousarray(pixels), "L" if pixels.ndim == 2 else "RGB")


def slice_png(pixels: np.ndarray) -> bytes:
    """PNG of one displayed slice (8-bit gray or RGB), at most :data:`MAX_SIDE` on a side."""
    return _png(_fit(slice_image(pixels), MAX_SIDE))


def heat_peak(heat: np.ndarray) -> float:
    """The largest heat value of one slice (0 for an empty or all-zero map)."""
    return float(np.max(heat)) if heat.size else 0.0


def heat_rgba(heat: np.ndarray) -> np.ndarray:
    """One slice's heat map [H,W] (>= 0) as uint8 RGBA [H,W,4], drawn as the module says."""
    heat = np.nan_to_num(np.asarray(heat, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    out = np.zeros((*heat.shape, 4), dtype=np.uint8)
    peak = heat_peak(heat)
    if peak <= 0:
        return out
    shown = heat > np.float32(peak * HEAT_FLOOR)  # usually a small part of the slice
    u = np.sqrt(heat[shown] / np.float32(peak))
    floor = np.float32(np.sqrt(HEAT_FLOOR))
    alpha = np.clip((u - floor) / (np.float32(0.6) - floor), 0.0, 1.0) * np.float32(_MAX_ALPHA)
    rgba = np.stack([np.clip(0.55 + 1.5 * u, 0.0, 1.0), np.clip(1.6 * u - 0.35, 0.0, 1.0),
                     np.clip(2.5 * u - 1.7, 0.0, 1.0), alpha], axis=-1)
    out[shown] = np.rint(rgba * 255).astype(np.uint8)
    out[out[..., 3] == 0] = 0
    return out


def heat_png(heat: np.ndarray) -> bytes:
    """PNG (RGBA) of one slice's heat overlay, on the grid :func:`slice_png` uses."""
    return _png(_fit(Image.fromarray(heat_rgba(heat), "RGBA"), MAX_SIDE))


def composite(pixels: np.ndarray, heat: np.ndarray | None) -> Image.Image:
    """A slice with its heat overlay laid over it (RGB)."""
    base = slice_image(pixels).convert("RGBA")
    if heat is not None:
        base = Image.alpha_composite(base, Image.fromarray(heat_rgba(heat), "RGBA"))
    return base.convert("RGB")


def thumbnail_png(pixels: np.ndarray, heat: np.ndarray | None, size: int = 112) -> bytes:
    """A small PNG of a slice with its heat overlay, for the index (longest side ``size``)."""
    image = composite(pixels, heat)
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    return _png(image)
