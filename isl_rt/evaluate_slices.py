"""`isl-rt evaluate --level slice`: slice-level detection and localisation from the slices CSV.

Inputs: the slices CSV ``scan`` writes (``<stem>.slices.csv``), a per-slice labels CSV and,
for localisation, the heat maps of ``scan --heatmaps DIR``.

**Labels** (:func:`read_slice_labels`): one row per slice with a 0/1 label (column ``label``, or
any column named with ``label_column``, e.g. ``lesion``) and either

- an image path (column ``image``; relative to the labels file's folder, or absolute): the per-slice
  labels CSV of :mod:`isl_rt.labels`, read there, joined with the slices CSV's ``source`` (both
  resolved, symlinks included), or
- a series and a slice index (columns ``series`` and ``slice``): the series key of the slices
  CSV (SeriesInstanceUID, or an image series' folder id) and the 0-based index in the series'
  order. A dataset's own slice *numbers* need not be that index: join such data by image path.

An optional ``mask`` column (a lesion mask image on the slice's own pixel grid, relative to the
labels file; empty when the slice has none) enables localisation and the size groups.

**Report** (:func:`evaluate_slices`): slice-score AUC of lesion against lesion-free slices, its
95% CI from 1000 draws of 30% of the *series* (all slices of a drawn series together: slices of
one patient are alike, so drawing slices would give intervals that are too narrow), sensitivity
and specificity at the balanced threshold and at the bundle's slice threshold (the ``flagged``
column, when the bundle had one), and the same per lesion size: terciles of the mask area
(pixels) of the lesion slices with a mask, each against all lesion-free slices, like the paper's
Table 1 (lesion slices without a mask form a group of their own).

**Localisation**, from heat maps on the source grid (``heatmaps.npz`` per series): over pixels
inside the scored region (the cranial cavity the bundle scores, the whole slice when it scores
whole slices), the pixel-level AUROC of the heat (positives: mask pixels of lesion slices;
negatives: the other pixels of those slices and every pixel of lesion-free slices; lesion slices
without a mask are left out), the same on lesion slices alone, and the **hit rate**: the share
of lesion slices with a mask whose heat-map maximum inside the scored region lies inside the
mask (a heat map that is 0 there is a miss). Missing heat maps are reported, never guessed.
"""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from isl_rt import metrics, plots
from isl_rt.errors import InputError
from isl_rt.outputs import SLICE_COLUMNS, safe_name, write_atomic, write_json_atomic

SIZE_GROUPS: tuple[str, ...] = ("small", "medium", "large")
NO_MASK = "no mask"


@dataclass(frozen=True)
class Truth:
    """What the labels say of one slice."""

    label: int
    #: the lesion mask, or None
    mask: Path | None


@dataclass(frozen=True)
class SliceLabels:
    """Labels by join key: a resolved image path (``by_image``) or (series, slice index)."""

    path: Path
    by_image: bool
    labels: dict[Any, Truth]


@dataclass(frozen=True)
class LabelledSlice:
    """One slice of the slices CSV joined with its label."""

    series: str
    index: int
    source: str
    score: float
    apds: float
    #: None when the bundle had no slice threshold
    flagged: bool | None
    label: int
    mask: Path | None


def image_key(path: str | os.PathLike[str]) -> str:
    """The join key of an image path: resolved, links too (as :mod:`isl_rt.labels` resolves them)."""
    return str(Path(path).resolve())


def is_slice_labels(path: Path) -> bool:
    """Whether a labels CSV labels slices (an ``image`` column, :func:`isl_rt.labels.is_slice_labels`,
    or ``series`` and ``slice`` columns) rather than series (``SeriesInstanceUID``)."""
    from isl_rt import labels as slice_labels

    if slice_labels.is_slice_labels(path):
        return True
    try:
        with Path(path).open(newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError):
        return False
    return "SeriesInstanceUID" not in header and {"series", "slice"} <= set(header)


