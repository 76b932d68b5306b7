"""The brain level of an image bundle: a series is shifted so that the median gray of its cranial
cavity is the bundle's (another site's window level shows the same tissue lighter or darker)."""

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from isl_rt.bundle import BundleError, CavityArgs, ImageLevelSpec, load_bundle, set_image_level
from isl_rt.cli import app
from isl_rt.pipeline import cavity_median, match_level, params_from_bundle

CAVITY = CavityArgs(0, 0.975, 0)


def _head(brain: float = 0.45, size: int = 32) -> np.ndarray:
    """x [2, 1, S, S]: a white skull ring round brain of gray ``brain`` with a darker pocket, air outside."""
    yy, xx = np.mgrid[0:size, 0:size]
    r = np.hypot(yy - 15.5, xx - 15.5)
    x = np.zeros((size, size), np.float32)
    x[r < 14] = 1.0
    x[r < 12] = brain
    x[(np.abs(yy - 15.5) < 2) & (np.abs(xx - 15.5) < 2)] = brain - 0.3
    return np.stack([x, x])[:, None]


def test_match_level_moves_the_cavity_median_and_keeps_black_and_white():
    x = _head(0.5)
    assert cavity_median(x, CAVITY) == pytest.approx(0.5)
    shifted, shift = match_level(x, CAVITY, 0.45)
    assert shift == pytest.approx(-0.05) and cavity_median(shifted, CAVITY) == pytest.approx(0.45)
    np.testing.assert_array_equal(shifted, np.where((x > 0) & (x < 1), x - 0.05, x).astype(np.float32))
    assert shifted.dtype == np.float32
    # a brighter site's series comes back to the same image as the bundle's own
    np.testing.assert_allclose(match_level(_head(0.45), CAVITY, 0.45)[0], match_level(_head(0.52), CAVITY, 0.45)[0], atol=1e-6)
    # no cavity (no white ring): nothing to measure, nothing moved
    flat = np.full((1, 1, 8, 8), 0.4, np.float32)
    assert cavity_median(flat, CAVITY) is None
    assert match_level(flat, CAVITY, 0.45)[1] == 0.0


def test_a_skull_resized_by_a_fraction_stays_white_when_the_level_moves():
    """An image of a size that is not a whole multiple of the model's is resized with weights
    whose float32 sum leaves a white skull at 0.99999994: it is still white, not moved below the
    bone level (which would open the skull ring and lose the cranial cavity)."""
    from isl_rt import kernels
    from isl_rt.bundle import image_windows
    from isl_rt.pipeline import cavity_mask

    source = np.repeat(np.repeat(_head(0.5), 61, axis=2), 61, axis=3)[:, :, :1951, :1951]  # 1951 px to 128 px
    windows = np.asarray([(w.level, w.width) for w in image_windows(1)], np.float32)
    x = kernels.window_images(np.ascontiguousarray(source), windows, 128)
    assert ((x > 0.999) & (x < 1.0)).any()  # the rounding this guards against
    shifted, shift = match_level(x, CAVITY, 0.4)
    assert shift == pytest.approx(-0.1, abs=0.01)
    assert (shifted[x > 0.9999] == x[x > 0.9999]).all()  # white stays white
    before, after = cavity_mask(x, CAVITY).sum(), cavity_mask(shifted, CAVITY).sum()
    assert 0 < before <= after < 1.05 * before  # the ring holds: the same cavity (its edge pixels a little darker)


def test_a_shift_beyond_what_was_measured_is_reported():
    from isl_rt.pipeline import LEVEL_SHIFT_WARNING, level_warnings

    assert level_warnings(None) == [] and level_warnings(0.05) == [] and level_warnings(-LEVEL_SHIFT_WARNING) == []
    (lighter,) = level_warnings(-0.15)
    assert "0.15 of full scale lighter" in lighter and "not measured" in lighter
    assert "darker" in level_warnings(0.12)[0]


def test_an_image_bundle_takes_a_level_and_a_hu_bundle_refuses_it(image_bundle, small_bundle, tmp_path):
    root = tmp_path / "images"
    shutil.copytree(image_bundle.root, root)
    assert image_bundle.manifest.threshold is not None
    bundle = set_image_level(root, ImageLevelSpec(0.42, 3))
    assert bundle.manifest.image_level == ImageLevelSpec(0.42, 3) and bundle.manifest.threshold is None
    assert params_from_bundle(bundle).image_level == pytest.approx(0.42)
    assert "shifted so the median gray of its cranial cavity is 0.42" in bundle.summary()["image_level"]["description"]
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["image_level"]["median"] = 1.5
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="image_level.median = 1.5"):
        load_bundle(root)
    hu = tmp_path / "hu"
    shutil.copytree(small_bundle.root, hu)
    with pytest.raises(BundleError, match="reads HU"):
        set_image_level(hu, ImageLevelSpec(0.42, 3))
    manifest = json.loads((hu / "manifest.json").read_text())
    manifest["image_level"] = {"median": 0.4, "n_series": 2}
    (hu / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="its networks read HU"):
        load_bundle(hu)


