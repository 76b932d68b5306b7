"""Training: losses, masks, one step of each network lowers its loss, repeatable and resumable loops,
difference images through the runtime's kernels, and slice preparation from the phantom."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from isl_rt import kernels  # noqa: E402
from isl_rt.bundle import CavitySpec  # noqa: E402
from isl_rt.kernels.partition import Partition  # noqa: E402
from isl_rt.training import losses as L  # noqa: E402
from isl_rt.training.common import EarlyStopping, TrainingError, load_checkpoint, torch_generator  # noqa: E402
from isl_rt.training.data import PrepParams, SliceSet  # noqa: E402
from isl_rt.training.dedn import DeDNTrainConfig, DeDNTrainer, build_input, load_dedn, train_dedn  # noqa: E402
from isl_rt.training.drn import (  # noqa: E402
    DRNTrainConfig,
    DRNTrainer,
    difference_images,
    dihedral_view,
    lesion_differences,
    load_drn,
    synthetic_disorder,
    synthetic_lesion,
    train_drn,
)
from isl_rt.training.features import train_self_supervised_features  # noqa: E402
from isl_rt.training.masks import MaskSampler, assemble_input  # noqa: E402

S = 32


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def synthetic_slices(n: int = 6, size: int = S, seed: int = 0) -> SliceSet:
    """Head-like [0,1] slices (an ellipse with a smooth interior and a bright rim) and their edges."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size - 0.5
    x = np.zeros((n, 3, size, size), np.float32)
    for i in range(n):
        a, b = rng.uniform(0.3, 0.42, 2)
        r = np.sqrt((xx / a) ** 2 + (yy / b) ** 2)
        inside = r < 1
        texture = 0.5 + 0.2 * np.sin(6 * xx + rng.uniform(0, 6)) * np.cos(5 * yy)
        x[i, 0] = np.where(inside, texture, 0)
        x[i, 1] = np.where(inside, 0.6 * texture, 0)
        x[i, 2] = np.where((r > 0.9) & inside, 0.9, np.where(inside, 0.2, 0))
        front = np.hypot(xx - rng.uniform(-0.05, 0.05), yy + 0.6 * b) < 0.08  # anterior landmark: slices have an orientation
        x[i, :, front] = 0.95
    gy, gx = np.gradient(x, axis=(2, 3))
    edges = (np.hypot(gx, gy) > 0.05).astype(np.uint8)
    return SliceSet(
        x=x, edges=edges, series_index=(np.arange(n) // 3).astype(np.int32), series=[f"s{i}" for i in range((n + 2) // 3)],
        params=PrepParams(size=size), description="synthetic test slices",
    )


def fast_dedn_config(**changes) -> DeDNTrainConfig:
    values = dict(preset="tiny", max_epochs=2, batch_size=3, feature_steps=3, feature_batch=4, lr=1e-3, seed=3, threads=0, k_max=4)
    values.update(changes)
    return DeDNTrainConfig(**values)


# ---- losses -----------------------------------------------------------------------------------------
def test_masked_l1_weighs_the_erased_region_per_image():
    out = torch.zeros(1, 2, 4, 4)
    target = torch.ones(1, 2, 4, 4)
    target[..., :2, :] = 3.0  # error 3 on the top half, 1 on the bottom
    hole = torch.zeros(1, 1, 4, 4)
    hole[..., :2, :] = 1.0
    assert float(L.masked_l1(out, target, hole, valid_weight=0.0)) == pytest.approx(3.0)
    assert float(L.masked_l1(out, target, hole, valid_weight=0.5)) == pytest.approx(3.5)
    # a small hole weighs as much as a large one: the loss is a mean over the hole's own pixels
    small = torch.zeros(1, 1, 4, 4)
    small[..., 0, 0] = 1.0
    assert float(L.masked_l1(out, target, small, valid_weight=0.0)) == pytest.approx(3.0)


def test_gram_matrix_is_normalised_by_size():
    f = torch.ones(2, 3, 4, 5)
    g = L.gram(f)
    assert g.shape == (2, 3, 3)
    torch.testing.assert_close(g, torch.full((2, 3, 3), 20.0 / 60.0))


def test_perceptual_and_style_losses_vanish_on_equal_features_only():
    a = [torch.rand(1, 4, 8, 8), torch.rand(1, 8, 4, 4)]
    assert float(L.perceptual_loss(a, a)) == 0.0 and float(L.style_loss(a, a)) == 0.0
    b = [t + 0.1 for t in a]
    assert float(L.perceptual_loss(a, b)) == pytest.approx(0.2, rel=1e-5)
    assert float(L.style_loss(a, b)) > 0.0


@pytest.mark.parametrize("kind", ["nsgan", "hinge"])
def test_adversarial_losses_reward_the_right_side(kind):
    confident = L.discriminator_loss(torch.full((4,), 5.0), torch.full((4,), -5.0), kind)
    fooled = L.discriminator_loss(torch.full((4,), -5.0), torch.full((4,), 5.0), kind)
    assert float(confident) < float(fooled)
    assert float(L.generator_adversarial_loss(torch.full((4,), 5.0), kind)) < float(
        L.generator_adversarial_loss(torch.full((4,), -5.0), kind)
    )
    with pytest.raises(ValueError, match="unknown adversarial loss"):
        L.discriminator_loss(torch.zeros(1), torch.zeros(1), "wgan")  # type: ignore[arg-type]


def test_early_stopping_is_the_papers_rule():
    stop = EarlyStopping(patience=2)
    assert stop.update(1.0, 1) and not stop.should_stop
    assert not stop.update(1.0, 2)  # equal is not a decrease
    assert stop.update(0.5, 3) and stop.since_best == 0
    assert not stop.update(0.6, 4) and not stop.should_stop
    assert not stop.update(0.7, 5) and stop.should_stop
    assert (stop.best, stop.best_epoch) == (0.5, 3)
    assert EarlyStopping.from_state(stop.state()) == stop


# ---- masks ------------------------------------------------------------------------------------------
def test_masks_are_groups_of_runtime_partitions():
    sampler = MaskSampler(S, k_min=2, k_max=8)
    rng = np.random.default_rng(0)
    holes = sampler.sample(300, rng)
    assert holes.shape == (300, 1, S, S) and holes.dtype == np.float32
    assert set(np.unique(holes).tolist()) == {0.0, 1.0}
    fractions = holes.mean(axis=(1, 2, 3))
    assert fractions.min() > 0.0 and fractions.max() < 1.0
    # every hole is a union of cells of some K×K runtime grid
    grids = {k: Partition.cells(k).group_map(S) for k in range(2, 9)}

    def is_union_of_cells(hole: np.ndarray) -> bool:
        return any(
            all(len(np.unique(hole[grid == cell])) == 1 for cell in range(k * k)) for k, grid in grids.items()
        )

    assert all(is_union_of_cells(h[0]) for h in holes[:60])
    # single cells of small and large grids both occur, and multi-cell groups too
    cell_sizes = {round(f * 64) for f in fractions}
    assert 16 in cell_sizes and 1 in cell_sizes  # a 2×2 cell (1/4) and an 8×8 cell (1/64)
    labelled = [len(np.unique(grids[8][h[0] > 0])) for h in holes[:100]]
    assert max(labelled) > 1


def test_masks_are_repeatable_from_the_seed():
    sampler = MaskSampler(S)
    a = sampler.sample(20, np.random.default_rng(5))
    b = sampler.sample(20, np.random.default_rng(5))
    c = sampler.sample(20, np.random.default_rng(6))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_training_input_is_exactly_the_runtime_fanout():
    data = synthetic_slices(2)
    partition = Partition.cells(4)
    group_map = partition.group_map(S)
    fan = kernels.fanout(data.x, data.edges, group_map, partition.groups)
    for n in range(2):
        for g in (0, 5, 15):
            hole = (group_map == g).astype(np.float32)[None, None]
            ours = assemble_input(data.x[n : n + 1], data.edges[n : n + 1], hole)
            assert np.array_equal(ours[0], fan[n * partition.groups + g])
            in_torch = build_input(torch.from_numpy(data.x[n : n + 1]), torch.from_numpy(data.edges[n : n + 1]), torch.from_numpy(hole))
            assert np.array_equal(in_torch.numpy()[0], fan[n * partition.groups + g])


# ---- one step lowers each network's loss -----------------------------------------------------------
def _fixed_batch(data: SliceSet, k: int = 4, group: int = 5):
    hole = (Partition.cells(k).group_map(S) == group).astype(np.float32)
    x = torch.from_numpy(data.x[:3])
    e = torch.from_numpy(data.edges[:3])
    return x, e, torch.from_numpy(np.broadcast_to(hole, (3, 1, S, S)).copy())


def test_dedn_steps_lower_the_reconstruction_loss():
    data = synthetic_slices()
    trainer = DeDNTrainer(fast_dedn_config(lr=2e-3), channels=3, size=S, device=torch.device("cpu"))
    trainer.prepare_features(data.x, None)
    x, e, hole = _fixed_batch(data)
    first = trainer.step(x, e, hole)
    for _ in range(8):
        last = trainer.step(x, e, hole)
    assert last["recon"] < 0.8 * first["recon"]
    assert last["l1"] < first["l1"]


def test_discriminator_steps_lower_its_loss():
    data = synthetic_slices()
    trainer = DeDNTrainer(fast_dedn_config(), channels=3, size=S, device=torch.device("cpu"))
    x, e, hole = _fixed_batch(data)
    with torch.no_grad():
        fake = trainer.generator(build_input(x, e, hole))
    opt = torch.optim.Adam(trainer.discriminator.parameters(), lr=2e-3)
    values = []
    for _ in range(10):
        loss = L.discriminator_loss(trainer.discriminator(x), trainer.discriminator(fake), "nsgan")
        opt.zero_grad()
        loss.backward()
        opt.step()
        values.append(float(loss.detach()))
    assert values[-1] < values[0] - 0.05


def _difference_batch(n: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Difference-image-like batch: faint structured noise inside an ellipse, and its foreground."""
    data = synthetic_slices(n, seed=seed)
    rng = np.random.default_rng(seed)
    dif = np.abs(rng.normal(0, 0.03, data.x.shape)).astype(np.float32) * (data.x.max(axis=1, keepdims=True) > 0)
    return torch.from_numpy(dif), torch.from_numpy(data.x.max(axis=1) > 0.05)


def test_drn_moco_steps_lower_the_infonce_loss():
    # 32 images whose residual strength differs by factors of 2 (identifiable through the
    # augmentations); batches of 8 in turn with a queue of 8, so negatives are always other images
    x, _ = _difference_batch(32)
    x = (x * torch.tensor([2.0 ** (i % 8) for i in range(32)]).view(32, 1, 1, 1) / 6.4).clamp(0, 1)
    config = DRNTrainConfig(queue_size=8, moco_lr=3e-4, momentum=0.9, embedding_dim=16, projection_dim=16)
    trainer = DRNTrainer(config, 3, torch.device("cpu"))

    def infonce() -> float:
        with torch.no_grad():
            return float(trainer.moco_loss(x[:8], torch_generator(0, 0, 0))[0])

    trainer.moco_step(x[24:], torch_generator(0, 99, 0))  # the queue now holds real keys
    before = infonce()
    for step in range(32):
        b = step % 4
        trainer.moco_step(x[8 * b : 8 * b + 8], torch_generator(0, step, 0))
    after = infonce()
    assert after < before - 0.3
    assert after < np.log(9) - 0.2  # better than any collapsed encoder (uniform logits: ln(1 + queue))


def test_drn_finetune_steps_lower_the_centre_loss():
    x, fg = _difference_batch(8)
    trainer = DRNTrainer(DRNTrainConfig(embedding_dim=16, finetune_lr=1e-3), 3, torch.device("cpu"))
    trainer.compute_centre(x.numpy())
    assert trainer.centre is not None and trainer.centre.shape == (16,)
    assert float(trainer.centre.abs().min()) >= 0.1  # Deep SVDD's guard
    with torch.no_grad():
        before = {k: float(v) for k, v in trainer.finetune_losses(x, fg, torch_generator(0, 0, 0)).items()}
    for i in range(30):
        trainer.finetune_step(x, fg, torch_generator(0, 1 + i, 0))
    with torch.no_grad():
        after = {k: float(v) for k, v in trainer.finetune_losses(x, fg, torch_generator(0, 0, 0)).items()}
    assert after["loss"] < 0.7 * before["loss"]
    # an encoder that cannot tell x⁺ from x has loss ≥ 2 (d² + 1/d² ≥ 2 per image): this one can
    assert after["loss"] < 1.6
    assert after["separation"] > before["separation"]  # synthetic disorders now sit farther from c


def test_drn_finetune_steps_push_synthetic_lesions_away_from_the_centre():
    x, region, _ = _ct_slices(8)
    dd = x.clamp(0, 1).numpy() * 0.98  # a dedisorder image close to each slice
    dif = (x - torch.from_numpy(dd)).abs() * region.unsqueeze(1)
    trainer = DRNTrainer(DRNTrainConfig(embedding_dim=16, finetune_lr=1e-3), 3, torch.device("cpu"))
    trainer.compute_centre(dif.numpy())

    def losses(step):
        gen = torch_generator(0, step, 0)
        return lesion_differences(dif, x.numpy(), dd, region, CT_WINDOWS, gen), gen

    with torch.no_grad():
        plus, gen = losses(0)
        before = {k: float(v) for k, v in trainer.finetune_losses(dif, region, gen, plus).items()}
    for i in range(30):
        plus, gen = losses(1 + i)
        trainer.finetune_step(dif, region, gen, plus)
    with torch.no_grad():
        plus, gen = losses(0)
        after = {k: float(v) for k, v in trainer.finetune_losses(dif, region, gen, plus).items()}
    assert after["loss"] < 0.7 * before["loss"]
    assert after["separation"] > before["separation"]  # the lesioned slices now sit farther from c


def test_self_supervised_features_learn_the_rotation_task():
    data = synthetic_slices(8)
    net, summary = train_self_supervised_features(data.x, steps=40, batch_size=8, base=8, lr=1e-3, seed=0)
    assert summary["rotation_ce"] < 0.7  # chance is ln 4 ≈ 1.386
    assert not net.training and not any(p.requires_grad for p in net.parameters())


# ---- views --------------------------------------------------------------------------------------------
def test_rotated_flipped_view_is_a_non_identity_dihedral_transform():
    x = torch.rand(16, 3, 8, 8)
    v = dihedral_view(x, torch_generator(0, 0, 0))
    for a, b in zip(x, v):
        assert not torch.equal(a, b)
        options = [torch.rot90(a, k, dims=(1, 2)) for k in range(4)]
        options += [o.flip(2) for o in options]
        assert any(torch.equal(b, o) for o in options)


def test_synthetic_disorder_adds_difference_intensity_inside_the_head():
    x, fg = _difference_batch(6)
    plus = synthetic_disorder(x, fg, torch_generator(1, 0, 0), p_cutout=0.0)
    added = plus - x
    assert float(plus.min()) >= 0.0 and float(plus.max()) <= 1.0
    assert float(added.min()) >= 0.0
    assert all(float(added[i].max()) > 0.05 for i in range(6))  # every image got a lesion
    centre_in_head = [bool(fg[i][added[i].sum(0) == added[i].sum(0).max()].all()) for i in range(6)]
    assert all(centre_in_head)
    again = synthetic_disorder(x, fg, torch_generator(1, 0, 0), p_cutout=0.0)
    assert torch.equal(plus, again)


CT_WINDOWS = torch.tensor([[40.0, 80.0], [75.0, 215.0], [600.0, 2800.0]])


def _ct_slices(n: int, size: int = S) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """(x [n,3,S,S] windowed from a HU phantom of brain 30 HU inside a 1000 HU ring, region, HU)."""
    yy, xx = np.mgrid[:size, :size] / size - 0.5
    r = np.hypot(xx, yy)
    hu = np.where(r < 0.3, 30.0, np.where(r < 0.4, 1000.0, -1000.0))
    hu = hu + np.random.default_rng(0).normal(0, 3, (n, size, size)) * (r < 0.3)
    w = CT_WINDOWS.numpy()
    x = np.clip((hu[:, None] - (w[None, :, 0, None, None] - w[None, :, 1, None, None] / 2)) / w[None, :, 1, None, None], 0, 1)
    region = torch.from_numpy(np.broadcast_to(r < 0.28, (n, size, size)).copy())
    return torch.from_numpy(x.astype(np.float32)), region, hu


def test_synthetic_lesion_shifts_tissue_density_in_every_window_inside_the_region():
    x, region, hu = _ct_slices(8)
    plus = synthetic_lesion(x, region, CT_WINDOWS, torch_generator(2, 0, 0))
    change = (plus - x).abs()
    assert float(plus.min()) >= 0.0 and float(plus.max()) <= 1.0
    assert all(float(change[i].max()) > 0.1 for i in range(8))  # every slice got a lesion
    assert float(change.sum(1)[~region].max()) == 0.0  # nothing outside the region, not even rounding
    # a density shift δ shows as δ/width in each unclipped window: the brain window (80 HU) moves
    # 2800/80 = 35 times as much as the bone window wherever neither clips
    moved = (change[:, 2] > 1e-4) & (plus[:, 0] > 0.01) & (plus[:, 0] < 0.99) & (x[:, 0] > 0.01) & (x[:, 0] < 0.99)
    assert int(moved.sum()) > 20
    ratio = (plus[:, 0] - x[:, 0])[moved] / (plus[:, 2] - x[:, 2])[moved]
    np.testing.assert_allclose(ratio.numpy(), 2800.0 / 80.0, rtol=1e-2)
    # the pixels' own noise stays: a lesion is a shift, not a flat fill (except where it clips)
    inner = (change[:, 0] > 0) & (plus[:, 0] > 0.01) & (plus[:, 0] < 0.99)
    assert float((plus[:, 0] - x[:, 0])[inner].std()) < float(x[:, 0][region].std()) * 10
    assert torch.equal(plus, synthetic_lesion(x, region, CT_WINDOWS, torch_generator(2, 0, 0)))


def test_lesion_differences_change_only_the_lesion_pixels_against_the_dedisorder_image():
    x, region, _ = _ct_slices(4)
    dd = (x + 0.02).clamp(0, 1).numpy()  # a dedisorder image close to the slice
    dif = ((x - torch.from_numpy(dd)).abs() * region.unsqueeze(1)).float()
    plus = lesion_differences(dif, x.numpy(), dd, region, CT_WINDOWS, torch_generator(5, 0, 0))
    x_plus = synthetic_lesion(x, region, CT_WINDOWS, torch_generator(5, 0, 0))
    expected = ((x_plus - torch.from_numpy(dd)).abs() * region.unsqueeze(1)).clamp(0, 1)
    torch.testing.assert_close(plus, expected, atol=1e-6, rtol=0)
    assert float((plus - dif).abs().max()) > 0.1
    # the slice-input ablation compares x⁺ with nothing: x⁺ itself inside the region
    as_slice = lesion_differences(x * region.unsqueeze(1), x.numpy(), None, region, CT_WINDOWS, torch_generator(5, 0, 0))
    torch.testing.assert_close(as_slice, x_plus * region.unsqueeze(1), atol=1e-6, rtol=0)


def test_old_drn_checkpoints_read_as_blob_disorders():
    old = {k: v for k, v in DRNTrainConfig().to_dict().items() if k != "disorder"}
    assert DRNTrainConfig.from_dict(old).disorder == "blob"
    assert DRNTrainConfig().disorder == "lesion"
    with pytest.raises(TrainingError, match="lesion or blob"):
        DRNTrainConfig(disorder="cutout").validate()


# ---- loops: checkpoints, selection, repeatability, resume --------------------------------------------
def test_train_dedn_writes_checkpoints_and_resumes_exactly(tmp_path):
    data = synthetic_slices()
    events = []
    straight = train_dedn(data, tmp_path / "a", fast_dedn_config(max_epochs=2), progress=events.append)
    assert straight.epochs == 2 and (tmp_path / "a" / "dedn_last.pt").is_file() and (tmp_path / "a" / "dedn_best.pt").is_file()
    assert [h["epoch"] for h in straight.history] == [1.0, 2.0]
    assert {e.phase for e in events} == {"features", "dedn"}
    assert sum(e.kind == "epoch" for e in events) == 2

    train_dedn(data, tmp_path / "b", fast_dedn_config(max_epochs=1))
    resumed = train_dedn(data, tmp_path / "b", fast_dedn_config(max_epochs=2), resume=True)
    assert resumed.history == straight.history
    a = load_checkpoint(tmp_path / "a" / "dedn_last.pt")["trainer"]["generator"]
    b = load_checkpoint(tmp_path / "b" / "dedn_last.pt")["trainer"]["generator"]
    assert all(torch.equal(a[k], b[k]) for k in a)

    model, meta = load_dedn(tmp_path / "a" / "dedn_best.pt")
    assert meta["feature_network"] == "self-supervised" and meta["epoch"] == straight.best_epoch
    assert not model.training


def test_train_dedn_refuses_to_overwrite_or_resume_with_other_options(tmp_path):
    data = synthetic_slices()
    train_dedn(data, tmp_path, fast_dedn_config(max_epochs=1))
    with pytest.raises(TrainingError, match="pass --resume"):
        train_dedn(data, tmp_path, fast_dedn_config(max_epochs=1))
    with pytest.raises(TrainingError, match="seed=3"):
        train_dedn(data, tmp_path, fast_dedn_config(max_epochs=2, seed=4), resume=True)


def test_train_dedn_stops_when_the_loss_stops_decreasing(tmp_path):
    data = synthetic_slices()
    result = train_dedn(data, tmp_path, fast_dedn_config(max_epochs=6, patience=1, lr=0.0, d_lr_ratio=0.0))
    # with no learning the loss cannot keep decreasing: the run stops long before max_epochs
    assert result.stopped_early and result.epochs < 6
    assert result.best_epoch == int(min(result.history, key=lambda h: h["recon"])["epoch"])


def _recon_only_config(**changes) -> DeDNTrainConfig:
    values = dict(weights=L.LossWeights(1.0, 0.0, 0.0, 0.0), beta1=0.9, beta2=0.99, lr=2e-3, lr_schedule="onecycle",
                  steps_per_epoch=2, max_epochs=3)
    values.update(changes)
    return fast_dedn_config(**values)


def test_reconstruction_only_recipe_trains_no_discriminator_and_no_features(tmp_path):
    data = synthetic_slices()
    config = _recon_only_config()
    trainer = DeDNTrainer(config, channels=3, size=S, device=torch.device("cpu"))
    assert trainer.discriminator is None and trainer.opt_d is None
    trainer.prepare_features(data.x, None)
    assert trainer.features is None and trainer.feature_state()["kind"] == "none"
    x, e, hole = _fixed_batch(data)
    first = trainer.step(x, e, hole)
    assert first["adv"] == 0.0 and first["perc"] == 0.0 and first["d"] == 0.0
    for _ in range(5):
        last = trainer.step(x, e, hole)
    assert last["l1"] < first["l1"]
    assert trainer.schedule is not None and trainer.schedule.last_epoch == 6  # one scheduler step per optimiser step

    events = []
    straight = train_dedn(data, tmp_path, config, progress=events.append)
    assert {e.phase for e in events} == {"dedn"}  # no feature-network phase
    _, meta = load_dedn(tmp_path / "dedn_best.pt")
    assert meta["feature_network"] == "none" and meta["epoch"] == straight.best_epoch
    with pytest.raises(TrainingError, match="max-epochs=3"):  # the one-cycle schedule's length is fixed
        train_dedn(data, tmp_path, replace(config, max_epochs=4), resume=True)


class _Interrupt(Exception):
    pass


def test_reconstruction_only_recipe_resumes_exactly(tmp_path):
    data = synthetic_slices()
    config = _recon_only_config()
    straight = train_dedn(data, tmp_path / "a", config)

    def stop_after_first_epoch(event):
        if event.kind == "epoch":
            raise _Interrupt  # as if the process were killed after writing epoch 1's checkpoint

    with pytest.raises(_Interrupt):
        train_dedn(data, tmp_path / "b", config, progress=stop_after_first_epoch)
    resumed = train_dedn(data, tmp_path / "b", config, resume=True)
    assert resumed.history == straight.history
    a = load_checkpoint(tmp_path / "a" / "dedn_last.pt")["trainer"]["generator"]
    b = load_checkpoint(tmp_path / "b" / "dedn_last.pt")["trainer"]["generator"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_dedn_epoch_is_chosen_by_healthy_validation_error_on_the_inference_grid(tmp_path):
    data = synthetic_slices(n=6, seed=0)
    held_out = synthetic_slices(n=3, seed=9)
    config = _recon_only_config(lr_schedule="constant", val_k=4)
    result = train_dedn(data, tmp_path, config, validation=held_out)
    losses = [h["val_l1"] for h in result.history]
    assert result.best_epoch == 1 + int(np.argmin(losses))
    state = load_checkpoint(tmp_path / "dedn_best.pt")
    assert state["selection"].startswith("validation") and state["validation"]["slices"] == 3

    # the selection loss is the runtime's dedisorder error: every cell of the 4×4 grid inpainted from the rest
    model, _ = load_dedn(tmp_path / "dedn_best.pt")
    part = Partition.cells(4)
    x = np.ascontiguousarray(held_out.x, dtype=np.float32)
    dif = difference_images(model, x, np.ascontiguousarray(held_out.edges), part)
    assert float(np.mean(dif)) == pytest.approx(state["history"][result.best_epoch - 1]["val_l1"], rel=1e-4)

    other = synthetic_slices(n=2, size=S + 4)
    with pytest.raises(TrainingError, match="prepared differently"):
        train_dedn(data, tmp_path / "x", config, validation=other)


def test_difference_images_follow_the_runtime_formula(tmp_path):
    data = synthetic_slices(3)
    torch.manual_seed(0)
    from isl_rt.models.dedn import DeDN

    dedn = DeDN(channels=3, base=4, blocks=1).eval()
    partition = Partition.cells(4)
    dif = difference_images(dedn, data.x, data.edges, partition, batch_images=20)
    gm = partition.group_map(S)
    fan = assemble_input(
        np.repeat(data.x, 16, axis=0), np.repeat(data.edges, 16, axis=0),
        np.stack([(gm == g).astype(np.float32)[None] for g in range(16)] * 3),
    )
    with torch.no_grad():
        xhat = dedn(torch.from_numpy(fan)).numpy().reshape(3, 16, 3, S, S)
    x_dd = np.zeros_like(data.x)
    for g in range(16):
        x_dd += xhat[:, g] * (gm == g)[None, None]
    np.testing.assert_allclose(dif, np.abs(data.x - x_dd), atol=1e-5)


def test_train_drn_end_to_end_and_resume(tmp_path):
    data = synthetic_slices(6)
    train_dedn(data, tmp_path, fast_dedn_config(max_epochs=1))
    config = DRNTrainConfig(k=2, pretrain_epochs=1, max_epochs=2, batch_size=3, queue_size=6, embedding_dim=8, projection_dim=8, seed=1)
    events = []
    result = train_drn(data, tmp_path, config, progress=events.append)
    assert {e.phase for e in events} >= {"differences", "moco", "finetune"}
    assert (result.pretrain_epochs, result.finetune_epochs) == (1, 2)
    assert len(result.centre) == 8
    assert (tmp_path / "differences" / "dif.npy").is_file()
    dd = np.load(tmp_path / "differences" / "dd.npy")  # the dedisorder images the lesions are compared with
    np.testing.assert_allclose(np.abs(data.x - dd), np.load(tmp_path / "differences" / "dif.npy"), atol=1e-6)
    model, meta = load_drn(tmp_path / "drn_best.pt")
    assert meta["partition"] == Partition.cells(2).to_dict() and meta["centre"] == pytest.approx(result.centre)
    assert model(torch.from_numpy(np.load(tmp_path / "differences" / "dif.npy")[:2])).shape == (2, 8)

    fresh = tmp_path / "again"
    fresh.mkdir()
    (fresh / "dedn_best.pt").write_bytes((tmp_path / "dedn_best.pt").read_bytes())
    cut = DRNTrainConfig(**{**config.to_dict(), "max_epochs": 1})
    train_drn(data, fresh, cut)
    resumed = train_drn(data, fresh, config, resume=True)
    assert resumed.history == result.history and resumed.centre == result.centre


def test_the_drn_sees_difference_images_inside_the_cranial_cavity(tmp_path):
    from dataclasses import replace

    from isl_rt.training.data import image_windows
    from isl_rt.training.drn import _scored_region

    data = synthetic_slices(4)
    dif = np.random.default_rng(0).random(data.x.shape, dtype=np.float32)
    scored, region = _scored_region(dif, data, DRNTrainConfig())
    mask = kernels.cavity(data.x, 2, (300.0 + 800.0) / 2800.0, 2)
    assert 0 < mask.mean() < 1
    np.testing.assert_array_equal(scored, dif * mask[:, None])
    np.testing.assert_array_equal(region, mask > 0)  # synthetic disorders go inside the cavity
    whole, head = _scored_region(dif, data, DRNTrainConfig(cavity=False))
    assert whole is dif and head.sum() > region.sum()
    gray = replace(data, params=replace(data.params, windows=image_windows(3)))
    with pytest.raises(TrainingError, match="window named 'bone'.*--no-cavity"):
        _scored_region(dif, gray, DRNTrainConfig())
    # checkpoints written before the cavity existed scored whole slices
    old = {k: v for k, v in DRNTrainConfig().to_dict().items() if not k.startswith("cavity")}
    assert DRNTrainConfig.from_dict(old).cavity_spec() is None
    # ... and those written before sides and largest existed used bone on all four sides, every component
    before = {k: v for k, v in DRNTrainConfig().to_dict().items() if k not in ("cavity_sides", "cavity_largest")}
    assert DRNTrainConfig.from_dict(before).cavity_spec() == DRNTrainConfig().cavity_spec()
    assert (DRNTrainConfig().cavity_spec().sides, DRNTrainConfig().cavity_spec().largest) == (4, False)


def test_the_drn_cavity_takes_sides_and_largest():
    from isl_rt.training.drn import _scored_region

    data = synthetic_slices(4)
    dif = np.random.default_rng(0).random(data.x.shape, dtype=np.float32)
    config = DRNTrainConfig(cavity_sides=3, cavity_largest=True, cavity_margin=1)
    assert config.cavity_spec() == CavitySpec("bone", 300.0, 1, 3, True)
    scored, region = _scored_region(dif, data, config)
    mask = kernels.cavity(data.x, 2, (300.0 + 800.0) / 2800.0, 1, sides=3, largest=True)
    assert 0 < mask.mean() < 1
    np.testing.assert_array_equal(scored, dif * mask[:, None])
    np.testing.assert_array_equal(region, mask > 0)
    with pytest.raises(TrainingError, match="--cavity-sides must be 1, 2, 3 or 4, got 5"):
        DRNTrainConfig(cavity_sides=5).validate()


def test_train_drn_on_original_slices_needs_no_dedn(tmp_path):
    data = synthetic_slices(6)
    config = DRNTrainConfig(k=2, pretrain_epochs=1, max_epochs=1, batch_size=3, queue_size=6, embedding_dim=8,
                            projection_dim=8, input="slice")
    result = train_drn(data, tmp_path, config)
    assert len(result.centre) == 8 and not (tmp_path / "differences").exists()
    _, meta = load_drn(tmp_path / "drn_best.pt")
    assert meta["config"]["input"] == "slice" and meta["differences"]["input"] == "slice"
    with pytest.raises(TrainingError, match="difference or slice"):
        DRNTrainConfig(input="image").validate()


def test_train_drn_needs_a_trained_dedn(tmp_path):
    with pytest.raises(TrainingError, match="train the DeDN first"):
        train_drn(synthetic_slices(), tmp_path, DRNTrainConfig())


# ---- data preparation with the runtime's kernels ------------------------------------------------------
def test_prepared_phantom_slices_are_what_the_runtime_computes(tmp_path):
    from isl_rt.bundle import CannySpec
    from isl_rt.io.phantom import generate_study
    from isl_rt.training.data import prepare

    params = PrepParams(size=S)
    slices = prepare("phantom:1:5", params, cache_dir=tmp_path / "data")
    hu = generate_study(5).hu
    x = kernels.window(hu, params.windows_array(), S)
    e = kernels.canny(x, params.canny.low, params.canny.high, sigma=params.canny.sigma)
    assert slices.x.dtype == np.float32 and slices.edges.dtype == np.uint8
    assert np.array_equal(slices.x, x) and np.array_equal(slices.edges, e)
    assert slices.series == ["phantom-5"] and slices.series_index.tolist() == [0] * hu.shape[0]
    assert 0.0 < float(e.mean()) < 0.3  # the Canny defaults find edges, not noise everywhere

    stamp = (tmp_path / "data" / "x.npy").stat().st_mtime_ns
    again = prepare("phantom:1:5", params, cache_dir=tmp_path / "data")
    assert isinstance(again.x, np.memmap) and (tmp_path / "data" / "x.npy").stat().st_mtime_ns == stamp
    other = prepare("phantom:1:5", PrepParams(size=S, canny=CannySpec(1.0, 0.05, 0.3)), cache_dir=tmp_path / "data")
    assert not np.array_equal(np.asarray(other.edges), np.asarray(slices.edges))


def test_dicom_tree_with_labels_trains_on_healthy_series_only(tmp_path):
    from isl_rt.io import phantom
    import csv

    from isl_rt.training.data import prepare

    phantom.write_cohort(tmp_path / "cohort", scans=3, abnormal_fraction=0.34, seed=2)
    with open(tmp_path / "cohort" / "labels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    healthy = {r["SeriesInstanceUID"] for r in rows if r["label"] == "0"}
    assert 0 < len(healthy) < 3
    labels = tmp_path / "cohort" / "labels.csv"
    slices = prepare(tmp_path / "cohort", PrepParams(size=S), labels=labels, cache_dir=tmp_path / "cache")
    assert set(slices.series) == healthy and slices.excluded["abnormal"] == 3 - len(healthy)
    assert isinstance(slices.x, np.memmap) and slices.x.shape[1:] == (3, S, S)  # written straight to the cache
    assert slices.x.shape[0] == len(slices.series_index) == np.load(tmp_path / "cache" / "edges.npy").shape[0]
    assert not list((tmp_path / "cache").glob("*.tmp"))


def test_image_folders_are_prepared_with_identity_windows(tmp_path):
    from PIL import Image

    from isl_rt.training.data import IMAGE_HU_SCALE, image_windows, prepare

    rng = np.random.default_rng(0)
    truth = {}
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        stack = []
        for i in range(3):
            img = (rng.random((2 * S, 2 * S)) * 255).astype(np.uint8)
            Image.fromarray(img).save(tmp_path / folder / f"slice{i}.png")
            stack.append(img.astype(np.float64) / 255)
        truth[folder] = np.stack(stack)
    slices = prepare(tmp_path, PrepParams(size=S), labels=None)
    assert slices.series == ["a", "b"] and slices.params.windows == image_windows(1)
    assert [w.name for w in slices.params.windows] == ["gray"]
    assert slices.x.shape == (6, 1, S, S) and slices.edges.shape == (6, 1, S, S)
    # identity window + area averaging of 2×2 blocks, up to the pseudo-HU quantisation
    expected = truth["a"].reshape(3, S, 2, S, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(slices.x[:3, 0], expected, atol=1.0 / IMAGE_HU_SCALE + 1e-6)


def test_train_drn_puts_the_cavity_on_the_datas_own_terms():
    """DICOM CT: the bone window at 300 HU; gray images: the gray channel near full scale (bone is
    saturated white in a brain window), unless --cavity-bone-hu says otherwise."""
    from isl_rt.bundle import DEFAULT_WINDOWS, image_windows
    from isl_rt.cli.train import _cavity_for
    from isl_rt.training.drn import DRNTrainConfig

    ct = _cavity_for(DRNTrainConfig(), DEFAULT_WINDOWS, None).cavity_spec()
    assert (ct.window, ct.bone_hu) == ("bone", 300.0)
    gray = _cavity_for(DRNTrainConfig(), image_windows(1), None).cavity_spec()
    assert (gray.window, gray.bone_hu) == ("gray", 3900.0)
    args = gray.resolve(image_windows(1))
    assert args.channel == 0 and abs(args.bone - 0.975) < 1e-9
    assert _cavity_for(DRNTrainConfig(), image_windows(1), 3800.0).cavity_spec().bone_hu == 3800.0


def test_site_augmented_training_alters_the_input_and_resumes_exactly(tmp_path, monkeypatch):
    data = synthetic_slices()
    config = _recon_only_config(augment=1.0)
    seen = []
    real_step = DeDNTrainer.step

    def recording_step(self, x, e, hole):
        seen.append(x.clone())
        return real_step(self, x, e, hole)

    monkeypatch.setattr(DeDNTrainer, "step", recording_step)
    straight = train_dedn(data, tmp_path / "a", config)
    originals = torch.from_numpy(data.x)
    slices = [x for batch in seen for x in batch]
    assert slices and not any(torch.equal(x, o) for x in slices for o in originals)  # every slice altered
    assert all(((x >= 0) & (x <= 1)).all() and torch.allclose(x * 255, torch.round(x * 255), atol=1e-3) for x in slices)
    monkeypatch.setattr(DeDNTrainer, "step", real_step)

    def stop_after_first_epoch(event):
        if event.kind == "epoch":
            raise _Interrupt

    with pytest.raises(_Interrupt):
        train_dedn(data, tmp_path / "b", config, progress=stop_after_first_epoch)
    resumed = train_dedn(data, tmp_path / "b", config, resume=True)
    assert resumed.history == straight.history
