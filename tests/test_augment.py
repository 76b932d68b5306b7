"""isl_rt.training.augment: site transforms keep white and black, stay 8-bit, are drawn from the seed."""

import numpy as np
import pytest

from isl_rt.training.augment import TRANSFORMS, SiteAugment, alter


def _slice(size: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    r = np.hypot(yy - size / 2, xx - size / 2)
    g = np.zeros((size, size), np.float32)
    g[r < size * 0.4] = 1.0
    g[r < size * 0.34] = 0.4 + 0.1 * np.sin(xx[r < size * 0.34] / 3.0)
    return np.rint(g * 255) / 255


@pytest.mark.parametrize("name", TRANSFORMS)
def test_each_transform_changes_the_slice_and_stays_8_bit(name):
    g = _slice()
    out = alter(g, [name], np.random.default_rng(1))
    assert out.shape == g.shape and out.dtype == np.float32 and 0.0 <= out.min() and out.max() <= 1.0
    assert np.allclose(out * 255, np.rint(out * 255), atol=1e-4)
    assert not np.array_equal(out, g)


@pytest.mark.parametrize("name", ["contrast", "gamma", "noise"])
def test_window_transforms_keep_bone_white_and_air_black(name):
    g = _slice()
    out = alter(g, [name], np.random.default_rng(2))
    assert (out[g == 1.0] == 1.0).all() and (out[g == 0.0] == 0.0).all()


def test_the_batch_share_and_the_seed_decide_everything():
    x = np.repeat(_slice()[None, None], 8, axis=0)
    a, altered = SiteAugment(0.5)(x, np.random.default_rng(3))
    b, again = SiteAugment(0.5)(x, np.random.default_rng(3))
    assert np.array_equal(a, b) and np.array_equal(altered, again)
    assert np.array_equal(a[~altered], x[~altered]) and altered.any()
    none, untouched = SiteAugment(0.0)(x, np.random.default_rng(3))
    assert not untouched.any() and np.array_equal(none, x)
    with pytest.raises(ValueError):
        alter(_slice(), ["unknown"], np.random.default_rng(0))
