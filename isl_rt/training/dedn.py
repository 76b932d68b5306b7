"""Training of the DeDN on healthy slices (EdgeConnect's adversarial inpainting recipe).

Each step erases one group of a random runtime partition per image
(:class:`~isl_rt.training.masks.MaskSampler`), builds the input in the runtime's fan-out order
(x·m, 1-m, edges of the whole image), updates the PatchGAN discriminator on real slices against
the raw output, then the generator on L1 (erased-region weighted) + adversarial + perceptual +
style (:mod:`isl_rt.training.losses`). Adam with EdgeConnect's settings: lr 1e-4, betas (0, 0.9),
discriminator lr 0.1× the generator's.

With the adversarial weight 0 no discriminator is trained, and with the perceptual and style
weights 0 no feature network: the reconstruction-only recipe (``--loss-weights 1,0,0,0``, usually
with Adam betas (0.9, 0.99), a larger learning rate and the one-cycle schedule), which on 2 CPU
cores reaches a lower hole L1 in a fraction of the steps (benchmarks/RESULTS.md).

Every epoch writes ``ckpt_dir/dedn_last.pt`` (everything needed to resume); an epoch whose
selection loss is the lowest so far also writes ``dedn_best.pt``. The selection loss is, with
``validation`` slices (healthy slices of held-out patients), their mean L1 on the erased cells
of the inference partition (every cell of the K×K grid, each inpainted from the rest: exactly
the error the runtime's dedisorder image makes there); without, the training generator loss
without its adversarial term. Training stops after ``max_epochs`` or when the selection loss has
not decreased for ``patience`` (5) epochs: the paper's rule, which uses no disorder data. Data order and masks of epoch e come from generators
seeded by (seed, e), so a resumed run continues exactly as an uninterrupted one would (on CPU).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from isl_rt.models.dedn import PRESETS, DeDN, build_dedn
from isl_rt.models.discriminator import PatchDiscriminator
from isl_rt.models.features import SelfSupervisedFeatures, freeze, load_vgg19
from isl_rt.training import losses as L
from isl_rt.training.common import (
    EarlyStopping,
    TrainingError,
    epoch_batches,
    check_device_name,
    epoch_rng,
    load_checkpoint,
    resolve_device,
    save_checkpoint,
    set_threads,
)
from isl_rt.training.data import PrepParams, SliceSet
from isl_rt.training.features import train_self_supervised_features
from isl_rt.training.masks import MaskSampler
from isl_rt.training.progress import ProgressCallback, ProgressEvent, emit

__all__ = [
    "CHECKPOINT_FORMAT",
    "DeDNTrainConfig",
    "DeDNTrainResult",
    "DeDNTrainer",
    "build_input",
    "dedn_prep_params",
    "load_dedn",
    "train_dedn",
]

CHECKPOINT_FORMAT = "isl-rt-dedn/1"
LAST, BEST = "dedn_last.pt", "dedn_best.pt"


@dataclass(frozen=True)
class DeDNTrainConfig:
    """Options of a DeDN training run (all recorded in the checkpoint and the bundle)."""

    preset: str = "tiny"
    max_epochs: int = 100
    patience: int = 5
    batch_size: int = 8
    #: optimisation steps per epoch; 0 = one pass over the slices
    steps_per_epoch: int = 0
    lr: float = 1e-4
    d_lr_ratio: float = 0.1
    beta1: float = 0.0
    beta2: float = 0.9
    weights: L.LossWeights = field(default_factory=L.LossWeights)
    k_min: int = 2
    k_max: int = 8
    p_cell: float = 0.5
    p_strided: float = 0.25
    seed: int = 0
    device: str = "cpu"
    threads: int = 0
    #: torchvision VGG-19 state dict for the perceptual/style features; "" = self-supervised fallback
    vgg19_weights: str = ""
    feature_steps: int = 300
    feature_batch: int = 16
    #: "constant" (EdgeConnect) or "onecycle" (warm-up then cosine decay over max_epochs·steps)
    lr_schedule: str = "constant"
    #: K of the inference grid whose cells the validation selection loss erases
    val_k: int = 4
    #: at most this many validation slices (evenly spaced) in the selection loss
    val_slices: int = 128
    #: share of each batch's slices altered the ways another site's export differs
    #: (:mod:`isl_rt.training.augment`); 0 = none
    augment: float = 0.0
    command: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeDNTrainConfig:
        values = dict(data)
        values["weights"] = L.LossWeights(**values["weights"])
        values.setdefault("augment", 0.0)  # checkpoints written before site augmentation
        return cls(**values)

    @property
    def adversarial(self) -> bool:
        """Whether a discriminator is trained (adversarial weight > 0)."""
        return self.weights.adversarial > 0

    @property
    def uses_features(self) -> bool:
        """Whether a feature network is needed (perceptual or style weight > 0)."""
        return self.weights.perceptual > 0 or self.weights.style > 0

    def validate(self) -> None:
        check_device_name(self.device)
        if self.preset not in PRESETS:
            raise TrainingError(f"--preset must be one of {', '.join(PRESETS)}, got {self.preset!r}.")
        for name in ("max_epochs", "batch_size", "patience"):
            if getattr(self, name) < 1:
                raise TrainingError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}.")
        if self.steps_per_epoch < 0 or self.feature_steps < 0:
            raise TrainingError("steps per epoch and feature steps must be 0 or more.")
        if self.weights.adversarial_kind not in ("nsgan", "hinge"):
            raise TrainingError(f"the adversarial loss must be nsgan or hinge, got {self.weights.adversarial_kind!r}.")
        if not 0.0 <= self.augment <= 1.0:
            raise TrainingError(f"--augment is the share of slices altered, between 0 and 1, got {self.augment}.")
        if self.lr_schedule not in ("constant", "onecycle"):
            raise TrainingError(f"the learning-rate schedule must be constant or onecycle, got {self.lr_schedule!r}.")
        if self.lr_schedule == "onecycle" and self.steps_per_epoch < 1:
            raise TrainingError("the onecycle schedule needs --steps-per-epoch (its length is max-epochs × steps-per-epoch).")
        if min(self.weights.l1, self.weights.adversarial, self.weights.perceptual, self.weights.style) < 0 or self.weights.l1 <= 0:
            raise TrainingError("loss weights must be 0 or more, with a positive L1 weight.")
        if not (0.0 <= self.beta1 < 1.0 and 0.0 <= self.beta2 < 1.0) or self.lr < 0:
            raise TrainingError(f"Adam needs 0 ≤ beta < 1 and a learning rate ≥ 0, got betas ({self.beta1}, {self.beta2}), lr {self.lr}.")
        if self.val_k < 2 or self.val_slices < 1:
            raise TrainingError("the validation grid needs K ≥ 2 and at least one slice.")


@dataclass(frozen=True)
class DeDNTrainResult:
    """How a run ended: epochs done, best epoch and loss, per-epoch history, checkpoint paths."""

    epochs: int
    best_epoch: int
    best_loss: float
    stopped_early: bool
    history: list[dict[str, float]]
    last_path: Path
    best_path: Path


def build_input(x: torch.Tensor, edges: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
    """concat(x·m, 1-m, edges) with m = 1 - hole: the runtime's fan-out order, in torch."""
    return torch.cat([x * (1.0 - hole), hole, edges.to(x.dtype)], dim=1)


