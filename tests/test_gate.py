"""The input gate: a usable head CT passes; what is not one is rejected with a reason, from the
headers before anything is decoded where it can be, else from the pixels."""

from __future__ import annotations

import re
import numpy as np
import pytest

from isl_rt.io import dicom, gate
from isl_rt.io.phantom import simple_head_slice


def _ref(root):
    found = dicom.discover(root)
    assert len(found.series) == 1, found.skipped
    return found.series[0]


def _verdict(root) -> gate.Verdict:
    """Header gate, then (when it passes) the pixel gate over the whole series."""
    ref = _ref(root)
    verdict = gate.check_ct_header(ref)
    if not verdict.usable:
        return verdict
    volume = dicom.load_volume(ref)
    return gate.check_ct_pixels(gate.ct_slice_stats(volume.hu, ref.pixel_spacing))


def test_a_head_series_passes(tmp_path, dicom_factory):
    dicom_factory.head_series(tmp_path)
    verdict = _verdict(tmp_path)
    assert verdict.usable, verdict.reason
    assert verdict.facts["cavity_slices"] == 12 and -100 < verdict.facts["cavity_median_hu"] < 150


def test_phantom_series_pass(phantom_cohort):
    found = dicom.discover(phantom_cohort)
    for ref in found.series:
        assert gate.check_ct_header(ref).usable
        volume = dicom.load_volume(ref)
        verdict = gate.check_ct_pixels(gate.ct_slice_stats(volume.hu, ref.pixel_spacing))
        assert verdict.usable, verdict.reason


def _set(**values):
    def mutate(ds):
        for key, value in values.items():
            setattr(ds, key, value)
    return mutate


HEADER_CASES = {
    "tiny matrix": (dict(size=16, pixel_mm=12.0, hu=lambda i: simple_head_slice(16, seed=i)), "too small for a head CT"),
    "slope NaN": (dict(mutate=_set(RescaleSlope=float("nan"))), "not a finite number"),
    "slope inf": (dict(mutate=_set(RescaleSlope=float("inf"))), "not a finite number"),
    "slope 1e308": (dict(mutate=_set(RescaleSlope=1e308)), "RescaleSlope 1e+308"),
    "slope 0": (dict(mutate=_set(RescaleSlope=0)), "RescaleSlope 0"),
    "slope negative": (dict(mutate=_set(RescaleSlope=-1)), "RescaleSlope -1"),
    "intercept absurd": (dict(mutate=_set(RescaleIntercept=1e9)), "RescaleIntercept 1e+09"),
    "MR relabelled": (dict(mutate=_set(EchoTime=12.0, RepetitionTime=500.0)), "MR acquisition attributes"),
    "chest by header": (dict(mutate=_set(BodyPartExamined="CHEST")), "BodyPartExamined is CHEST"),
    "thick slices": (dict(spacing=20.0), "20 mm apart"),
    "too long": (dict(n=60, spacing=8.0), "472 mm"),
    "tiny field of view": (dict(pixel_mm=0.1), "field of view is 26 mm"),
}


@pytest.mark.parametrize("case", sorted(HEADER_CASES))
def test_header_rejections(tmp_path, dicom_factory, case):
    kwargs, words = HEADER_CASES[case]
    dicom_factory.head_series(tmp_path, **kwargs)
    verdict = gate.check_ct_header(_ref(tmp_path))
    assert not verdict.usable and words in verdict.reason


def _uniform(value):
    return lambda i: np.full((256, 256), value, dtype=np.int16)


def _mr_like(i):
    """An MR head: background 0, dark skull, bright brain; no negative values at all."""
    head = simple_head_slice(256, seed=i).astype(np.int32)
    out = np.zeros_like(head)
    out[head > 500] = 80
    out[(head > -200) & (head <= 500)] = 600 + 4 * head[(head > -200) & (head <= 500)]
    return out


def _chest(i):
    """A chest: 340 mm wide body, ribs all round, two lungs, mediastinum (0.8 mm pixels)."""
    y, x = np.mgrid[:512, :512]
    r = np.hypot((y - 256) / 170.0, (x - 256) / 215.0)
    hu = np.full((512, 512), -1000, dtype=np.int32)
    hu[r < 1.0] = 40
    hu[(r > 0.84) & (r < 0.9)] = 800  # rib cage
    for side in (-1, 1):
        hu[np.hypot((y - 250) / 130.0, (x - 256 - side * 95) / 80.0) < 1.0] = -850
    return hu


