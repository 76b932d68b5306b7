"""The report's HTML: the index of every series and one page per scored series.

Every value that comes from the data (DICOM tags, paths, error sentences, labels) goes through
:func:`esc` into the HTML, or through :func:`json_script` into a JSON block that scripts read
with ``JSON.parse``; nothing from the data is ever placed in markup, a URL or a file name as it
is. The pages link our own stylesheet and scripts by relative paths, so they open from
``file://`` with no server and no network, and their Content-Security-Policy lets nothing else
load or run (no inline script or style, no remote request).
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from isl_rt import outputs

#: the order of the index before a reader sorts it (:func:`isl_rt.outputs.result_order`)
STATUS_ORDER = outputs.STATUS_ORDER


def esc(value: Any) -> str:
    """``value`` as text that is safe in HTML content and in quoted attributes."""
    return html.escape("" if value is None else str(value), quote=True)


def json_script(element_id: str, data: Any) -> str:
    """A ``<script type="application/json">`` block holding ``data``; ``<``, ``>`` and ``&``
    are written as JSON escapes, so no value can close the block or open markup."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return f'<script id="{esc(element_id)}" type="application/json">{text}</script>'


def number(value: Any, digits: int = 4) -> str:
    """A score as people read it: ``digits`` significant figures, "" for a missing value."""
    x = as_float(value)
    if x is None:
        return ""
    return f"{x:.{digits}g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"


#: APDS is shown in parts per million (ppm): it is a mean of heat (0 to 1 per pixel) over the
#: pixels of a slice, so its plain value is of the order of 1e-5 (:func:`legend` says what it is)
APDS_SCALE = 1e6
#: a heat value (0 to 1) is shown in percent of full heat
HEAT_SCALE = 100.0


def readable(value: Any, digits: int = 3) -> str:
    """A number people read without an exponent: ``digits`` significant figures, whole numbers
    from 10**digits up, "< 0.001" between 0 and 0.001; "" for a missing value."""
    x = as_float(value)
    if x is None:
        return ""
    if x == 0:
        return "0"
    if abs(x) < 1e-3:
        return "< 0.001" if x > 0 else "> -0.001"
    if abs(x) >= 10 ** digits:
        return f"{x:.0f}"
    return f"{x:.{digits}g}"


def apds_text(value: Any) -> str:
    """An APDS (the plain fraction the CSVs hold) in ppm, e.g. 5.83e-05 -> "58.3"; "" when missing."""
    x = as_float(value)
    return "" if x is None else readable(x * APDS_SCALE)


def as_float(value: Any) -> float | None:
    """``value`` as a finite float, or None (empty cells, NaN, text)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def finite_list(values: Sequence[float]) -> list[float | None]:
    """A JSON-ready list: NaN and infinities become null."""
    return [as_float(v) for v in values]


@dataclass
class IndexEntry:
    """One row of the index: a scores-CSV row with what the report made of it."""

    key: str
    row: dict[str, str]
    description: str = ""
    series_number: str = ""
    #: the DICOM StudyDate as YYYY-MM-DD; "" where there is none (images)
    study_date: str = ""
    #: relative links from the index; "" where there is none
    page: str = ""
    thumbnail: str = ""
    #: ground truth from --labels, e.g. "hydrocephalus (large)"; "" without labels
    truth: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        return self.row.get("status", "") or "error"

    @property
    def flagged(self) -> str:
        return self.row.get("flagged", "")

    def sort_key(self) -> tuple[int, int, float]:
        return outputs.result_order(self.row)


@dataclass(frozen=True)
class RunFacts:
    """What the index header says of the run."""

    scores_csv: str
    bundles: list[str]
    thresholds: list[str]
    written: str
    has_labels: bool


_HEAD = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{title}</title>
<link rel="stylesheet" href="{assets}/report.css">
</head>
"""


#: only our own files load: no inline script or style runs, nothing is fetched from a network
CONTENT_SECURITY_POLICY = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'"


def _head(title: str, assets: str) -> str:
    return _HEAD.format(title=esc(title), assets=assets, csp=esc(CONTENT_SECURITY_POLICY))