def read_slice_labels(path: Path, label_column: str = "label") -> SliceLabels:
    """Read a per-slice labels CSV (see the module text); InputError naming the file and line when
    a column is missing, a label is not 0 or 1, or a slice is labelled twice."""
    from isl_rt import labels as slice_labels

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist or is not a file: pass a per-slice labels CSV.")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        fields = reader.fieldnames or []
        if "image" in fields:
            by_image = True
        elif "series" in fields and "slice" in fields:
            by_image = False
            rows = list(reader)
        else:
            raise InputError(
                f"{path} names neither an image path (column 'image') nor a series and slice (columns 'series' and "
                f"'slice'); it has {', '.join(fields) or 'no columns'}."
            )
    if by_image:
        return SliceLabels(path, True, {
            str(r.image): Truth(r.label, r.mask) for r in slice_labels.read_slice_labels(path, label_column=label_column)})
    if label_column not in fields:
        raise InputError(f"{path} has no label column '{label_column}' (it has {', '.join(fields)}); name it with --label-column.")
    truths: dict[Any, Truth] = {}
    lines: dict[Any, int] = {}
    for line, row in enumerate(rows, start=2):
        value = (row[label_column] or "").strip()
        if value not in ("0", "1"):
            raise InputError(f"{path} line {line}: {label_column} {value!r} is not 0 (no lesion) or 1 (lesion).")
        index = (row["slice"] or "").strip()
        if not index.isdigit():
            raise InputError(f"{path} line {line}: slice {index!r} is not a slice index (0, 1, 2, ...).")
        key = ((row["series"] or "").strip(), int(index))
        if key in lines:
            raise InputError(f"{path} line {line}: series {key[0]} slice {key[1]} is labelled again (first on line {lines[key]}).")
        lines[key] = line
        mask = (row.get("mask") or "").strip()
        truths[key] = Truth(int(value), (path.resolve().parent / mask).resolve() if mask else None)
    return SliceLabels(path, False, truths)


def read_slice_rows(slices_csv: Path) -> list[dict[str, str]]:
    """The rows of a slices CSV written by ``isl-rt scan``."""
    slices_csv = Path(slices_csv)
    if not slices_csv.is_file():
        raise InputError(f"{slices_csv} does not exist: scan first (isl-rt scan writes <stem>.slices.csv beside --out).")
    with slices_csv.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in SLICE_COLUMNS if c != "reason" and c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"{slices_csv} lacks the column(s) {missing}: it is not a slices CSV written by isl-rt scan.")
        return list(reader)


def join_slices(slices_csv: Path, labels: SliceLabels) -> tuple[list[LabelledSlice], dict[str, Any]]:
    """Slices of the slices CSV that have a label, and what was left out on either side."""
    rows = read_slice_rows(slices_csv)
    joined: list[LabelledSlice] = []
    unlabelled: list[str] = []
    unjudged: list[tuple[int, str]] = []
    seen: set[Any] = set()
    for row in rows:
        index = int(row["slice"])
        key: Any = image_key(row["source"]) if labels.by_image else (row["series"], index)
        label = labels.labels.get(key)
        if label is None:
            unlabelled.append(f"{row['series']} slice {index} ({row['source']})")
            continue
        seen.add(key)
        if not row["slice_score"]:  # not scored (no cranial cavity): left out of every figure, counted
            unjudged.append((label.label, row.get("reason", "")))
            continue
        flagged = {"1": True, "0": False}.get(row["flagged"])
        joined.append(LabelledSlice(row["series"], index, row["source"], float(row["slice_score"]), float(row["apds"]),
                                    flagged, label.label, label.mask))
    not_scored = [k for k in labels.labels if k not in seen]
    problems = {
        "scored_but_not_labelled": len(unlabelled),
        "scored_but_not_labelled_examples": unlabelled[:5],
        "labelled_but_not_scored": len(not_scored),
        # slices the scan did not score (its reason in the slices CSV), by label
        "not_scored": len(unjudged),
        "not_scored_lesion": sum(label == 1 for label, _ in unjudged),
    }
    return joined, problems