PIXEL_CASES = {
    "uniform air": (_uniform(-1000), "uniform"),
    "uniform water": (_uniform(0), "uniform"),
    "uniform bone": (_uniform(1500), "uniform"),
    "MR values": (_mr_like, "no air"),
    "metal everywhere": (lambda i: np.where(simple_head_slice(256, seed=i) > -500, 4000, -1000), "above 3071 HU"),
    "no skull": (lambda i: np.where(simple_head_slice(256, seed=i) > 500, 40, simple_head_slice(256, seed=i)),
                 "no cranial cavity"),
}


@pytest.mark.parametrize("case", sorted(PIXEL_CASES))
def test_pixel_rejections(tmp_path, dicom_factory, case):
    hu, words = PIXEL_CASES[case]
    dicom_factory.head_series(tmp_path, hu=hu, mutate=_set(RescaleIntercept=0) if case == "MR values" else None)
    verdict = _verdict(tmp_path)
    assert not verdict.usable and words in verdict.reason, verdict


def test_a_chest_is_not_a_head(tmp_path, dicom_factory):
    dicom_factory.head_series(tmp_path, hu=_chest, size=512, pixel_mm=0.8)
    verdict = _verdict(tmp_path)
    assert not verdict.usable and "larger than the inside of any skull" in verdict.reason


def test_lungs_inside_a_head_sized_cage_are_not_brain(tmp_path, dicom_factory):
    """A child's chest fits a skull's size; what bone encloses is air-filled lung, not brain."""
    dicom_factory.head_series(tmp_path, hu=_chest, size=512, pixel_mm=0.4)
    verdict = _verdict(tmp_path)
    assert not verdict.usable and "air-filled" in verdict.reason


def test_image_series_gate():
    head = np.stack([simple_head_slice(256, seed=i) for i in range(12)]).astype(np.float32)
    brain_window = np.clip(head / 80.0, 0.0, 1.0)[:, None]  # 40/80: 0..80 HU -> 0..1, bone saturates
    assert gate.check_image_header(12, 256, 256).usable
    assert gate.check_image_pixels(gate.image_slice_stats(brain_window)).usable
    assert "too small" in gate.check_image_header(12, 16, 16).reason
    assert gate.check_image_header(4, 256, 256).usable  # a few key images are judged by what they show
    assert gate.check_image_header(1, 256, 256).usable
    assert "no images" in gate.check_image_header(0, 256, 256).reason
    uniform = np.full((12, 1, 256, 256), 0.5, dtype=np.float32)
    assert "uniform" in gate.check_image_pixels(gate.image_slice_stats(uniform)).reason
    noise = np.random.default_rng(0).random((12, 1, 256, 256), dtype=np.float32) * 0.9
    assert "no cranial cavity" in gate.check_image_pixels(gate.image_slice_stats(noise)).reason


def test_a_series_too_large_to_decode_is_refused_from_its_headers(tmp_path, dicom_factory, monkeypatch):
    dicom_factory.head_series(tmp_path)  # 12 slices of 256×256: 1.5 MiB of HU
    ref = _ref(tmp_path)
    assert gate.check_ct_header(ref).usable
    monkeypatch.setattr(gate, "MAX_SERIES_BYTES", 2**20)
    verdict = gate.check_ct_header(ref)
    assert not verdict.usable and "1.5 MiB" not in verdict.reason and "nothing was decoded" in verdict.reason
    assert "12 slices of 256×256" in verdict.reason
    assert gate.check_image_size(12, 256, 256, 1).usable is False  # 3 MiB of float32
    assert gate.check_image_size(2, 256, 256, 1).usable


def test_the_size_limit_holds_a_thin_sliced_head_and_refuses_what_would_take_over_a_gibibyte():
    from isl_rt.io.limits import MAX_SERIES_BYTES, series_bytes

    assert series_bytes(512, 512, 2048) == MAX_SERIES_BYTES  # 0.1 mm slices across a head still decode
    assert series_bytes(2048, 2048, 130) > MAX_SERIES_BYTES
    assert gate.check_image_size(1024, 512, 512, 1).usable
    assert "GiB decoded" in gate.check_image_size(400, 1024, 1024, 3).reason