def series_title(entry: IndexEntry) -> str:
    """The series as a reader tells it apart, as plain text (escape it): series number, description
    and study date where the data has them, then the name of its source folder (or file), e.g.
    "series 2 · Head 5.0 · study 2020-03-12 · bleed"; the SeriesInstanceUID when there is nothing
    else. The patient is not named: the scan keeps no patient identity in its outputs."""
    parts = []
    if entry.series_number:
        parts.append(f"series {entry.series_number}")
    if entry.description:
        parts.append(entry.description)
    if entry.study_date:
        parts.append(f"study {entry.study_date}")
    path = entry.row.get("path", "")
    folder = path.rstrip("/").rsplit("/", 1)[-1]
    if folder:
        parts.append(folder)
    return " · ".join(parts) or entry.row.get("SeriesInstanceUID", "") or path


def study_date(value: Any) -> str:
    """A DICOM date (YYYYMMDD) as YYYY-MM-DD; any other text as it is; "" for none."""
    text = "" if value is None else str(value).strip()
    if len(text) == 8 and text.isdigit():
        return f"{text[:4]}-{text[4:6]}-{text[6:]}"
    return text


def _flag_cell(entry: IndexEntry) -> str:
    if entry.status != "ok":
        return '<td class="flag" data-v=""></td>'
    if entry.flagged == "1":
        return '<td class="flag" data-v="1"><span class="badge flagged" title="scan score above the bundle threshold">FLAGGED</span></td>'
    if entry.flagged == "0":
        return '<td class="flag" data-v="0"><span class="badge calm">below</span></td>'
    return '<td class="flag" data-v=""><span class="badge none" title="the bundle has no threshold">no threshold</span></td>'


def _num_cell(value: Any, css: str = "num", digits: int = 4) -> str:
    x = as_float(value)
    return f'<td class="{css}" data-v="{"" if x is None else repr(x)}">{esc(number(value, digits))}</td>'


def index_row(entry: IndexEntry, *, with_labels: bool) -> str:
    """One ``<tr>`` of the index."""
    row = entry.row
    label = esc(series_title(entry))
    uid = esc(row.get("SeriesInstanceUID", "") or row.get("path", ""))
    if entry.page:
        thumb = (f'<a href="{esc(entry.page)}" tabindex="-1"><img src="{esc(entry.thumbnail)}" alt="" loading="lazy" '
                 f'width="80" height="80"></a>') if entry.thumbnail else ""
        name = f'<a class="series-link" href="{esc(entry.page)}">{label}</a>'
    else:
        thumb, name = "", f'<span class="series-name">{label}</span>'
    top = as_float(row.get("top_slice"))
    apds = as_float(row.get("apds"))
    percentile = as_float(row.get("healthy_percentile"))
    status = entry.status
    problem = f'<div class="problem">{esc(row.get("error", ""))}</div>' if row.get("error") else ""
    notes = "".join(f'<div class="note">{esc(n)}</div>' for n in entry.notes)
    truth = f'<td class="truth" data-v="{esc(entry.truth)}">{esc(entry.truth)}</td>' if with_labels else ""
    return (
        f'<tr class="row-{esc(status)}{" is-flagged" if entry.flagged == "1" and status == "ok" else ""}" '
        f'data-status="{esc(status)}" data-flagged="{esc(entry.flagged if status == "ok" else "")}">'
        f"{_flag_cell(entry)}"
        f'<td class="thumb">{thumb}</td>'
        f'<td class="series" data-v="{label.lower()}">{name}<div class="uid">{uid}</div>{problem}{notes}</td>'
        f"{truth}"
        f"{_num_cell(row.get('scan_score'), 'num score')}"
        f'<td class="num" data-v="{"" if percentile is None else repr(percentile)}">'
        f'{"" if percentile is None else esc(f"{percentile:.0f}")}</td>'
        f"{_num_cell(row.get('n_slices'), 'num', 6)}"
        f'<td class="num" data-v="{"" if top is None else repr(top)}">{"" if top is None else int(top)}</td>'
        f"{_num_cell(row.get('max_slice_score'))}"
        f'<td class="num" data-v="{"" if apds is None else repr(apds)}">{esc(apds_text(apds))}</td>'
        f'<td class="status" data-v="{STATUS_ORDER.get(status, 1)}"><span class="status-{esc(status)}">{esc(status)}</span></td>'
        "</tr>"
    )