# ---- masks and localisation ---------------------------------------------------------------------
def read_mask(path: Path) -> np.ndarray:
    """A lesion mask image as bool [H, W] (any non-zero pixel is lesion)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("L")) > 0
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise InputError(f"{path} is not a readable mask image ({type(err).__name__}: {err}).") from None


#: How lesion masks are read for size groups and localisation: ``none`` as drawn; ``hull`` each
#: 8-connected part filled to its convex hull; ``slice-hull`` all of the slice's mask pixels
#: together filled to one convex hull. PHE-SICH-CT-IDS draws many masks as the oedema ring around a
#: haematoma, so the blood itself lies inside the ring but outside the mask; most of its rings are
#: drawn in two or more pieces (71 of the 114 lesion masks of the validation patients), and a
#: piece's own hull still leaves the blood out, which ``slice-hull`` does not (it also joins two
#: lesions of one slice into one region).
MASK_FILLS = ("none", "hull", "slice-hull")


def fill_mask(mask: np.ndarray, fill: str) -> np.ndarray:
    """``mask`` (bool [H, W]) as ``fill`` says (:data:`MASK_FILLS`): with ``hull``, every pixel
    whose centre lies in the convex hull of a part's pixel squares joins that part; with
    ``slice-hull``, every pixel whose centre lies in the convex hull of all the mask's pixel squares."""
    if fill not in MASK_FILLS:
        raise InputError(f"mask fill must be one of {', '.join(MASK_FILLS)}, got {fill!r}.")
    if fill == "none" or not mask.any():
        return mask
    from scipy import ndimage

    if fill == "slice-hull":  # one part: every mask pixel
        parts = mask.astype(np.int32)
    else:
        parts, _ = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    out = mask.copy()
    for index, window in enumerate(ndimage.find_objects(parts), start=1):
        out[window] |= _inside_hull(parts[window] == index)
    return out


def _inside_hull(part: np.ndarray) -> np.ndarray:
    """bool of ``part``'s shape: pixels whose centre lies in the convex hull of the True pixels' squares."""
    from scipy.spatial import ConvexHull

    square = np.array([(-0.5, -0.5), (-0.5, 0.5), (0.5, -0.5), (0.5, 0.5)])
    pts = np.argwhere(part).astype(np.float64)
    planes = ConvexHull((pts[:, None, :] + square[None]).reshape(-1, 2)).equations  # n·p + c <= 0 inside
    yy, xx = np.mgrid[0 : part.shape[0], 0 : part.shape[1]]
    grid = np.stack([yy.ravel(), xx.ravel()], axis=1).astype(np.float64)
    return np.all(grid @ planes[:, :2].T + planes[:, 2] <= 1e-9, axis=1).reshape(yy.shape)


def _size_groups(lesions: list[LabelledSlice], areas: dict[int, int]) -> tuple[dict[int, str], dict[str, list[int]]]:
    """Tercile group of every lesion slice by mask area (``areas`` by position in ``lesions``), and
    each group's area range in pixels."""
    measured = np.array([areas[i] for i in sorted(areas)], dtype=np.float64)
    group: dict[int, str] = {}
    ranges: dict[str, list[int]] = {}
    if measured.size:
        low, high = np.quantile(measured, [1 / 3, 2 / 3])
        for i, area in areas.items():
            group[i] = "small" if area <= low else "medium" if area <= high else "large"
        for name in SIZE_GROUPS:
            values = [areas[i] for i in areas if group[i] == name]
            if values:
                ranges[name] = [min(values), max(values)]
    for i in range(len(lesions)):
        group.setdefault(i, NO_MASK)
    return group, ranges


