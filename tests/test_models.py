"""The ISL networks: shapes of every preset, value ranges, batch independence, feature networks."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from isl_rt.errors import InputError  # noqa: E402
from isl_rt.models.dedn import PRESETS, DeDN, build_dedn, dedn_input_channels  # noqa: E402
from isl_rt.models.discriminator import PatchDiscriminator  # noqa: E402
from isl_rt.models.drn import DRN_PRESETS, ProjectionHead, build_drn  # noqa: E402
from isl_rt.models.features import (  # noqa: E402
    VGG19_TAPS,
    SelfSupervisedFeatures,
    VGG19Features,
    load_vgg19,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---- DeDN -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("preset", "size"), [("tiny", 128), ("base", 32), ("full", 32)])
@pytest.mark.parametrize("channels", [3, 1])
def test_dedn_presets_map_masked_input_to_an_image_in_unit_range(preset, size, channels):
    # tiny at its own S; base/full are fully convolutional, so a small S checks them cheaply
    torch.manual_seed(0)
    model = build_dedn(preset, channels).eval()
    masked = torch.rand(2, dedn_input_channels(channels), size, size)
    with torch.no_grad():
        out = model(masked)
    assert out.shape == (2, channels, size, size)
    assert out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_preset_table_and_sizes_grow():
    assert {k: (p.size, p.base, p.blocks) for k, p in PRESETS.items()} == {
        "tiny": (128, 16, 4), "base": (256, 32, 6), "full": (256, 64, 8),
    }
    counts = [_params(build_dedn(name, 3)) for name in ("tiny", "base", "full")]
    assert counts[0] < counts[1] < counts[2]
    # the full preset is EdgeConnect's generator size (≈10.8M parameters with a 7-channel input)
    assert 10.0e6 < counts[2] < 11.5e6


def test_dedn_uses_instance_norm_without_running_statistics():
    model = build_dedn("tiny", 3)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.InstanceNorm2d)]
    assert len(norms) == 2 * 4 + 4 + 1  # 2 per residual block, 3 encoder, 2 decoder
    assert all(not m.track_running_stats and not m.affine for m in norms)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


def test_dedn_output_of_one_image_does_not_depend_on_the_batch():
    torch.manual_seed(1)
    model = DeDN(channels=3, base=8, blocks=2).eval()
    batch = torch.rand(3, 7, 32, 32)
    with torch.no_grad():
        together = model(batch)
        alone = model(batch[1:2])
    torch.testing.assert_close(together[1:2], alone, rtol=0, atol=1e-5)


def test_dedn_rejects_the_wrong_channel_count():
    with pytest.raises(ValueError, match=r"\[B, 7, S, S\]"):
        build_dedn("tiny", 3)(torch.rand(1, 6, 32, 32))
    with pytest.raises(ValueError, match="unknown preset"):
        build_dedn("huge", 3)


# ---- discriminator ----------------------------------------------------------------------------------
def test_patch_discriminator_gives_a_map_of_logits_and_is_spectrally_normalised():
    d = PatchDiscriminator(channels=3, base=8)
    logits = d(torch.rand(2, 3, 64, 64))
    assert logits.shape == (2, 1, 6, 6)  # S/8 - 2
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 5 and all(hasattr(m, "parametrizations") and "weight" in m.parametrizations for m in convs)
    # spectral norm: after a few power iterations the largest singular value of each weight is ≈ 1
    d.train()
    for _ in range(15):
        d(torch.rand(1, 3, 32, 32))
    d.eval()
    w = convs[1].weight.detach().reshape(convs[1].weight.shape[0], -1)
    assert torch.linalg.matrix_norm(w, ord=2).item() == pytest.approx(1.0, abs=0.05)


# ---- feature networks -------------------------------------------------------------------------------
def _torchvision_like_state(model: VGG19Features) -> dict[str, torch.Tensor]:
    """What torchvision's vgg19().state_dict() holds: features.0..34 and a classifier."""
    state = {f"features.{k}": v.clone() for k, v in model.features.state_dict().items()}
    state["features.34.weight"] = torch.zeros(512, 512, 3, 3)  # conv5_4, beyond relu5_1
    state["features.34.bias"] = torch.zeros(512)
    state["classifier.0.weight"] = torch.zeros(8, 8)
    return state


