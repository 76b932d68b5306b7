"""Does a 300-series HTML report stay usable? Index load time in a real headless Chromium, and
the time `isl-rt report` spends per series.

    python benchmarks/bench_report.py [--series 300] [--real 4] [--repeats 5] [--out build/bench-report]

1. Writes ``--real`` phantom series (half with a disorder) and scans them with the shipped bundle
   (``--stride 2``, heat maps on), then times ``write_report`` on that scan: seconds per series
   page (DICOM read again, PNG slices, overlays, thumbnail, page).
2. Builds the index of a ``--series``-row report with the same page code: the real series'
   entries repeated under distinct keys, each with its own thumbnail file (300 distinct images),
   linking to the real series pages. The index is what a reader opens first; series pages load
   one series each, so their cost does not grow with the report.
3. Opens, in headless Chromium from file://, a blank page (the reference), the index (``--repeats``
   fresh navigations) and a real series page, and reads the browser's navigation timing:
   DOMContentLoaded, the load event (every thumbnail in view decoded; the others are lazy), the
   time to sort the 300 rows by score and to filter them, and, on the series page, the time until
   every slice and overlay has loaded.

Prints one JSON object per line: the machine, the report writing, then one line per page with
the median and range over the repeats. Needs Chromium, chromedriver and selenium.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,900", "--force-device-scale-factor=1")


def emit(data: dict[str, Any]) -> None:
    print(json.dumps(data), flush=True)


def machine(chromium: str) -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    version = subprocess.run([chromium, "--version"], capture_output=True, text=True).stdout.strip()
    import selenium

    return {"kind": "machine", "cpu": cpu, "cpus": os.cpu_count(), "loadavg_1min": round(os.getloadavg()[0], 2),
            "platform": platform.platform(), "python": platform.python_version(), "chromium": version,
            "selenium": selenium.__version__}


def scan_cohort(out: Path, n: int, stride: int, threads: int) -> Path:
    from isl_rt.backends import open_backends
    from isl_rt.bundle import default_bundle_path, load_bundle
    from isl_rt.io.phantom import write_cohort
    from isl_rt.pipeline import Scorer, params_from_bundle, scan_directory, with_stride

    write_cohort(out / "cohort", n, 0.5, 20250611)
    bundle = load_bundle(default_bundle_path())
    pair = open_backends(bundle, "onnxruntime", threads=threads)
    scores = out / "scores.csv"
    with pair:
        scorer = Scorer(with_stride(params_from_bundle(bundle), stride), pair.dedn, pair.drn)
        scan_directory(out / "cohort", scores, bundle, scorer, backend_name=pair.name, resume=False,
                       heatmaps=out / "heatmaps")
    return scores


def big_index(scores: Path, out: Path, series: int) -> Path:
    """A ``series``-row index from the real rows of ``scores`` (see the module docstring)."""
    from isl_rt.evaluate import read_score_rows
    from isl_rt.report import Report

    report = Report(scores, out)
    real = [report.add(row) for row in read_score_rows(scores) if row["status"] == "ok"]
    report.entries.clear()
    for j in range(series):
        base = real[j % len(real)]
        key = f"{base.key}.{j}"
        shutil.copyfile(out / base.thumbnail, out / "thumbs" / f"{key}.png")
        row = {**base.row, "SeriesInstanceUID": f"{base.row['SeriesInstanceUID']}.{j}"}
        report.entries[key] = dataclasses.replace(base, key=key, row=row, thumbnail=f"thumbs/{key}.png")
    report.write_index()
    return out / "index.html"


def browser(chromium: str, driver_path: str) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='isl-rt-bench-')}")
    return webdriver.Chrome(options=options, service=Service(driver_path))


NAVIGATION = """
const nav = performance.getEntriesByType('navigation')[0];
return {dom_content_loaded_ms: nav.domContentLoadedEventEnd, load_ms: nav.loadEventEnd};
"""

SORT_AND_FILTER = """
const button = document.querySelector('th.col-score button');
let t = performance.now(); button.click(); document.body.offsetHeight;
const sort_ms = performance.now() - t;
t = performance.now(); document.querySelector('[data-filter="flagged"]').click(); document.body.offsetHeight;
const filter_ms = performance.now() - t;
document.querySelector('[data-filter="all"]').click();
return {sort_ms: sort_ms, filter_ms: filter_ms, rows: document.querySelectorAll('#series-table tbody tr').length};
"""

ALL_IMAGES = """
const done = arguments[arguments.length - 1];
const data = JSON.parse(document.getElementById('series-data').textContent);
const urls = data.slices.concat(data.heats);
let left = urls.length;
urls.forEach(u => { const im = new Image(); im.onload = im.onerror = () => { if (--left === 0) done(performance.now()); }; im.src = u; });
"""


def timed_page(driver: Any, uri: str, repeats: int, script: str | None = None, async_script: str | None = None) -> dict[str, Any]:
    runs: list[dict[str, float]] = []
    for _ in range(repeats):
        driver.get("about:blank")
        driver.get(uri)
        while driver.execute_script("return document.readyState") != "complete":
            time.sleep(0.01)
        timing = driver.execute_script(NAVIGATION)
        if script:
            timing.update(driver.execute_script(script))
        if async_script:
            timing["all_slices_loaded_ms"] = driver.execute_async_script(async_script)
        runs.append(timing)
    keys = [k for k, v in runs[0].items() if isinstance(v, (int, float))]
    return {k: {"median": round(statistics.median(r[k] for r in runs), 1),
                "min": round(min(r[k] for r in runs), 1), "max": round(max(r[k] for r in runs), 1)} for k in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=300, help="rows of the big index")
    parser.add_argument("--real", type=int, default=4, help="phantom series really scanned and reported")
    parser.add_argument("--stride", type=int, default=2, help="scan --stride for the real series (speed only)")
    parser.add_argument("--threads", type=int, default=0, help="inference threads (0 = all)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("build/bench-report"))
    args = parser.parse_args()
    args.out = args.out.resolve()

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        sys.exit("needs chromium and chromedriver (apt-get install -y chromium chromium-driver)")
    emit(machine(chromium))
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)

    scores = scan_cohort(args.out / "scan", args.real, args.stride, args.threads)
    from isl_rt.report import write_report

    start, cpu = time.perf_counter(), time.process_time()
    summary = write_report(scores, args.out / "report")
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    slices = len(list((args.out / "report" / "series").glob("*/s*.png")))
    size = sum(p.stat().st_size for p in (args.out / "report").rglob("*") if p.is_file())
    emit({"kind": "write_report", "series_pages": summary.pages, "slices": slices, "seconds": round(seconds, 2),
          "seconds_per_series": round(seconds / max(summary.pages, 1), 2),
          "cpu_seconds_per_series": round(cpu / max(summary.pages, 1), 2), "bytes": size,
          "bytes_per_slice": round(size / max(slices, 1))})

    index = big_index(scores, args.out / f"report-{args.series}", args.series)
    blank = args.out / "blank.html"
    blank.write_text("<!doctype html><title>blank</title><p>blank</p>")
    page = next((args.out / "report" / "series").glob("*.html"))
    driver = browser(chromium, driver_path)
    try:
        emit({"kind": "page", "page": "blank (reference)", **timed_page(driver, blank.as_uri(), args.repeats)})
        emit({"kind": "page", "page": f"index, {args.series} series", "bytes": index.stat().st_size,
              **timed_page(driver, index.as_uri(), args.repeats, script=SORT_AND_FILTER)})
        emit({"kind": "page", "page": "series page", "slices": len(list(page.with_suffix("").glob("s*.png"))),
              **timed_page(driver, page.as_uri(), args.repeats, async_script=ALL_IMAGES)})
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
