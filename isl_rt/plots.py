"""Small PNG plots drawn with Pillow (no plotting library on the runtime path): line charts for
ROC curves and slice-score curves, and warm-colour heat-map overlays."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from isl_rt.outputs import write_atomic

_PALETTE = [
    (31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
]


@dataclass(frozen=True)
class Series:
    x: np.ndarray
    y: np.ndarray
    label: str = ""


def _save_png(image: Image.Image, path: Path) -> None:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    write_atomic(Path(path), buffer.getvalue())


def line_chart(
    path: Path,
    series: Sequence[Series],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    xlim: tuple[float, float] | None = None,
    ylim: tuple[float, float] | None = None,
    diagonal: bool = False,
    hline: float | None = None,
    size: tuple[int, int] = (720, 540),
) -> None:
    """Draw lines (with a legend when labelled) into a PNG at ``path``."""
    width, height = size
    left, right, top, bottom = 70, 20 + (200 if any(s.label for s in series) else 0), 40, 55
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    xs = np.concatenate([np.asarray(s.x, float) for s in series]) if series else np.array([0.0, 1.0])
    ys = np.concatenate([np.asarray(s.y, float) for s in series]) if series else np.array([0.0, 1.0])
    x0, x1 = xlim if xlim else (float(np.nanmin(xs)), float(np.nanmax(xs)))
    y0, y1 = ylim if ylim else (float(np.nanmin(ys)), float(np.nanmax(ys)))
    if x1 <= x0:
        x1 = x0 + 1.0
    if y1 <= y0:
        y1 = y0 + 1.0
    plot_w, plot_h = width - left - right, height - top - bottom

    def to_px(x: np.ndarray, y: np.ndarray) -> list[tuple[float, float]]:
        px = left + (np.asarray(x, float) - x0) / (x1 - x0) * plot_w
        py = top + plot_h - (np.asarray(y, float) - y0) / (y1 - y0) * plot_h
        return list(zip(px.tolist(), py.tolist()))

    draw.rectangle([left, top, left + plot_w, top + plot_h], outline="black")
    for i in range(6):
        fx, fy = x0 + (x1 - x0) * i / 5, y0 + (y1 - y0) * i / 5
        (px, _), = to_px(np.array([fx]), np.array([y0]))
        (_, py), = to_px(np.array([x0]), np.array([fy]))
        draw.line([px, top + plot_h, px, top + plot_h + 5], fill="black")
        draw.text((px - 12, top + plot_h + 8), f"{fx:.3g}", fill="black", font=font)
        draw.line([left - 5, py, left, py], fill="black")
        draw.text((8, py - 6), f"{fy:.3g}", fill="black", font=font)
    draw.text((left, 12), title, fill="black", font=font)
    draw.text((left + plot_w // 2 - 3 * len(xlabel), height - 22), xlabel, fill="black", font=font)
    draw.text((8, top - 16), ylabel, fill="black", font=font)
    if diagonal:
        draw.line(to_px(np.array([x0, x1]), np.array([y0, y1])), fill=(180, 180, 180), width=1)
    if hline is not None and y0 <= hline <= y1:
        draw.line(to_px(np.array([x0, x1]), np.array([hline, hline])), fill=(214, 39, 40), width=1)
    for i, s in enumerate(series):
        colour = _PALETTE[i % len(_PALETTE)]
        points = to_px(s.x, s.y)
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        elif points:
            px, py = points[0]
            draw.ellipse([px - 2, py - 2, px + 2, py + 2], fill=colour)
        if s.label:
            ly = top + 14 * i
            draw.line([width - right + 10, ly + 6, width - right + 30, ly + 6], fill=colour, width=2)
            draw.text((width - right + 35, ly), s.label[:30], fill="black", font=font)
    _save_png(image, path)


def heat_overlay(path: Path, gray: np.ndarray, heat: np.ndarray, *, alpha: float = 0.6) -> None:
    """A grey slice (values in [0,1], [H,W]) with ``heat`` ([H,W] in [0,1]) laid over it in warm
    colours (black-red-yellow-white ramp), transparent where heat is 0."""
    g = np.clip(np.asarray(gray, np.float32), 0, 1)
    h = np.clip(np.asarray(heat, np.float32), 0, 1)
    if g.shape != h.shape:
        raise ValueError(f"slice {g.shape} and heat map {h.shape} differ in shape")
    red = np.clip(3 * h, 0, 1)
    green = np.clip(3 * h - 1, 0, 1)
    blue = np.clip(3 * h - 2, 0, 1)
    warm = np.stack([red, green, blue], axis=-1)
    weight = (alpha * np.clip(h * 4, 0, 1))[..., None]
    rgb = (1 - weight) * g[..., None] + weight * warm
    _save_png(Image.fromarray(np.round(rgb * 255).astype(np.uint8), "RGB"), path)