def _localise(
    slices: list[LabelledSlice], masks: dict[int, np.ndarray], heatmaps: Path
) -> tuple[dict[str, Any], dict[int, bool]]:
    """Pixel AUROCs and hits from the heat maps under ``heatmaps``; hits by slice position."""
    everything, lesion_only = metrics.PixelAuc(), metrics.PixelAuc()
    hits: dict[int, bool] = {}
    missing: set[str] = set()
    mismatched: list[str] = []
    outside = inside = 0
    miss_distances: list[float] = []
    by_series: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(slices):
        if s.label == 0 or i in masks:
            by_series[s.series].append(i)
    for series, members in by_series.items():
        npz_path = heatmaps / safe_name(series) / "heatmaps.npz"
        if not npz_path.is_file():
            missing.add(series)
            continue
        with np.load(npz_path) as npz:
            heat_all = npz["heat"]
            region_all = npz["region"] if "region" in npz.files else None
        for i in members:
            s = slices[i]
            if s.index >= heat_all.shape[0]:
                mismatched.append(f"{series} slice {s.index}: {npz_path} holds {heat_all.shape[0]} slices")
                continue
            heat = heat_all[s.index]
            region = np.ones(heat.shape, dtype=bool) if region_all is None else region_all[s.index] > 0
            if s.label == 0:
                everything.add(heat[region], np.zeros(int(region.sum()), dtype=bool))
                continue
            mask = masks[i]
            if mask.shape != heat.shape:
                mismatched.append(f"{s.mask} is {mask.shape[1]}×{mask.shape[0]} but its slice is {heat.shape[1]}×{heat.shape[0]}")
                continue
            inside += int((mask & region).sum())
            outside += int((mask & ~region).sum())
            everything.add(heat[region], mask[region])
            lesion_only.add(heat[region], mask[region])
            distance = metrics.heat_distance(np.where(region, heat.astype(np.float32), 0.0), mask)
            hits[i] = distance == 0.0  # as metrics.heat_hit
            if distance:
                miss_distances.append(distance)
    result = {
        "pixel_auroc": everything.auc(),
        "pixel_auroc_lesion_slices": lesion_only.auc(),
        "hit_rate": float(np.mean(list(hits.values()))) if hits else float("nan"),
        "hits": int(sum(hits.values())),
        "n_lesion_slices": len(hits),
        "miss_distance_median": float(np.median(miss_distances)) if miss_distances else None,
        "n_miss_distances": len(miss_distances),
        "n_positive_pixels": everything.n_positive,
        "n_negative_pixels": everything.n_negative,
        "mask_pixels_outside_region": outside,
        "mask_pixels_inside_region": inside,
        "series_without_heatmaps": sorted(missing),
        "mismatched": mismatched[:20],
        "n_mismatched": len(mismatched),
    }
    return result, hits


# ---- the report ----------------------------------------------------------------------------------
def _auc_block(
    y: np.ndarray, score: np.ndarray, series: np.ndarray, *, resamples: int, fraction: float, seed: int
) -> dict[str, Any]:
    ci = metrics.bootstrap_auc(y, score, resamples=resamples, fraction=fraction, seed=seed, groups=series)
    return {"auc": metrics.auc(y, score), "ci95": [ci.low, ci.high], "ci_resamples": ci.resamples}


