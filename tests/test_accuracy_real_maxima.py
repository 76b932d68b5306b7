"""benchmarks/accuracy_real.py's "where the maximum lies" table on a hand-made slice: a haematoma
whose ring is drawn as one arc beside it, as PHE-SICH-CT-IDS often draws them."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
from PIL import Image


def _slice(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    yy, xx = np.mgrid[0:128, 0:128]
    gray = np.full((128, 128), 0.45, dtype=np.float32)  # brain
    blood = (yy - 64) ** 2 + (xx - 64) ** 2 <= 10**2
    gray[blood] = 0.75
    image = tmp_path / "00.png"
    Image.fromarray(np.round(gray * 255).astype(np.uint8)).save(image)
    # the ring's left arc only, 2 px outside the blood: its hull is a sliver left of the blood
    r = np.sqrt((yy - 64) ** 2 + (xx - 64) ** 2)
    arc = (r >= 11) & (r <= 13) & (xx <= 56)
    mask = tmp_path / "00_mask.png"
    Image.fromarray(arc.astype(np.uint8) * 255).save(mask)
    return image, mask, blood


def _result(image: Path, heat: np.ndarray) -> SimpleNamespace:
    scores = SimpleNamespace(x=np.zeros((1, 1, 32, 32), np.float32), region=np.ones((1, 32, 32), np.uint8))
    return SimpleNamespace(files=(image,), scores=scores, heat=heat[None])


def test_a_maximum_on_the_blood_misses_the_drawn_arc_and_hits_the_grown_mask(tmp_path, load_benchmark):
    module = load_benchmark("accuracy_real")
    image, mask, blood = _slice(tmp_path)
    heat = np.zeros((128, 128), np.float32)
    heat[64, 66] = 1.0  # on the blood, right of the arc's hull
    maxima = module.Maxima({str(image.resolve()): mask})
    assert maxima.write(_result(image, heat)) == []
    table = maxima.table()
    assert table["heat"]["slice-hull"] == {"hits": 0, "n": 1}
    assert table["heat"]["grown"] == {"hits": 1, "n": 1}
    # both baselines find the blood: it is the only blood-range tissue in the cavity
    assert table["blood_patch"]["grown"]["hits"] == 1 and table["brightest"]["grown"]["hits"] == 1
    assert table["blood_patch"]["slice-hull"]["hits"] == 0


def test_a_maximum_away_from_the_blood_misses_both_masks(tmp_path, load_benchmark):
    module = load_benchmark("accuracy_real")
    image, mask, _ = _slice(tmp_path)
    heat = np.zeros((128, 128), np.float32)
    heat[10, 110] = 1.0  # far from the lesion
    maxima = module.Maxima({str(image.resolve()): mask})
    maxima.write(_result(image, heat))
    assert maxima.table()["heat"] == {"slice-hull": {"hits": 0, "n": 1}, "grown": {"hits": 0, "n": 1}}


def test_slices_without_a_mask_are_not_counted(tmp_path, load_benchmark):
    module = load_benchmark("accuracy_real")
    image, _, _ = _slice(tmp_path)
    maxima = module.Maxima({})
    maxima.write(_result(image, np.ones((128, 128), np.float32)))
    assert all(c["n"] == 0 for by_mask in maxima.table().values() for c in by_mask.values())