def index_page(entries: Sequence[IndexEntry], facts: RunFacts) -> str:
    """The index: every series, flagged first then by scan score, errors and skipped items last."""
    ordered = sorted(entries, key=IndexEntry.sort_key)
    ok = [e for e in ordered if e.status == "ok"]
    counts = {
        "all": len(ordered),
        "flagged": sum(e.flagged == "1" for e in ok),
        "calm": sum(e.flagged != "1" for e in ok),
        "error": sum(e.status not in ("ok", "skipped") for e in ordered),
        "skipped": sum(e.status == "skipped" for e in ordered),
    }
    filters = [("all", "All"), ("flagged", "Flagged"), ("calm", "Not flagged"), ("error", "Errors"), ("skipped", "Skipped")]
    buttons = "".join(
        f'<button type="button" data-filter="{key}" aria-pressed="{"true" if key == "all" else "false"}">'
        f'{text} <span class="count">{counts[key]}</span></button>'
        for key, text in filters
    )
    columns = [("flag", "Flag", "num"), ("thumb", "", ""), ("series", "Series", "text")]
    if facts.has_labels:
        columns.append(("truth", "Label", "text"))
    columns += [("score", "Scan score", "num"), ("pct", "Healthy pct.", "num"), ("slices", "Slices", "num"),
                ("top", "Top slice", "num"), ("max", "Max slice score", "num"), ("apds", "APDS (ppm)", "num"),
                ("status", "Status", "num")]
    header = "".join(
        f'<th scope="col" class="col-{key}">'
        + (f'<button type="button" data-sort="{index}" data-type="{kind}">{text}</button>' if kind else "")
        + "</th>"
        for index, (key, text, kind) in enumerate(columns)
    )
    rows = "\n".join(index_row(e, with_labels=facts.has_labels) for e in ordered)
    bundles = ", ".join(facts.bundles) or "unknown"
    thresholds = ", ".join(facts.thresholds) or "none (uncalibrated bundle: nothing is flagged)"
    empty = '<p class="empty">The scores CSV holds no rows yet.</p>' if not ordered else ""
    return (
        _head("isl-rt report", "assets")
        + '<body class="index-page">\n<header class="bar">'
        + '<h1>isl-rt report</h1>'
        + f'<div class="facts">{counts["flagged"]} flagged of {len(ok)} scored series · bundle {esc(bundles)} · '
        + f'scan-score threshold {esc(thresholds)} · {counts["error"]} errors · {counts["skipped"]} skipped</div>'
        + "</header>\n<main>\n"
        + f'<div class="toolbar" role="toolbar" aria-label="Show">{buttons}'
        + '<span id="shown" class="shown" aria-live="polite"></span></div>\n'
        + f'<table id="series-table" class="series-table"><thead><tr>{header}</tr></thead>\n<tbody>\n{rows}\n</tbody></table>\n'
        + empty
        + '<p class="foot">Sorted by scan score, flagged series first; click a column to sort, a series to open it. '
        + "Flagged: scan score above the bundle's threshold. Healthy pct.: share of the healthy calibration scans "
        + "scoring at or below this one. Top slice: the highest-scoring slice, numbered 0 to N−1 in the "
        + "series' order (CT: from the skull base) as the CSVs number it. APDS (ppm): the heat of a slice's "
        + "heat map per pixel of the head in parts per million, averaged over the scored slices (a series' page "
        + "says more). "
        + f"From {esc(facts.scores_csv)}, written {esc(facts.written)}. "
        + "Scores of a research method, not a diagnosis.</p>\n"
        + '</main>\n<script src="assets/index.js"></script>\n</body>\n</html>\n'
    )


@dataclass
class SeriesPage:
    """What one series page shows."""

    entry: IndexEntry
    info: Mapping[str, Any]
    n_slices: int
    scores: list[float | None]
    apds: list[float | None]
    flagged: list[bool]
    positions_mm: list[float | None] | None
    #: the bundle's scan-score threshold (flags the series) and slice-score threshold (flags a
    #: slice, drawn on the slice-score curve); None where the bundle has none
    scan_threshold: float | None
    slice_threshold: float | None
    #: image links relative to the page; empty lists where the slices are not shown
    slices: list[str]
    heats: list[str]
    heat_peaks: list[float | None]
    window: str
    aspect: float
    facts: dict[str, str]
    notes: list[str]