def test_calibrate_match_level_fits_the_level_then_the_thresholds(image_bundle, image_writer, tmp_path):
    root = tmp_path / "bundle"
    shutil.copytree(image_bundle.root, root)
    healthy = tmp_path / "healthy"
    for k in range(2):
        image_writer.series(healthy / f"s{k}", 6, seed=80 + k)
    out = tmp_path / "calibration.csv"
    result = CliRunner().invoke(app, ["calibrate", str(healthy), "--bundle", str(root), "--match-level", "--out", str(out),
                                      "--threads", "1"])
    assert result.exit_code == 0, result.output
    bundle = load_bundle(root)
    level = bundle.manifest.image_level
    assert level is not None and level.n_series == 2 and 0 < level.median < 1
    assert "brain level" in result.output and bundle.manifest.threshold is not None  # calibrated after the level
    info = CliRunner().invoke(app, ["info", "--bundle", str(root)])
    assert "brain level: each series shifted" in info.output

    # the same series from a site whose window level is lower: 13 grey steps lighter, black and
    # white as they were; scanned with the bundle it is shifted back and scores as the original
    from PIL import Image

    lighter, far = tmp_path / "lighter" / "s0", tmp_path / "far" / "s0"
    for folder, steps in ((lighter, 13), (far, 40)):
        folder.mkdir(parents=True)
        for png in sorted((healthy / "s0").iterdir()):
            with Image.open(png) as img:
                a = np.asarray(img.convert("L")).astype(np.int16)
            Image.fromarray(np.where((a > 0) & (a < 255), np.minimum(a + steps, 254), a).astype(np.uint8)).save(folder / png.name)
    details = {}
    for name, folder, bundle_root in (("own", healthy / "s0", root), ("lighter", lighter, root),
                                      ("no level", lighter, image_bundle.root), ("far", far, root)):
        scores = tmp_path / f"{len(details)}.csv"
        result = CliRunner().invoke(app, ["scan", str(folder), "--bundle", str(bundle_root), "--out", str(scores),
                                          "--threads", "1"])
        assert result.exit_code == 0, result.output
        (doc,) = [p for p in (tmp_path / f"{len(details)}.series").iterdir() if not p.name.startswith("_")]
        details[name] = json.loads(doc.read_text())
    assert details["lighter"]["level_shift"] - details["own"]["level_shift"] == pytest.approx(-13 / 255, abs=2e-3)
    assert details["no level"]["level_shift"] is None  # a bundle without a level shifts nothing
    far = details.pop("far")
    assert not any("of full scale" in w for d in details.values() for w in d["warnings"])  # within what was measured
    # 40 steps lighter is beyond the presentation's dead band: a gamma brings its brain back, and the series says so
    assert far["presentation"]["gamma"] > 1.0 and abs(far["level_shift"]) < 0.1
    assert any("presented unlike the bundle's data" in w and "gamma" in w for w in far["warnings"])
    # what the networks see: the lighter series matched is the original matched, but where 8 bits clipped it
    from isl_rt.io.series import discover_series, load_series
    from isl_rt.pipeline import model_input

    params = params_from_bundle(load_bundle(root))
    seen = {}
    for name, folder in (("own", healthy / "s0"), ("lighter", lighter)):
        x = model_input(load_series(discover_series(folder).series[0]), params)
        seen[name] = (x, match_level(x, params.cavity, params.image_level)[0])
    before = np.abs(seen["lighter"][0] - seen["own"][0]).mean()
    after = np.abs(seen["lighter"][1] - seen["own"][1]).mean()
    assert before > 0.01 and after < 0.2 * before, (before, after)  # air and bone (most pixels) never move


def test_calibrate_match_level_refuses_a_hu_bundle_before_scanning(small_bundle, tmp_path):
    root = tmp_path / "hu"
    shutil.copytree(small_bundle.root, root)
    out = tmp_path / "calibration.csv"
    result = CliRunner().invoke(app, ["calibrate", str(tmp_path), "--bundle", str(root), "--match-level", "--out", str(out)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "--match-level is for bundles of pre-windowed images" in result.output and not out.exists()
    assert load_bundle(root).manifest == small_bundle.manifest


def test_calibrate_takes_smooth_with_match_level_only(image_bundle, tmp_path):
    healthy = tmp_path / "healthy"
    healthy.mkdir()
    result = CliRunner().invoke(app, ["calibrate", str(healthy), "--bundle", str(image_bundle.root), "--smooth", "0.8"])
    assert result.exit_code != 0 and "--smooth is set with --match-level" in result.output
    result = CliRunner().invoke(app, ["calibrate", str(healthy), "--bundle", str(image_bundle.root), "--match-level", "--smooth", "9"])
    assert result.exit_code != 0 and "between 0 and 4" in result.output


def test_a_bundle_reads_its_smoothing_and_refuses_one_out_of_range(image_bundle, tmp_path):
    from isl_rt.pipeline import params_from_bundle

    bundle = shutil.copytree(image_bundle.root, tmp_path / "bundle")  # the fixture is shared: change a copy
    set_image_level(bundle, ImageLevelSpec(0.4, 3, 0.07, 0.6, smooth=0.8))
    loaded = load_bundle(bundle)
    assert loaded.manifest.image_level.smooth == 0.8 and params_from_bundle(loaded).image_smooth == 0.8
    assert "σ 0.8 px" in loaded.manifest.image_level.describe()
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["image_level"]["smooth"] = 7.0
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="image_level.smooth"):
        load_bundle(bundle)
