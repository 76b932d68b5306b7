"""The report in a real headless Chromium (Debian's `chromium` and `chromium-driver`, driven by
selenium): opened from file:// with the network closed, rows checked, a series scrolled with the
keys and the wheel, the overlay toggled, the curve clicked. Screenshots are kept under
build/report-tests/ for a person to look at. Skips, saying why, where Chromium is absent."""

from __future__ import annotations

import csv
import shutil
import tempfile
from pathlib import Path

import pytest

SCREENSHOTS = Path(__file__).resolve().parents[1] / "build" / "report-tests"
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1400,900", "--force-device-scale-factor=1",
)


def _find(*names: str) -> str | None:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium with a fresh profile; skips with the reason where one is missing."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install '.[test]')")
    binary = _find("chromium", "chromium-browser")
    driver_path = _find("chromedriver")
    if binary is None or driver_path is None:
        pytest.skip("Chromium or chromedriver is not installed (apt-get install -y chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="isl-rt-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    driver.set_page_load_timeout(30)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _problems(driver) -> list[str]:
    """Console errors and warnings the page produced (a blocked request, a script error)."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]


def _slice(driver) -> int:
    return int(driver.find_element("id", "viewer").get_attribute("data-slice"))


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_index_shows_every_row_flagged_first_and_filters_and_sorts(browser, scanned_report):
    from selenium.webdriver.common.by import By

    rows = _rows(scanned_report["scores"])
    browser.get((scanned_report["report"] / "index.html").as_uri())
    assert browser.title == "isl-rt report"
    shown = browser.find_elements(By.CSS_SELECTOR, "#series-table tbody tr")
    assert len(shown) == len(rows) == 4
    ok = sorted((r for r in rows if r["status"] == "ok"), key=lambda r: -float(r["scan_score"]))
    first = shown[0]
    assert first.get_attribute("data-flagged") == "1" and "FLAGGED" in first.text
    assert f"{float(ok[0]['scan_score']):.4g}" in first.text
    assert [r.get_attribute("data-status") for r in shown] == ["ok", "ok", "error", "skipped"]
    # the markup in a SeriesDescription is text on the page, and never ran
    assert any(scanned_report["markup"] in r.text for r in shown)
    assert browser.execute_script("return window.pwned === undefined")
    browser.save_screenshot(str(SCREENSHOTS / "index.png"))

    def visible():
        return [r.get_attribute("data-status") + r.get_attribute("data-flagged")
                for r in browser.find_elements(By.CSS_SELECTOR, "#series-table tbody tr") if r.is_displayed()]

    browser.find_element(By.CSS_SELECTOR, '[data-filter="flagged"]').click()
    assert visible() == ["ok1"]
    browser.find_element(By.CSS_SELECTOR, '[data-filter="error"]').click()
    assert visible() == ["error"]
    browser.find_element(By.CSS_SELECTOR, '[data-filter="calm"]').click()
    assert visible() == ["ok0"]
    browser.find_element(By.CSS_SELECTOR, '[data-filter="all"]').click()
    assert len(visible()) == 4
    score = browser.find_element(By.CSS_SELECTOR, "th.col-score button")
    score.click()  # descending
    score.click()  # ascending: the lower score first, empty scores last
    order = [r.get_attribute("data-status") + r.get_attribute("data-flagged") for r in browser.find_elements(By.CSS_SELECTOR, "#series-table tbody tr")]
    assert order[:2] == ["ok0", "ok1"] and set(order[2:]) == {"error", "skipped"}
    assert _problems(browser) == []


def test_series_page_scrolls_toggles_the_overlay_and_jumps_from_the_curve(browser, scanned_report):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions.wheel_input import ScrollOrigin
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get((scanned_report["report"] / "index.html").as_uri())
    browser.find_element(By.CSS_SELECTOR, "#series-table tbody tr .series-link").click()  # the top (flagged) series
    assert "FLAGGED" in browser.find_element(By.TAG_NAME, "h1").text
    flagged = next(r for r in _rows(scanned_report["scores"]) if r["flagged"] == "1")
    top = int(flagged["top_slice"])  # slices are numbered from 0 on the page, as in the CSVs
    n = int(flagged["n_slices"])
    image = browser.find_element(By.ID, "slice")
    assert _slice(browser) == top and image.get_attribute("src").endswith(f"/s{top:03d}.png")
    assert browser.execute_script("return document.getElementById('slice').naturalWidth") == 512
    assert browser.find_element(By.ID, "slice-no").text == f"slice {top} of 0–{n - 1}"
    assert "bleed" in browser.find_element(By.TAG_NAME, "h1").text  # the source folder names the series
    # APDS in ppm and the heat peak in %, never in e-notation
    apds, peak = browser.find_element(By.ID, "slice-apds").text, browser.find_element(By.ID, "heat-peak").text
    assert apds.startswith("APDS ") and apds.endswith(" ppm") and peak.startswith("heat peak ") and peak.endswith(" %")
    assert "e-" not in apds + peak
    browser.save_screenshot(str(SCREENSHOTS / "series-flagged.png"))

    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.ARROW_DOWN)
    assert _slice(browser) == top + 1 and image.get_attribute("src").endswith(f"/s{top + 1:03d}.png")
    assert browser.find_element(By.ID, "heat").get_attribute("src").endswith(f"/h{top + 1:03d}.png")
    body.send_keys(Keys.ARROW_UP, Keys.ARROW_UP)
    assert _slice(browser) == top - 1
    body.send_keys(Keys.HOME)
    assert _slice(browser) == 0 and browser.find_element(By.ID, "scroll").get_attribute("value") == "0"
    viewer = browser.find_element(By.ID, "viewer")
    ActionChains(browser).scroll_from_origin(ScrollOrigin.from_element(viewer), 0, 240).perform()
    assert _slice(browser) > 0  # the wheel scrolls the slices, not the page

    heat = browser.find_element(By.ID, "heat")
    assert heat.is_displayed()
    browser.find_element(By.ID, "heat-on").click()
    assert not heat.is_displayed()
    body.send_keys("h")
    assert heat.is_displayed()
    browser.execute_script("var o = document.getElementById('heat-opacity'); o.value = 30;"
                           "o.dispatchEvent(new Event('input'));")
    assert heat.value_of_css_property("opacity") == "0.3"

    curve = browser.find_element(By.ID, "curve-svg")
    width = curve.size["width"]
    ActionChains(browser).move_to_element_with_offset(curve, -width // 2 + 2, 0).click().perform()
    assert _slice(browser) == 0
    ActionChains(browser).move_to_element_with_offset(curve, width // 2 - 2, 0).click().perform()
    assert _slice(browser) == n - 1 and browser.find_element(By.ID, "slice-no").text == f"slice {n - 1} of 0–{n - 1}"
    body.send_keys("t")
    assert _slice(browser) == top
    assert _problems(browser) == []


def test_slice_curve_draws_the_slice_threshold_not_the_scan_threshold(browser, scanned_report):
    import json

    from selenium.webdriver.common.by import By

    from isl_rt.report.source import series_json_path, series_key

    row = next(r for r in _rows(scanned_report["scores"]) if r["flagged"] == "1")
    info = json.loads(series_json_path(scanned_report["scores"], row).read_text())
    slice_t, scan_t = info["slice_threshold"], info["threshold"]
    assert abs(slice_t - scan_t) > 0.1  # the shipped bundle's two thresholds, far apart
    browser.get((scanned_report["report"] / "series" / f"{series_key(row)}.html").as_uri())
    labels = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#curve-svg .threshold-label")]
    assert labels == [f"slice threshold {float(f'{slice_t:.4g}'):g}"]
    # the dashed line lies at the slice threshold on the curve's own scale: between the dots of a
    # slice below it and one above it, as the slices CSV flags them
    line_y = float(browser.find_element(By.CSS_SELECTOR, "#curve-svg line.threshold").get_attribute("y1"))
    dots = browser.find_elements(By.CSS_SELECTOR, "#curve-svg circle.dot")
    flags = [r["flagged"] == "1" for r in _rows(scanned_report["scores"].with_name("scores.slices.csv"))
             if r["series"] == row["series"]]
    assert len(dots) == len(flags) and any(flags) and not all(flags)
    above = [float(d.get_attribute("cy")) for d, f in zip(dots, flags) if f]
    below = [float(d.get_attribute("cy")) for d, f in zip(dots, flags) if not f]
    assert max(above) < line_y < min(below)  # SVG y grows downwards
    assert [("above" in d.get_attribute("class")) for d in dots] == flags
    assert "0 to 11 in the series' order" in browser.find_element(By.CSS_SELECTOR, ".legend").text
    assert _problems(browser) == []


def test_series_page_keeps_markup_as_text(browser, scanned_report):
    from selenium.webdriver.common.by import By

    rows = [r for r in _rows(scanned_report["scores"]) if r["status"] == "ok" and r["flagged"] != "1"]
    from isl_rt.report.source import series_key

    page = scanned_report["report"] / "series" / f"{series_key(rows[0])}.html"
    browser.get(page.as_uri())
    assert scanned_report["markup"] in browser.find_element(By.TAG_NAME, "h1").text
    assert browser.execute_script("return window.pwned === undefined")
    assert browser.find_elements(By.CSS_SELECTOR, "h1 script, h1 img, dd img") == []
    browser.save_screenshot(str(SCREENSHOTS / "series-markup.png"))
    assert _problems(browser) == []