def evaluate_slices(
    slices_csv: Path,
    labels_csv: Path,
    out_dir: Path,
    *,
    label_column: str = "label",
    heatmaps: Path | None = None,
    resamples: int = 1000,
    fraction: float = 0.3,
    seed: int = 0,
    mask_fill: str = "none",
) -> dict[str, Any]:
    """Compute every number, write ``report.md``, ``metrics.json``, ``roc.png`` and
    ``roc_by_size.png`` into ``out_dir``; returns the metrics (see the module text). Masks are
    read as ``mask_fill`` says (:func:`fill_mask`) for both the size groups and localisation."""
    if mask_fill not in MASK_FILLS:
        raise InputError(f"--mask-fill must be one of {', '.join(MASK_FILLS)}, got {mask_fill!r}.")
    labels = read_slice_labels(labels_csv, label_column)
    slices, problems = join_slices(slices_csv, labels)
    healthy = [s for s in slices if s.label == 0]
    lesions = [s for s in slices if s.label == 1]
    if not healthy or not lesions:
        raise InputError(
            f"Slice-level evaluation needs lesion and lesion-free slices; after joining {slices_csv} and {labels_csv} "
            f"there are {len(lesions)} lesion and {len(healthy)} lesion-free slices."
        )
    y = np.array([s.label for s in slices])
    score = np.array([s.score for s in slices])
    series = np.array([s.series for s in slices])
    balanced = metrics.balanced_threshold(y, score)
    flags = [s.flagged for s in slices]
    bundle_point = None
    if all(f is not None for f in flags):
        f = np.array(flags, dtype=bool)
        bundle_point = {"sensitivity": float(f[y == 1].mean()), "specificity": float((~f[y == 0]).mean())}
    overall = _auc_block(y, score, series, resamples=resamples, fraction=fraction, seed=seed)
    result: dict[str, Any] = {
        "level": "slice",
        "auc": overall["auc"],
        "auc_ci95": overall["ci95"],
        "bootstrap": {"resamples": resamples, "fraction": fraction, "seed": seed, "unit": "series",
                      "valid": overall["ci_resamples"]},
        "n_slices": len(slices),
        "n_lesion": len(lesions),
        "n_healthy": len(healthy),
        "n_series": int(np.unique(series).size),
        "balanced_threshold": {"threshold": balanced.threshold, "sensitivity": balanced.sensitivity,
                               "specificity": balanced.specificity},
        "bundle_threshold": bundle_point,
        "problems": problems,
        "mask_fill": mask_fill,
    }

    # masks: areas for the size groups, pixels for localisation
    masks: dict[int, np.ndarray] = {}
    mask_problems: list[str] = []
    positions = {id(s): i for i, s in enumerate(slices)}
    for s in lesions:
        if s.mask is None:
            continue
        try:
            mask = fill_mask(read_mask(s.mask), mask_fill)
        except InputError as err:
            mask_problems.append(str(err))
            continue
        if mask.any():
            masks[positions[id(s)]] = mask
    lesion_positions = [positions[id(s)] for s in lesions]
    areas = {k: int(masks[p].sum()) for k, p in enumerate(lesion_positions) if p in masks}
    group_of, ranges = _size_groups(lesions, areas)
    problems["unreadable_masks"] = mask_problems

    hits: dict[int, bool] = {}
    if heatmaps is None:
        result["localisation"] = {"available": False, "reason": "no heat maps given: scan with --heatmaps DIR and pass --heatmaps DIR"}
    elif not masks:
        result["localisation"] = {"available": False, "reason": f"{labels_csv} gives no lesion masks (column 'mask')"}
    else:
        local, hits = _localise(slices, masks, Path(heatmaps))
        result["localisation"] = {"available": True, **local}

    healthy_idx = [i for i, s in enumerate(slices) if s.label == 0]
    by_size: dict[str, Any] = {}
    for name in (*SIZE_GROUPS, NO_MASK):
        members = [lesion_positions[k] for k in range(len(lesions)) if group_of[k] == name]
        if not members:
            continue
        pick = np.array(members + healthy_idx)
        block = _auc_block(y[pick], score[pick], series[pick], resamples=resamples, fraction=fraction, seed=seed)
        group_hits = [hits[p] for p in members if p in hits]
        by_size[name] = {
            "n": len(members),
            **block,
            "area_pixels": ranges.get(name),
            "sensitivity_at_balanced": float((score[members] > balanced.threshold).mean()),
            "sensitivity_at_bundle": None if bundle_point is None else float(np.mean([slices[p].flagged for p in members])),
            "hit_rate": float(np.mean(group_hits)) if group_hits else None,
            "n_localised": len(group_hits),
        }
    result["by_size"] = by_size

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    curve = metrics.roc(y, score)
    plots.line_chart(
        out_dir / "roc.png",
        [plots.Series(1 - curve.specificity, curve.sensitivity, f"all lesion slices AUC {result['auc']:.3f}")],
        title=f"Slice-level ROC, {len(lesions)} lesion vs {len(healthy)} lesion-free slices",
        xlabel="1 - specificity", ylabel="sensitivity", xlim=(0, 1), ylim=(0, 1), diagonal=True,
    )
    curves = []
    for name, row in by_size.items():
        members = [lesion_positions[k] for k in range(len(lesions)) if group_of[k] == name]
        pick = np.array(members + healthy_idx)
        c = metrics.roc(y[pick], score[pick])
        curves.append(plots.Series(1 - c.specificity, c.sensitivity, f"{name} {row['auc']:.3f}"))
    plots.line_chart(
        out_dir / "roc_by_size.png", curves, title="Slice-level ROC by lesion size (mask-area terciles)",
        xlabel="1 - specificity", ylabel="sensitivity", xlim=(0, 1), ylim=(0, 1), diagonal=True,
    )
    write_json_atomic(out_dir / "metrics.json", result)
    write_atomic(out_dir / "report.md", render_markdown(result).encode())
    return result