def _definition_list(items: Sequence[tuple[str, Any]]) -> str:
    return "<dl>" + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in items if v not in (None, "")) + "</dl>"


def _metadata_items(page: SeriesPage) -> list[tuple[str, Any]]:
    row, info = page.entry.row, page.info
    meta = info.get("metadata") if isinstance(info.get("metadata"), dict) else {}
    items: list[tuple[str, Any]] = [
        ("Series description", page.entry.description),
        ("Series number", page.entry.series_number),
        ("Source folder", row.get("path", "").rstrip("/").rsplit("/", 1)[-1]),
    ]
    items += [(str(k), v) for k, v in meta.items()]
    items += list(page.facts.items())
    items += [
        ("SeriesInstanceUID", row.get("SeriesInstanceUID", "")),
        ("StudyInstanceUID", row.get("StudyInstanceUID", "")),
        ("Source", row.get("path", "")),
    ]
    return items


def _scan_items(page: SeriesPage) -> list[tuple[str, Any]]:
    row, info = page.entry.row, page.info
    scan_threshold = "none (uncalibrated bundle)" if page.scan_threshold is None else number(page.scan_threshold, 6)
    slice_threshold = ("none (the bundle has no slice threshold)" if page.slice_threshold is None
                       else number(page.slice_threshold, 6))
    seconds = as_float(row.get("seconds"))
    return [
        ("Bundle", info.get("bundle", "")),
        ("Scan-score threshold", scan_threshold),
        ("Slice-score threshold", slice_threshold),
        ("Backend", info.get("backend", "")),
        ("DeDN passes per slice", info.get("dedn_passes_per_slice", "")),
        ("Scan score", number(row.get("scan_score"), 6)),
        ("Healthy percentile", number(row.get("healthy_percentile"), 3)),
        ("Mean APDS", "" if as_float(row.get("apds")) is None else f"{apds_text(row.get('apds'))} ppm"),
        ("Slices scored", "" if row.get("n_scored") in (None, "") else f"{row.get('n_scored')} of {row.get('n_slices')}"),
        ("Presentation", presentation_text(info.get("presentation"))),
        ("Scored in", "" if seconds is None else f"{seconds:.1f} s"),
    ]


def presentation_text(record: Any) -> str:
    """What the scan estimated of an image series' presentation (isl_rt.presentation), in one line:
    "as the bundle's data" when it changed nothing, "" for a series it does not apply to."""
    if not isinstance(record, Mapping):
        return ""
    if record.get("identity", False):
        return "as the bundle's data (nothing changed)"
    parts = []
    window = record.get("window")
    if isinstance(window, (list, tuple)) and len(window) == 2 and tuple(window) != (0.0, 1.0):
        parts.append(f"air {number(window[0], 2)} → black, skull {number(window[1], 2)} → white")
    for key, text in (("gamma", "gamma {}"), ("contrast", "contrast ×{}")):
        value = as_float(record.get(key))
        if value is not None and value != 1.0:
            parts.append(text.format(number(value, 3)))
    if as_float(record.get("blanked_pixels")):
        parts.append(f"{int(float(record['blanked_pixels']))} pixels of marks blanked")
    scale = as_float(record.get("scale"))
    if scale is not None and scale != 1.0:
        parts.append(f"framed {record.get('size_out', '')} px square, the head shown ×{number(scale, 2)} "
                     "(the bundle's field of view)")
    elif isinstance(record.get("pad"), (list, tuple)) and any(record["pad"]):
        parts.append(f"padded to {record.get('size_out', '')} px square")
    return "; ".join(parts) or "as the bundle's data (nothing changed)"


def _reason(info: Mapping[str, Any], index: int) -> str:
    """Why slice ``index`` of a series was not scored, as its per-series JSON says ("" if it does not)."""
    reasons = info.get("slice_reasons") or []
    return str(reasons[index]) if index < len(reasons) and reasons[index] else ""