def test_vgg19_reads_a_torchvision_state_dict_and_taps_the_first_relu_of_each_block(tmp_path):
    torch.manual_seed(0)
    reference = VGG19Features().eval()
    path = tmp_path / "vgg19.pth"
    torch.save(_torchvision_like_state(reference), path)
    loaded = load_vgg19(path)
    assert not any(p.requires_grad for p in loaded.parameters()) and not loaded.training
    image = torch.rand(1, 3, 48, 48)
    feats = loaded(image)
    assert [f.shape[1] for f in feats] == [64, 128, 256, 512, 512]
    assert [f.shape[-1] for f in feats] == [48, 24, 12, 6, 3]
    for a, b in zip(feats, reference(image)):
        torch.testing.assert_close(a, b)
    assert all(isinstance(loaded.features[i], torch.nn.ReLU) for i in VGG19_TAPS)
    # a grey (C = 1) image is fed as three equal channels
    grey = loaded(image[:, :1])
    for a, b in zip(grey, loaded(image[:, :1].expand(1, 3, 48, 48))):
        torch.testing.assert_close(a, b)


def test_vgg19_refuses_files_that_are_not_vgg19(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_vgg19(tmp_path / "missing.pth")
    bad = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, bad)
    with pytest.raises(InputError, match="lacks VGG-19 weights"):
        load_vgg19(bad)
    wrong = tmp_path / "wrong.pth"
    state = _torchvision_like_state(VGG19Features())
    state["features.0.weight"] = torch.zeros(32, 3, 3, 3)
    torch.save(state, wrong)
    with pytest.raises(InputError, match=r"features.0.weight' of shape \(32, 3, 3, 3\)"):
        load_vgg19(wrong)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00not a pickle")
    with pytest.raises(InputError, match="could not be read"):
        load_vgg19(garbage)


def test_self_supervised_features_give_five_maps_and_rotation_logits():
    net = SelfSupervisedFeatures(channels=3, base=4)
    x = torch.rand(2, 3, 32, 32)
    feats = net(x)
    assert [f.shape[1:] for f in feats] == [(4, 32, 32), (8, 16, 16), (16, 8, 8), (32, 4, 4), (32, 2, 2)]
    assert net.classify(x).shape == (2, 4)


# ---- DRN --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("preset", list(DRN_PRESETS))
def test_drn_presets_embed_difference_images(preset):
    torch.manual_seed(0)
    model = build_drn(preset, channels=3, embedding_dim=128).eval()
    with torch.no_grad():
        h = model(torch.rand(2, 3, 32, 32))
    assert h.shape == (2, 128) and torch.isfinite(h).all()
    assert ProjectionHead(128, 64)(h).shape == (2, 64)


def test_drn_sees_the_strength_of_a_difference_image():
    # GroupNorm alone would make the encoder blind to a global scaling of its input
    torch.manual_seed(0)
    model = build_drn("tiny", channels=3, embedding_dim=16).eval()
    x = torch.rand(1, 3, 32, 32) * 0.05
    with torch.no_grad():
        faint, strong = model(x), model(4 * x)
    assert float((faint - strong).abs().max()) > 1e-2


def test_drn_embedding_of_one_image_does_not_depend_on_the_batch_or_mode():
    torch.manual_seed(0)
    model = build_drn("tiny", channels=3, embedding_dim=16)
    batch = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        model.train()
        in_train = model(batch)
        model.eval()
        alone = model(batch[2:3])
    torch.testing.assert_close(in_train[2:3], alone, rtol=0, atol=1e-5)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