def _fmt(value: Any, spec: str = ".3f") -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return format(value, spec)


def render_markdown(result: dict[str, Any]) -> str:
    """The slice-level report as Markdown."""
    b, t = result["balanced_threshold"], result["bundle_threshold"]
    lines = [
        "# isl-rt evaluation (slice level)",
        "",
        f"- slices: {result['n_slices']} ({result['n_lesion']} lesion, {result['n_healthy']} lesion-free) "
        f"of {result['n_series']} series",
        f"- **AUC {result['auc']:.3f}** (95% CI {_fmt(result['auc_ci95'][0])}–{_fmt(result['auc_ci95'][1])}; "
        f"{result['bootstrap']['resamples']} draws of {result['bootstrap']['fraction']:.0%} of the series)",
        f"- balanced threshold {b['threshold']:.4g}: sensitivity {b['sensitivity']:.3f}, specificity {b['specificity']:.3f}",
        "- bundle slice threshold: " + ("none (the bundle has no slice threshold)" if t is None else
                                        f"sensitivity {t['sensitivity']:.3f}, specificity {t['specificity']:.3f}"),
        "",
        "### By lesion size (mask-area terciles; each against all lesion-free slices)",
        "",
        "| group | n | mask area (px) | AUC | 95% CI | sens. @ balanced | sens. @ bundle | hit rate |",
        "|---|---:|---|---:|---|---:|---:|---:|",
    ]
    for name, r in result["by_size"].items():
        area = "-" if r["area_pixels"] is None else f"{r['area_pixels'][0]}–{r['area_pixels'][1]}"
        hit = "-" if r["hit_rate"] is None else f"{r['hit_rate']:.3f} ({r['n_localised']})"
        lines.append(
            f"| {name} | {r['n']} | {area} | {r['auc']:.3f} | {_fmt(r['ci95'][0])}–{_fmt(r['ci95'][1])} "
            f"| {r['sensitivity_at_balanced']:.3f} | {_fmt(r['sensitivity_at_bundle'])} | {hit} |"
        )
    loc = result["localisation"]
    lines += ["", "### Localisation", ""]
    if not loc["available"]:
        lines.append(f"- not computed: {loc['reason']}")
    else:
        lines += [
            f"- pixel AUROC inside the scored region: {_fmt(loc['pixel_auroc'])} (all slices), "
            f"{_fmt(loc['pixel_auroc_lesion_slices'])} (lesion slices only)",
            f"- hit rate (heat-map maximum inside the mask): {_fmt(loc['hit_rate'])} "
            f"({loc['hits']} of {loc['n_lesion_slices']} lesion slices with a mask)",
            f"- misses: the heat-map maximum lies a median of {_fmt(loc['miss_distance_median'], '.1f')} pixels (source grid) from "
            f"the nearest mask pixel ({loc['n_miss_distances']} misses with a maximum)",
            f"- mask pixels outside the scored region: {loc['mask_pixels_outside_region']} of "
            f"{loc['mask_pixels_outside_region'] + loc['mask_pixels_inside_region']}",
        ]
        if loc["series_without_heatmaps"]:
            lines.append(f"- **heat maps missing** for {len(loc['series_without_heatmaps'])} series (left out): "
                         + ", ".join(loc["series_without_heatmaps"][:5]))
        if loc["n_mismatched"]:
            lines.append(f"- {loc['n_mismatched']} slices left out (mask or heat map does not match): "
                         + "; ".join(loc["mismatched"][:3]))
    p = result["problems"]
    lines += [
        "",
        "### Left out",
        "",
        f"- scored but not in the labels: {p['scored_but_not_labelled']}",
        f"- labelled but not scored: {p['labelled_but_not_scored']}",
        f"- scanned but not scored (no cranial cavity; reason in the slices CSV): {p.get('not_scored', 0)} "
        f"({p.get('not_scored_lesion', 0)} of them lesion slices)",
        f"- unreadable masks: {len(p['unreadable_masks'])}" + "".join(f"\n  - {e}" for e in p["unreadable_masks"][:5]),
        "",
    ]
    return "\n".join(lines)
