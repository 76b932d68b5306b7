"""`isl-rt evaluate`: the paper's tables from a scores CSV and a labels CSV.

AUC overall and per disorder type (that type's scans against all healthy scans), 95% CIs from
resampling 30% of the scans 1000 times, sensitivity/specificity at the balanced threshold and at
the bundle's own (the ``flagged`` column), tables by size class and by urgency class, ROC curves
as PNG, a Markdown report and a JSON file holding every number (overall AUC under ``auc``).
Rows missing on either side and error rows are reported, never silently dropped.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from isl_rt import metrics, plots
from isl_rt.errors import InputError
from isl_rt.outputs import write_atomic, write_json_atomic


@dataclass(frozen=True)
class Scan:
    uid: str
    label: int
    score: float
    #: None when the bundle had no scan threshold
    flagged: bool | None
    disorder: str
    size_class: str
    urgency: str


def _read_csv(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist or is not a file.")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"{path} lacks the column(s) {missing}; it has {reader.fieldnames}.")
        return list(reader)


def read_labels(labels_csv: Path) -> dict[str, dict[str, str]]:
    """The rows of a labels CSV by SeriesInstanceUID; every label must be 0 or 1, and a series
    listed twice must carry the same label both times."""
    labels: dict[str, dict[str, str]] = {}
    for row in _read_csv(labels_csv, ("SeriesInstanceUID", "label")):
        uid, label = row["SeriesInstanceUID"], row["label"].strip()
        if label not in ("0", "1"):
            raise InputError(f"{labels_csv}: series {uid} has label {row['label']!r}; labels must be 0 or 1.")
        if uid in labels and labels[uid]["label"] != label:
            raise InputError(
                f"{labels_csv} labels series {uid} both {labels[uid]['label']} and {label}; keep one row per series."
            )
        labels[uid] = {**row, "label": label}
    return labels


def is_scores_csv(path: Path) -> bool:
    """Whether ``path`` is a scores CSV (a row per series) rather than a slices CSV."""
    path = Path(path)
    if not path.is_file():
        return False
    with path.open(newline="") as handle:
        return "scan_score" in (next(csv.reader(handle), None) or [])


def read_score_rows(scores_csv: Path) -> list[dict[str, str]]:
    """The rows of a scores CSV written by ``isl-rt scan`` (ok, error and skipped rows)."""
    return _read_csv(scores_csv, ("SeriesInstanceUID", "scan_score", "status"))


def join(scores_csv: Path, labels_csv: Path) -> tuple[list[Scan], dict[str, list[str]]]:
    """Scans present in both files with an ok score, and what was left out and why."""
    score_rows = read_score_rows(scores_csv)
    labels = read_labels(labels_csv)
    problems: dict[str, list[str]] = {"missing_in_labels": [], "missing_in_scores": [], "error_rows": [], "skipped_rows": []}
    scans: list[Scan] = []
    seen: set[str] = set()
    for row in score_rows:
        uid = row.get("series") or row["SeriesInstanceUID"]  # image series: the folder's series id
        if row["status"] != "ok":
            kind = "skipped_rows" if row["status"] == "skipped" else "error_rows"
            problems[kind].append(f"{uid or row.get('path', '')}: {row.get('error', '')}")
            seen.add(uid)
            continue
        if uid not in labels:
            problems["missing_in_labels"].append(uid)
            continue
        seen.add(uid)
        lab = labels[uid]
        scans.append(
            Scan(
                uid=uid,
                label=int(lab["label"]),
                score=float(row["scan_score"]),
                flagged={"1": True, "True": True, "true": True, "0": False, "False": False, "false": False}.get(row.get("flagged", "")),
                disorder=lab.get("disorder_type", "") or ("disorder" if lab["label"] == "1" else "healthy"),
                size_class=lab.get("size_class", ""),
                urgency=lab.get("urgency", ""),
            )
        )
    problems["missing_in_scores"] = sorted(set(labels) - seen)
    return scans, problems


def _group_metrics(
    group: list[Scan], healthy: list[Scan], *, resamples: int, fraction: float, seed: int, balanced: float
) -> dict[str, Any]:
    y = np.array([s.label for s in group + healthy])
    s = np.array([s.score for s in group + healthy])
    ci = metrics.bootstrap_auc(y, s, resamples=resamples, fraction=fraction, seed=seed)
    abnormal = np.array([x.score for x in group])
    return {
        "n": len(group),
        "auc": metrics.auc(y, s),
        "ci95": [ci.low, ci.high],
        "ci_resamples": ci.resamples,
        "sensitivity_at_balanced": float((abnormal > balanced).mean()),
        "sensitivity_at_bundle": None if any(x.flagged is None for x in group) else float(np.mean([x.flagged for x in group])),
    }


def evaluate(
    scores_csv: Path,
    labels_csv: Path,
    out_dir: Path,
    *,
    resamples: int = 1000,
    fraction: float = 0.3,
    seed: int = 0,
) -> dict[str, Any]:
    """Compute every number, write ``report.md``, ``metrics.json`` and ROC PNGs into ``out_dir``."""
    scans, problems = join(scores_csv, labels_csv)
    healthy = [s for s in scans if s.label == 0]
    abnormal = [s for s in scans if s.label == 1]
    if not healthy or not abnormal:
        raise InputError(
            f"Evaluation needs healthy and disorder scans with ok scores; after joining {scores_csv} and "
            f"{labels_csv} there are {len(healthy)} healthy and {len(abnormal)} disorder scans."
        )
    y = np.array([s.label for s in scans])
    score = np.array([s.score for s in scans])
    calibrated = all(s.flagged is not None for s in scans)
    flagged = np.array([bool(s.flagged) for s in scans])
    ci = metrics.bootstrap_auc(y, score, resamples=resamples, fraction=fraction, seed=seed)
    balanced = metrics.balanced_threshold(y, score)
    result: dict[str, Any] = {
        "auc": metrics.auc(y, score),
        "auc_ci95": [ci.low, ci.high],
        "bootstrap": {"resamples": resamples, "fraction": fraction, "seed": seed, "valid": ci.resamples},
        "n_scans": len(scans),
        "n_healthy": len(healthy),
        "n_disorder": len(abnormal),
        "balanced_threshold": {
            "threshold": balanced.threshold,
            "sensitivity": balanced.sensitivity,
            "specificity": balanced.specificity,
        },
        "bundle_threshold": None if not calibrated else {
            "sensitivity": float(flagged[y == 1].mean()),
            "specificity": float((~flagged[y == 0]).mean()),
        },
        "problems": problems,
    }
    for key, attr in (("by_disorder", "disorder"), ("by_size", "size_class"), ("by_urgency", "urgency")):
        table: dict[str, Any] = {}
        for name in sorted({getattr(s, attr) for s in abnormal if getattr(s, attr)}):
            group = [s for s in abnormal if getattr(s, attr) == name]
            table[name] = _group_metrics(
                group, healthy, resamples=resamples, fraction=fraction, seed=seed, balanced=balanced.threshold
            )
        result[key] = table

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    curve = metrics.roc(y, score)
    plots.line_chart(
        out_dir / "roc.png",
        [plots.Series(1 - curve.specificity, curve.sensitivity, f"all disorders AUC {result['auc']:.3f}")],
        title=f"ROC, {len(abnormal)} disorder vs {len(healthy)} healthy scans",
        xlabel="1 - specificity", ylabel="sensitivity", xlim=(0, 1), ylim=(0, 1), diagonal=True,
    )
    type_curves = []
    for name, row in result["by_disorder"].items():
        group = [s for s in abnormal if s.disorder == name] + healthy
        c = metrics.roc(np.array([s.label for s in group]), np.array([s.score for s in group]))
        type_curves.append(plots.Series(1 - c.specificity, c.sensitivity, f"{name} {row['auc']:.3f}"))
    plots.line_chart(
        out_dir / "roc_by_disorder.png", type_curves, title="ROC per disorder type (vs all healthy scans)",
        xlabel="1 - specificity", ylabel="sensitivity", xlim=(0, 1), ylim=(0, 1), diagonal=True,
    )
    write_json_atomic(out_dir / "metrics.json", result)
    write_atomic(out_dir / "report.md", render_markdown(result).encode())
    return result


def group_table(title: str, rows: dict[str, Any], *, heading: str = "###") -> list[str]:
    """Markdown lines of one grouped table (by disorder, size or urgency) of :func:`evaluate`'s result."""
    lines = [f"{heading} {title}", "", "| group | n | AUC | 95% CI | sens. @ balanced | sens. @ bundle |", "|---|---:|---:|---|---:|---:|"]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['n']} | {r['auc']:.3f} | {r['ci95'][0]:.3f}–{r['ci95'][1]:.3f} "
            f"| {r['sensitivity_at_balanced']:.3f} | {'-' if r['sensitivity_at_bundle'] is None else format(r['sensitivity_at_bundle'], '.3f')} |"
        )
    return lines + [""]