class DeDNTrainer:
    """The DeDN, its discriminator, the frozen feature network and their optimisers."""

    def __init__(self, config: DeDNTrainConfig, channels: int, size: int, device: torch.device) -> None:
        config.validate()
        if size % 4 or size < 32:
            raise TrainingError(f"the DeDN needs an input size that is a multiple of 4 and at least 32, got {size}.")
        self.config = config
        self.device = device
        self.channels = channels
        self.size = size
        torch.manual_seed(config.seed)
        self.generator = build_dedn(config.preset, channels).to(device)
        c = config
        self.discriminator: PatchDiscriminator | None = None
        self.opt_d: torch.optim.Adam | None = None
        if c.adversarial:
            self.discriminator = PatchDiscriminator(channels, base=PRESETS[config.preset].base).to(device)
            self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=c.lr * c.d_lr_ratio, betas=(c.beta1, c.beta2))
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=c.lr, betas=(c.beta1, c.beta2))
        self.schedule: torch.optim.lr_scheduler.OneCycleLR | None = None
        if c.lr_schedule == "onecycle":
            self.schedule = torch.optim.lr_scheduler.OneCycleLR(
                self.opt_g, max_lr=c.lr, total_steps=c.max_epochs * c.steps_per_epoch, pct_start=0.05
            )
        self.features: torch.nn.Module | None = None
        self.feature_kind = ("vgg19" if c.vgg19_weights else "self-supervised") if c.uses_features else "none"
        self.feature_summary: dict[str, float] = {}
        self.masks = MaskSampler(size, k_min=c.k_min, k_max=min(c.k_max, size), p_cell=c.p_cell, p_strided=c.p_strided)

    # ---- features -------------------------------------------------------------------------------
    def prepare_features(self, x: np.ndarray, progress: ProgressCallback | None) -> None:
        c = self.config
        if not c.uses_features:
            return
        if c.vgg19_weights:
            self.features = load_vgg19(c.vgg19_weights).to(self.device)
            self.feature_summary = {}
        else:
            net, self.feature_summary = train_self_supervised_features(
                x, steps=c.feature_steps, batch_size=c.feature_batch, base=PRESETS[c.preset].base,
                seed=c.seed, device=self.device, progress=progress,
            )
            self.features = net

    def feature_state(self) -> dict[str, Any]:
        if self.feature_kind == "none":
            return {"kind": "none", "summary": {}}
        if self.feature_kind == "vgg19" or self.features is None:
            return {"kind": self.feature_kind, "path": self.config.vgg19_weights, "summary": self.feature_summary}
        assert isinstance(self.features, SelfSupervisedFeatures)
        return {
            "kind": self.feature_kind,
            "channels": self.features.channels,
            "base": self.features.base,
            "state": self.features.state_dict(),
            "summary": self.feature_summary,
        }

    def load_feature_state(self, state: dict[str, Any]) -> None:
        if state["kind"] == "none":
            self.features = None
        elif state["kind"] == "vgg19":
            self.features = load_vgg19(state["path"]).to(self.device)
        else:
            net = SelfSupervisedFeatures(channels=int(state["channels"]), base=int(state["base"]))
            net.load_state_dict(state["state"])
            self.features = freeze(net).to(self.device)
        self.feature_summary = dict(state.get("summary", {}))

    # ---- one step -------------------------------------------------------------------------------
    def step(self, x: torch.Tensor, edges: torch.Tensor, hole: torch.Tensor) -> dict[str, float]:
        """One discriminator update (when adversarial) and one generator update on a batch; returns the step's losses."""
        c = self.config
        w = c.weights
        assert self.features is not None or not c.uses_features, "prepare_features first"
        kind = w.adversarial_kind
        self.generator.train()
        out = self.generator(build_input(x, edges, hole))
        zero = out.new_zeros(())

        # discriminator: real slices against the raw output
        loss_d = zero
        if self.discriminator is not None and self.opt_d is not None:
            self.discriminator.train()
            loss_d = L.discriminator_loss(self.discriminator(x), self.discriminator(out.detach()), kind)
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_d.step()

        # generator
        l_adv = L.generator_adversarial_loss(self.discriminator(out), kind) if self.discriminator is not None else zero
        l1 = L.masked_l1(out, x, hole, w.l1_valid)
        l_perc = l_style = zero
        if self.features is not None:
            with torch.no_grad():
                f_x = self.features(x)
                f_xh = self.features(x * hole)
            l_perc = L.perceptual_loss(self.features(out), f_x)
            l_style = L.style_loss(self.features(out * hole), f_xh)
        recon = w.l1 * l1 + w.perceptual * l_perc + w.style * l_style
        loss_g = recon + w.adversarial * l_adv
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        if self.schedule is not None:
            self.schedule.step()
        return {
            "g": float(loss_g.detach()),
            "recon": float(recon.detach()),
            "l1": float(l1.detach()),
            "adv": float(l_adv.detach()),
            "perc": float(l_perc.detach()),
            "style": float(l_style.detach()),
            "d": float(loss_d.detach()),
        }

    # ---- state ----------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "generator": self.generator.state_dict(),
            "discriminator": None if self.discriminator is None else self.discriminator.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": None if self.opt_d is None else self.opt_d.state_dict(),
            "schedule": None if self.schedule is None else self.schedule.state_dict(),
            "features": self.feature_state(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.generator.load_state_dict(state["generator"])
        self.opt_g.load_state_dict(state["opt_g"])
        if self.discriminator is not None and self.opt_d is not None:
            self.discriminator.load_state_dict(state["discriminator"])
            self.opt_d.load_state_dict(state["opt_d"])
        if self.schedule is not None:
            self.schedule.load_state_dict(state["schedule"])
        self.load_feature_state(state["features"])

    @torch.no_grad()
    def validation_loss(self, x: np.ndarray, edges: np.ndarray) -> float:
        """Mean L1 over the erased cells of the K×K inference grid (``val_k``), every cell of
        every slice inpainted from the rest of its slice: the runtime's dedisorder error."""
        from isl_rt.kernels.partition import Partition
        from isl_rt.training.masks import hole_from_group_map

        k = self.config.val_k
        group_map = Partition.cells(k).group_map(self.size)
        holes = torch.from_numpy(np.stack([hole_from_group_map(group_map, g) for g in range(k * k)])[:, None])
        self.generator.eval()
        total, count = 0.0, 0
        for i in range(x.shape[0]):
            xi = torch.from_numpy(np.ascontiguousarray(x[i : i + 1], dtype=np.float32)).to(self.device)
            ei = torch.from_numpy(np.ascontiguousarray(edges[i : i + 1])).to(self.device)
            h = holes.to(self.device)
            out = self.generator(build_input(xi.expand(h.shape[0], -1, -1, -1), ei.expand(h.shape[0], -1, -1, -1), h))
            err = (out - xi).abs().mean(dim=1, keepdim=True)
            total += float((err * h).sum() / h.sum())
            count += 1
        return total / max(1, count)


def train_dedn(
    slices: SliceSet,
    ckpt_dir: Path,
    config: DeDNTrainConfig,
    *,
    resume: bool = False,
    progress: ProgressCallback | None = None,
    validation: SliceSet | None = None,
) -> DeDNTrainResult:
    """Train (or, with ``resume``, continue training) the DeDN on ``slices``; with ``validation``
    (healthy slices of held-out patients) select the epoch by their reconstruction error; see the
    module docstring."""
    ckpt_dir = Path(ckpt_dir)
    last_path, best_path = ckpt_dir / LAST, ckpt_dir / BEST
    set_threads(config.threads)
    device = resolve_device(config.device)
    size, channels = slices.params.size, slices.params.channels
    data_summary = slices.summary()

    start_epoch = 0
    history: list[dict[str, float]] = []
    stopper = EarlyStopping(config.patience)
    stopped = False
    if last_path.exists() and not resume:
        raise TrainingError(f"{last_path} exists: pass --resume to continue that run, or choose another --ckpt folder.")
    trainer = DeDNTrainer(config, channels, size, device)
    if resume and last_path.exists():
        state = load_checkpoint(last_path)
        _check_compatible(state, config, slices, last_path)
        trainer.load_state(state["trainer"])
        start_epoch = int(state["epoch"])
        history = list(state["history"])
        stopper = EarlyStopping.from_state(state["stopper"])
        stopped = bool(state["stopped"])
    else:
        trainer.prepare_features(slices.x, progress)

    x_all, e_all = slices.x, slices.edges
    val_x = val_e = None
    if validation is not None:
        if validation.params != slices.params:
            raise TrainingError("the validation slices were prepared differently from the training slices (size, windows or Canny).")
        pick = np.unique(np.linspace(0, len(validation) - 1, min(config.val_slices, len(validation))).round().astype(int))
        val_x, val_e = np.asarray(validation.x[pick]), np.asarray(validation.edges[pick])
    epoch = start_epoch
    while not stopped and epoch < config.max_epochs:
        batch_list = epoch_batches(len(slices), config.batch_size, config.steps_per_epoch, config.seed, epoch, 0)
        mask_rng = epoch_rng(config.seed, epoch, 1)
        augment_rng = epoch_rng(config.seed, epoch, 2)
        emit(progress, ProgressEvent("dedn", "start", epoch + 1, config.max_epochs, 0, len(batch_list)))
        sums: dict[str, float] = {}
        for step, idx in enumerate(batch_list, start=1):
            xb, eb = np.ascontiguousarray(x_all[idx]), np.ascontiguousarray(e_all[idx])
            if config.augment > 0:
                xb, eb = _augmented(xb, eb, config.augment, augment_rng, slices.params)
            x = torch.from_numpy(xb).to(device)
            e = torch.from_numpy(eb).to(device)
            hole = torch.from_numpy(trainer.masks.sample(idx.size, mask_rng)).to(device)
            step_losses = trainer.step(x, e, hole)
            for key, value in step_losses.items():
                sums[key] = sums.get(key, 0.0) + value
            emit(progress, ProgressEvent("dedn", "step", epoch + 1, config.max_epochs, step, len(batch_list), step_losses))
        epoch_losses = {key: value / len(batch_list) for key, value in sums.items()}
        if val_x is not None and val_e is not None:
            epoch_losses["val_l1"] = trainer.validation_loss(val_x, val_e)
        epoch += 1
        improved = stopper.update(epoch_losses["val_l1" if val_x is not None else "recon"], epoch)
        stopped = stopper.should_stop
        history.append({"epoch": float(epoch), **epoch_losses})
        state = {
            "format": CHECKPOINT_FORMAT,
            "config": config.to_dict(),
            "data": data_summary,
            "channels": channels,
            "size": size,
            "epoch": epoch,
            "history": history,
            "stopper": stopper.state(),
            "stopped": stopped,
            "selection": "validation L1 on the inference grid" if val_x is not None else "training reconstruction loss",
            "validation": None if validation is None else validation.summary(),
            "trainer": trainer.state(),
        }
        save_checkpoint(last_path, state)
        if improved:
            save_checkpoint(best_path, state)
        note = "best" if improved else ""
        if stopped:
            note = f"stopped: no decrease for {config.patience} epochs"
        emit(progress, ProgressEvent("dedn", "epoch", epoch, config.max_epochs, len(batch_list), len(batch_list), epoch_losses, note))

    return DeDNTrainResult(
        epochs=epoch,
        best_epoch=stopper.best_epoch,
        best_loss=stopper.best,
        stopped_early=stopped,
        history=history,
        last_path=last_path,
        best_path=best_path,
    )


def _augmented(x: np.ndarray, edges: np.ndarray, share: float, rng: np.random.Generator,
                params: PrepParams) -> tuple[np.ndarray, np.ndarray]:
    """(x, edges) of a batch with a ``share`` of its slices altered by site transforms
    (:class:`~isl_rt.training.augment.SiteAugment`), their Canny edges recomputed as the data's were."""
    from isl_rt import kernels
    from isl_rt.training.augment import SiteAugment

    out, altered = SiteAugment(share)(x, rng)
    if altered.any():
        c = params.canny
        edges = edges.copy()
        edges[altered] = kernels.canny(np.ascontiguousarray(out[altered]), c.low, c.high, sigma=c.sigma)
    return out, edges


def _check_compatible(state: dict[str, Any], config: DeDNTrainConfig, slices: SliceSet, path: Path) -> None:
    if state.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(f"{path} is not a DeDN checkpoint of this isl-rt ({state.get('format')!r}).")
    saved = DeDNTrainConfig.from_dict(state["config"])
    names = ["preset", "seed", "batch_size", "steps_per_epoch", "k_min", "k_max", "vgg19_weights", "weights", "lr_schedule"]
    if config.lr_schedule == "onecycle":
        names.append("max_epochs")  # the schedule's length
    for name in names:
        if getattr(saved, name) != getattr(config, name):
            raise TrainingError(
                f"{path} was trained with {name.replace('_', '-')}={getattr(saved, name)!r}, not {getattr(config, name)!r}: "
                "resume with the same options, or train into another --ckpt folder."
            )
    data = state["data"]
    now = slices.summary()
    for name in ("size", "windows", "canny", "slices"):
        if data.get(name) != now.get(name):
            raise TrainingError(f"{path} was trained on other data ({name} differs): resume with the same data, or train into another --ckpt folder.")


def load_dedn(path: Path, device: torch.device = torch.device("cpu")) -> tuple[DeDN, dict[str, Any]]:
    """The generator of a DeDN checkpoint (eval mode) and the checkpoint's metadata."""
    state = load_checkpoint(path)
    if state.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(f"{path} is not a DeDN checkpoint of this isl-rt ({state.get('format')!r}).")
    config = DeDNTrainConfig.from_dict(state["config"])
    model = build_dedn(config.preset, int(state["channels"]))
    model.load_state_dict(state["trainer"]["generator"])
    model.to(device).eval()
    meta = {key: value for key, value in state.items() if key != "trainer"}
    meta["feature_network"] = state["trainer"]["features"]["kind"]
    meta["feature_summary"] = state["trainer"]["features"].get("summary", {})
    return model, meta


def dedn_prep_params(ckpt_dir: Path) -> PrepParams:
    """How the DeDN in ``ckpt_dir`` saw its slices (size, windows, Canny): the DRN must see the same."""
    path = Path(ckpt_dir) / BEST
    state = load_checkpoint(path)
    if state.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(f"{path} is not a DeDN checkpoint of this isl-rt ({state.get('format')!r}).")
    return PrepParams.from_dict(state["data"])