# ------------------------------------------------------------------------- key images: 1..9 slices


def test_the_head_share_rule_asks_every_slice_of_one_or_two(tmp_path):
    assert [gate._needed(n) for n in (1, 2, 3, 9, 10, 20, 21, 69)] == [1, 2, 3, 3, 3, 3, 4, 11]


@pytest.mark.parametrize("n", [1, 2, 5])
def test_a_short_dicom_head_series_passes_with_its_spacing_unasked(tmp_path, dicom_factory, n):
    # 1 slice: its slice_spacing is SliceThickness; 20 mm would fail the spacing check of a series
    dicom_factory.head_series(tmp_path, n=n, spacing=5.0 if n > 1 else 20.0)
    ref = _ref(tmp_path)
    assert gate.check_ct_header(ref).usable
    verdict = _verdict(tmp_path)
    assert verdict.usable, verdict.reason
    assert verdict.facts["head_slices"] == n


def test_a_short_series_keeps_every_other_header_check(tmp_path, dicom_factory):
    cases = {
        "chest": (dict(n=1, mutate=_set(BodyPartExamined="CHEST")), "BodyPartExamined is CHEST"),
        "tiny": (dict(n=1, size=16, pixel_mm=12.0, hu=lambda i: simple_head_slice(16, seed=i)), "too small"),
        "fov": (dict(n=1, pixel_mm=0.1), "field of view"),
        "thick": (dict(n=1, mutate=_set(SliceThickness=20.0)), "20 mm thick"),
        "mr": (dict(n=2, mutate=_set(EchoTime=12.0, RepetitionTime=500.0)), "MR acquisition attributes"),
        "apart": (dict(n=2, spacing=20.0), "20 mm apart"),
    }
    for name, (kwargs, words) in cases.items():
        dicom_factory.head_series(tmp_path / name, **kwargs)
        verdict = gate.check_ct_header(_ref(tmp_path / name))
        assert not verdict.usable and words in verdict.reason, (name, verdict)


@pytest.mark.parametrize("case", ["uniform air", "no skull", "MR values"])
def test_a_single_slice_that_is_not_a_head_is_refused(tmp_path, dicom_factory, case):
    hu, words = PIXEL_CASES[case]
    dicom_factory.head_series(tmp_path, n=1, hu=hu, mutate=_set(RescaleIntercept=0) if case == "MR values" else None)
    verdict = _verdict(tmp_path)
    assert not verdict.usable and words in verdict.reason, verdict
    assert not re.search(r"\.\s+[A-Z]", verdict.reason)  # one sentence


def test_two_slices_need_a_head_on_both(tmp_path, dicom_factory):
    no_skull = PIXEL_CASES["no skull"][0]
    dicom_factory.head_series(tmp_path, n=2, hu=lambda i: simple_head_slice(256, seed=i) if i == 0 else no_skull(i))
    verdict = _verdict(tmp_path)
    assert not verdict.usable and "a head shows on 1 of its 2 slices, at least 2 needed" in verdict.reason


def test_single_images_are_judged_by_what_they_show():
    head = np.clip(simple_head_slice(256, seed=3).astype(np.float32) / 80.0, 0.0, 1.0)[None, None]
    assert gate.check_image_pixels(gate.image_slice_stats(head)).usable
    assert gate.check_image_pixels(gate.image_slice_stats(np.concatenate([head, head]))).usable
    blank = np.full((1, 1, 256, 256), 0.2, dtype=np.float32)
    assert "uniform" in gate.check_image_pixels(gate.image_slice_stats(blank)).reason
    noise = np.random.default_rng(1).random((1, 1, 256, 256), dtype=np.float32) * 0.9
    reason = gate.check_image_pixels(gate.image_slice_stats(noise)).reason
    assert "no cranial cavity" in reason and "0 of its 1 images, at least 1 needed" in reason
    half = np.concatenate([head, noise])
    assert "1 of its 2 images, at least 2 needed" in gate.check_image_pixels(gate.image_slice_stats(half)).reason