def legend(page: SeriesPage) -> str:
    """What each number on a series page means, with this bundle's thresholds."""
    if page.scan_threshold is None:
        scan_flag = "the bundle has no scan-score threshold, so no series is flagged"
    else:
        scan_flag = (f"FLAGGED when above the bundle's scan-score threshold {number(page.scan_threshold)}, as the "
                     "scores CSV's flagged (not drawn on the slice curve: it applies to scan scores)")
    if page.slice_threshold is None:
        slice_flag = "the bundle has no slice-score threshold, so no slice is flagged"
    else:
        slice_flag = (f"▲ and red when above the bundle's slice-score threshold {number(page.slice_threshold)} "
                      "(the dashed line on the curve), as the slices CSV's flagged")
    apds = ("average pixel disorder score of a slice: its heat map (0 to 1 per pixel) summed over the slice and "
            "divided by the number of pixels of the network's input that are not black (about the head), in parts "
            "per million: 50 ppm is as much heat as 50 pixels at full heat per million pixels of the head. The CSVs "
            "and the JSON hold the plain fraction (ppm × 10⁻⁶); Mean APDS averages the scored slices.")
    peak = ("the hottest pixel of the slice's heat map, in % of full heat. Each overlay is scaled to its own peak: "
            "compare slices by their scores and APDS, not by their colours.")
    numbers = (f"0 to {page.n_slices - 1} in the series' order (CT: 0 is the most inferior), as the slices CSV's "
               "slice and the scores CSV's top_slice; the top slice scores highest.")
    unscored = ("no cranial cavity was found on the slice (skull base, vertex): no score and no APDS, never a 0; "
                "the slice table gives the reason on hover.")
    items = [
        ("Scan score", f"the series' score, higher the less it looks like the healthy scans; {scan_flag}."),
        ("Healthy percentile", "share of the bundle's healthy calibration scans scoring at or below this scan score."),
        ("Slice score", f"each slice's score; {slice_flag}."),
        ("APDS (ppm)", apds),
        ("Heat peak (%)", peak),
        ("Slice numbers", numbers),
        ("not scored", unscored),
    ]
    return '<section class="panel legend"><h2>What the numbers mean</h2>' + _definition_list(items) + "</section>"