def render_markdown(result: dict[str, Any]) -> str:
    """The evaluation report as Markdown."""
    b, t = result["balanced_threshold"], result["bundle_threshold"]
    lines = [
        "# isl-rt evaluation",
        "",
        f"- scans: {result['n_scans']} ({result['n_disorder']} disorder, {result['n_healthy']} healthy)",
        f"- **AUC {result['auc']:.3f}** (95% CI {result['auc_ci95'][0]:.3f}–{result['auc_ci95'][1]:.3f}; "
        f"{result['bootstrap']['resamples']} resamples of {result['bootstrap']['fraction']:.0%} of the scans)",
        f"- balanced threshold {b['threshold']:.4g}: sensitivity {b['sensitivity']:.3f}, specificity {b['specificity']:.3f}",
        "- bundle threshold: " + ("none (the bundle has no scan threshold)" if t is None
                                  else f"sensitivity {t['sensitivity']:.3f}, specificity {t['specificity']:.3f}"),
        "",
    ]
    lines += group_table("By disorder type (each against all healthy scans)", result["by_disorder"])
    lines += group_table("By lesion size", result["by_size"])
    lines += group_table("By treatment urgency", result["by_urgency"])
    p = result["problems"]
    lines += [
        "### Left out",
        "",
        f"- error rows in the scores: {len(p['error_rows'])}" + "".join(f"\n  - {e}" for e in p["error_rows"]),
        f"- skipped rows in the scores (files that are not CT series): {len(p['skipped_rows'])}"
        + "".join(f"\n  - {e}" for e in p["skipped_rows"][:5])
        + (f"\n  - … and {len(p['skipped_rows']) - 5} more (all in metrics.json)" if len(p["skipped_rows"]) > 5 else ""),
        f"- scored but not in the labels: {len(p['missing_in_labels'])}",
        f"- labelled but not scored: {len(p['missing_in_scores'])}",
        "",
    ]
    return "\n".join(lines)
