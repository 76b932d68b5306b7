"""isl_rt.presentation.normalise_images: the identity on the bundle's own presentation, and each
site difference it undoes, on hand-made head slices (and, with the data, on a real patient)."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from isl_rt.presentation import BONE_LEVEL, normalise_images

DATA = Path(os.environ.get("ISL_RT_REAL_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data" / "phe-sich-ct-ids"))
LEVEL = 0.396


def _series(n: int = 6, h: int = 96, w: int = 96, brain: float = 0.4) -> np.ndarray:
    """A head CT series in the bundle's presentation: air 0, a white skull ring, brain ``brain``
    with a darker and a lighter patch, 8-bit steps; [N,1,H,W]."""
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot((yy - (h - 1) / 2) / (h * 0.42), (xx - (w - 1) / 2) / (w * 0.42))
    gray = np.zeros((h, w))
    gray[r < 1.0] = 1.0
    gray[r < 0.85] = brain
    gray[(r < 0.3) & (xx < w / 2)] = brain - 0.15
    gray[(r < 0.2) & (xx > w / 2)] = brain + 0.2
    gray = np.round(gray * 255) / 255
    return np.repeat(gray[None, None], n, axis=0).astype(np.float32)


def test_the_bundles_own_presentation_is_returned_unchanged():
    x = _series()
    y, record = normalise_images(x, LEVEL)
    assert y.shape == x.shape and np.array_equal(y, x)
    assert record["identity"] and record["window"] == [0.0, 1.0] and record["gamma"] == 1.0
    assert record["blanked_pixels"] == 0 and record["pad"] == [0, 0, 0, 0]
    json.dumps(record)  # JSON-able


def test_a_wider_window_is_mapped_back_air_black_skull_white():
    x = _series()
    wide = 0.5 + (x - 0.5) * 120.0 / 400.0  # W 400: skull 0.65, air 0.35
    y, record = normalise_images(wide, LEVEL)
    assert record["air"] == pytest.approx(0.35, abs=1e-3) and record["bone"] == pytest.approx(0.65, abs=1e-3)
    assert record["gamma"] == 1.0  # linear: the brain falls back on its own gray
    np.testing.assert_allclose(y, x, atol=1.5 / 255)
    assert (y[x == 1.0] >= BONE_LEVEL).all()


def test_a_gamma_is_undone_by_the_brain_level():
    x = _series()
    y, record = normalise_images(x ** 1.4, LEVEL)
    assert record["window"] == [0.0, 1.0] and record["gamma"] == pytest.approx(1 / 1.4, rel=0.05)
    assert np.median(y[(x > 0.3) & (x < 0.5)]) == pytest.approx(LEVEL, abs=0.01)
    y0, r0 = normalise_images(x ** 1.4, None)  # no level: no gamma
    assert r0["gamma"] == 1.0 and np.array_equal(y0, x ** 1.4)


def test_a_non_square_crop_is_padded_to_square_with_air():
    x = _series(h=96, w=96)[:, :, 8:88, :]  # 80 x 96
    y, record = normalise_images(x, LEVEL)
    assert y.shape == (6, 1, 96, 96) and record["pad"] == [8, 8, 0, 0] and record["size_out"] == 96
    assert np.array_equal(y[:, :, 8:88], x) and not y[:, :, :8].any() and not y[:, :, 88:].any()


def test_white_text_outside_a_grey_skull_is_blanked_to_air():
    x = 0.5 + (_series() - 0.5) * 120.0 / 200.0  # skull 0.8, air 0.2
    marked = x.copy()
    marked[:, :, 2:5, 2:20] = 1.0  # a line of white text in the corner on every slice
    y, record = normalise_images(marked, LEVEL)
    assert record["blanked_pixels"] >= 6 * 3 * 18 and record["blanked_slices"] == 6
    assert not y[:, :, 2:5, 2:20].any()  # air after the map
    clean, _ = normalise_images(x, LEVEL)
    assert np.abs(y - clean).max() <= 1.5 / 255


def _cavity_side(y: np.ndarray) -> int:
    """The side of the box around the pixels strictly between black and white on the middle slice."""
    ys, xs = np.nonzero((y[y.shape[0] // 2, 0] > 0.0) & (y[y.shape[0] // 2, 0] < 1.0))
    return max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1)


def test_a_head_cropped_tight_is_framed_at_the_bundles_size():
    x = _series(h=96, w=96)  # skull ring 0.84 of the image, the cavity inside it about 0.71
    cavity = _cavity_side(x) / 96
    y0, r0 = normalise_images(x, LEVEL, size=cavity * 1.1)  # within the dead band: kept
    assert r0["scale"] == 1.0 and r0["identity"] and np.array_equal(y0, x)
    y, record = normalise_images(x, LEVEL, size=0.5)
    assert record["cavity_size"] == pytest.approx(cavity, abs=0.02) and not record["identity"]
    side = y.shape[-1]
    assert side > 96 and record["scale"] == pytest.approx(96 / side)
    assert _cavity_side(y) / side == pytest.approx(0.5, abs=0.02)  # the cavity now shows at the bundle's size
    assert y.sum() == pytest.approx(x.sum(), rel=1e-6)  # nothing cut: only air added
    from isl_rt.pipeline import unpad
    assert np.array_equal(unpad(y, record), x)  # and put back on the source grid exactly


def test_a_small_head_on_a_wide_canvas_is_framed_closer_without_cutting_it():
    x = np.zeros((6, 1, 192, 192), np.float32)
    x[:, :, 40:136, 70:166] = _series(h=96, w=96)  # off centre, on a canvas twice as large
    y, record = normalise_images(x, LEVEL, size=0.7)
    side = y.shape[-1]
    assert side < 192 and record["scale"] == pytest.approx(192 / side) and record["pad"][0] < 0
    assert _cavity_side(y) / side == pytest.approx(0.7, abs=0.03)
    assert y.sum() == pytest.approx(x.sum(), rel=1e-6)  # the head whole, only air cut away
    from isl_rt.pipeline import unpad
    assert np.array_equal(unpad(y, record), x)


def test_a_key_image_is_shrunk_when_larger_than_any_slice_but_never_enlarged():
    x = _series(n=1, h=96, w=96)
    cavity = _cavity_side(x) / 96
    _, small = normalise_images(x, LEVEL, size=cavity * 2.0)  # a small cavity: maybe the vertex
    assert small["scale"] == 1.0 and small["skull_ring_slices"] == 1
    _, large = normalise_images(x, LEVEL, size=cavity / 1.5)  # larger than the bundle's data shows
    assert large["scale"] == pytest.approx(1 / 1.5, abs=0.02)


def test_rule_0_smooths_every_series_first_and_reads_the_skull_smoothed():
    from scipy import ndimage

    x = _series()
    y, record = normalise_images(x, LEVEL, smooth=0.8)
    smoothed = np.clip(ndimage.gaussian_filter(x, (0, 0, 0.8, 0.8)), 0, 1)
    assert record["smooth"] == 0.8 and not np.array_equal(y, x) and 0.0 <= y.min() and y.max() <= 1.0
    assert record["bone"] < 1.0 and record["bone"] == pytest.approx(normalise_images(smoothed, LEVEL)[1]["bone"])
    assert record["skull_ring_slices"] == 6  # the smoothed skull is read as the skull: its ring still closes
    assert normalise_images(x, LEVEL, smooth=0.0)[1]["smooth"] == 0.0


def test_place_pads_and_cuts_and_unpad_undoes_it():
    from isl_rt.presentation import place

    a = np.arange(2 * 5 * 7, dtype=np.float32).reshape(2, 5, 7) + 1
    b = place(a, [2, -1, -3, 4])
    assert b.shape == (2, 6, 8) and not b[:, :2].any() and not b[:, :, 4:].any()
    assert np.array_equal(b[:, 2:, :4], a[:, :4, 3:])
    assert np.array_equal(place(b, [-2, 1, 3, -4])[:, :4, 3:], a[:, :4, 3:])
    with pytest.raises(ValueError):
        place(a, [-3, -3, 0, 0])


def test_refuses_what_is_not_one_gray_series():
    with pytest.raises(ValueError):
        normalise_images(np.zeros((2, 3, 8, 8), np.float32), LEVEL)


@pytest.mark.skipif(not (DATA / "labels.csv").is_file(), reason=f"the real data set is absent ({DATA}/labels.csv)")
def test_a_real_patient_is_returned_unchanged():
    from PIL import Image

    files = sorted((DATA / "images" / "0001").glob("*.png"))
    x = np.stack([np.asarray(Image.open(f).convert("L"), dtype=np.float32) / 255 for f in files])[:, None]
    y, record = normalise_images(x, LEVEL)
    assert record["identity"] and np.array_equal(y, x)


def test_scan_maps_another_sites_window_and_keeps_the_source_grid(tmp_path, image_writer):
    """A slice exported through a window so wide its skull is not white, cropped to a non-square
    image with a mark burned in: the scan maps it onto the real bundle's presentation, finds the
    cranial cavity, says what it estimated, and writes the heat map on the image's own grid;
    read as it is, no cavity is found and the slice is refused."""
    import json
    from dataclasses import replace
    from pathlib import Path

    from PIL import Image
    from typer.testing import CliRunner

    from isl_rt.backends import open_backends
    from isl_rt.bundle import load_bundle
    from isl_rt.cli import app
    from isl_rt.pipeline import Scorer, params_from_bundle, scan_directory

    bundle = load_bundle(Path(__file__).resolve().parents[1] / "export" / "head-ct-real-tiny")
    gray = image_writer.png(tmp_path / "as-trained.png", 5, size=256)
    wide = np.clip(0.5 + (gray - 0.5) * 0.3, 0.0, 1.0)[:, 28:228]  # air 0.35, skull 0.65; 256 × 200
    wide[4:14, 4:40] = 1.0  # a burned-in label in the corner
    site = tmp_path / "site" / "key"
    site.mkdir(parents=True)
    Image.fromarray(np.rint(wide * 255).astype(np.uint8)).save(site / "slice.png")
    out = tmp_path / "scores.csv"
    result = CliRunner().invoke(app, ["scan", str(site.parent), "--bundle", str(bundle.root), "--out", str(out),
                                      "--heatmaps", str(tmp_path / "heat"), "--report", str(tmp_path / "report"),
                                      "--threads", "1"])
    assert result.exit_code == 0, result.output
    pages = [p.read_text() for p in (tmp_path / "report").rglob("*.html") if "Presentation" in p.read_text()]
    # the bundle smooths first (rule 0), so the thin skull reads a little below the export's 0.65; its cavity
    # fills more of the image than any slice of the bundle's data, so the key image is shrunk (rule 9)
    assert len(pages) == 1 and "→ white" in pages[0] and "the head shown ×0.79" in pages[0]
    (doc,) = [p for p in (tmp_path / "scores.series").iterdir() if not p.name.startswith("_")]
    detail = json.loads(doc.read_text())
    assert detail["status"] == "ok" and detail["n_scored"] == 1, detail
    p = detail["presentation"]
    assert p["window"] == pytest.approx([0.35, 0.63], abs=0.02) and not p["identity"]
    assert p["smooth"] == 0.8 and p["scale"] == pytest.approx(0.79, abs=0.01) and p["size_out"] > 256
    assert p["blanked_pixels"] >= 360  # the label, now air
    assert any("presented unlike the bundle's data" in w for w in detail["warnings"])
    with np.load(tmp_path / "heat" / "key" / "heatmaps.npz") as npz:
        assert npz["heat"].shape == (1, 256, 200) and npz["region"].shape == (1, 256, 200)
        assert npz["region"].sum() > 0
    # the same slice as read: no skull the cavity rule can see, so nothing to score (never a 0)
    raw = replace(params_from_bundle(bundle), present=False)
    with open_backends(bundle, "onnxruntime", threads=1) as pair:
        summary = scan_directory(site.parent, tmp_path / "raw.csv", bundle, Scorer(raw, pair.dedn, pair.drn),
                                 backend_name=pair.name)
    assert summary.ok == 0 and summary.rejected == 1