def series_page(page: SeriesPage) -> str:
    """One series: the slice viewer with its heat overlay, the slice-score and APDS curves (the
    slice-score threshold drawn), the metadata, what scored it and a legend of its numbers."""
    entry, row = page.entry, page.entry.row
    title = series_title(entry)
    n = page.n_slices
    top = as_float(row.get("top_slice"))
    start = int(top) if top is not None and 0 <= top < n else 0
    data = {
        "n": n,
        "start": start,
        "scores": page.scores,
        "apds": page.apds,
        "flagged": page.flagged,
        "z": page.positions_mm,
        "slice_threshold": page.slice_threshold,
        "slices": page.slices,
        "heats": page.heats,
        "peaks": page.heat_peaks,
        "aspect": page.aspect,
    }
    flagged = row.get("flagged") == "1"
    badge = '<span class="badge flagged">FLAGGED</span> ' if flagged else (
        '<span class="badge calm">below threshold</span> ' if row.get("flagged") == "0" else "")
    truth = f'<span class="truth-label">label: {esc(entry.truth)}</span>' if entry.truth else ""
    threshold = "" if page.scan_threshold is None else f" / scan threshold {esc(number(page.scan_threshold))}"
    percentile = as_float(row.get("healthy_percentile"))
    facts = (f'scan score <b>{esc(number(row.get("scan_score")))}</b>{threshold}'
             + ("" if percentile is None else f" · healthy percentile {percentile:.0f}")
             + f" · {n} slices"
             + ("" if as_float(row.get("n_scored")) in (None, float(n)) else f" ({esc(row.get('n_scored'))} scored)")
             + f" · top slice {start} (slices 0–{n - 1})")
    if page.slices:
        first_heat = (f'<img id="heat" class="heat" alt="" src="{esc(page.heats[start])}">' if page.heats else "")
        viewer = (
            f'<div id="viewer" class="viewer" tabindex="0" data-slice="{start}" '
            'aria-label="Slice viewer: arrow keys or the wheel change the slice">'
            f'<img id="slice" class="slice" alt="slice" src="{esc(page.slices[start])}">{first_heat}'
            '<div class="corner tl"><span id="slice-no"></span><br><span id="slice-z"></span></div>'
            '<div class="corner tr"><span id="slice-score"></span><br><span id="slice-apds"></span></div>'
            f'<div class="corner bl">{esc(page.window)}</div>'
            '<div class="corner br" id="heat-peak"></div>'
            "</div>"
            f'<input id="scroll" class="scroll" type="range" min="0" max="{n - 1}" value="{start}" step="1" aria-label="Slice">'
        )
    else:
        viewer = '<div class="viewer missing"><p>No slices to show.</p></div>'
    controls = ""
    if page.heats:
        controls = (
            '<section class="panel controls"><h2>Heat map</h2>'
            '<label><input id="heat-on" type="checkbox" checked> overlay <kbd>H</kbd></label>'
            '<label>opacity <input id="heat-opacity" type="range" min="0" max="100" value="60" aria-label="Heat-map opacity"></label>'
            "<p class=\"hint\">Each slice's heat is scaled to its own peak (shown at the bottom right, in % of "
            "full heat); compare slices by their scores and APDS.</p></section>"
        )
    keys = (
        '<section class="panel keys"><h2>Keys</h2><p><kbd>↑</kbd><kbd>↓</kbd> or <kbd>←</kbd><kbd>→</kbd> or the wheel: '
        "previous / next slice · <kbd>PgUp</kbd><kbd>PgDn</kbd> 5 slices · <kbd>Home</kbd><kbd>End</kbd> · "
        "<kbd>T</kbd> top slice · <kbd>H</kbd> heat map · click the curves to jump</p></section>"
    )
    notes = "".join(f'<p class="note">{esc(n_)}</p>' for n_ in page.notes)
    warnings = [w for w in page.info.get("warnings") or [] if w]
    warning_html = ("<section class=\"panel\"><h2>Warnings</h2><ul>" + "".join(f"<li>{esc(w)}</li>" for w in warnings)
                    + "</ul></section>") if warnings else ""
    slice_rows = "".join(
        f'<tr data-slice="{i}" class="{"above" if page.flagged[i] else ""}"><td>{i}</td>'
        f'<td>{"" if page.positions_mm is None or page.positions_mm[i] is None else f"{page.positions_mm[i]:.1f}"}</td>'
        + (f"<td>{esc(number(page.scores[i]))}</td><td>{esc(apds_text(page.apds[i]))}</td></tr>" if page.scores[i] is not None
           else f'<td class="not-scored" title="{esc(_reason(page.info, i))}">not scored</td><td></td></tr>')
        for i in range(n)
    )
    return (
        _head(f"{title} · isl-rt report", "../assets")
        + '<body class="series-page">\n<header class="bar">'
        + '<a class="back" href="../index.html">← all series</a>'
        + f"<h1>{badge}{esc(title)}</h1>{truth}"
        + f'<div class="facts">{facts}</div></header>\n<main class="series">\n'
        + f'<section class="viewer-col">{notes}{viewer}</section>\n'
        + '<aside class="side">'
        + '<section class="panel"><h2>Slice score and APDS</h2>'
        + '<div id="curves" class="curves" aria-label="Slice scores and APDS per slice; click to show a slice"></div></section>'
        + controls
        + f'<section class="panel"><h2>Scan</h2>{_definition_list(_scan_items(page))}</section>'
        + legend(page)
        + f'<section class="panel"><h2>Series</h2>{_definition_list(_metadata_items(page))}</section>'
        + warning_html
        + '<section class="panel"><details><summary>Slices</summary><table id="slice-table" class="slice-table">'
        + "<thead><tr><th>slice</th><th>z (mm)</th><th>score</th><th>APDS (ppm)</th></tr></thead>"
        + f"<tbody>{slice_rows}</tbody></table></details></section>"
        + keys
        + "</aside>\n</main>\n"
        + json_script("series-data", data)
        + '\n<script src="../assets/series.js"></script>\n</body>\n</html>\n'
    )
