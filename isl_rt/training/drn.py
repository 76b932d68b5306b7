"""Training of the DRN on difference images of healthy slices.

1. Difference images (:func:`difference_images`): the trained DeDN inpaints every group of the
   inference partition (``Partition.cells(k)`` by default) with the runtime's kernels,
   ``x_dif = |x - Σ_g x̂_g·(1-m_g)|`` via ``isl_rt.kernels.fanout`` / ``compose_diff``, so the DRN
   trains on exactly what the runtime feeds it. Cached in ``ckpt_dir/differences/`` and keyed by
   the sha256 of the DeDN checkpoint and the partition, together with the dedisorder images
   x_dd that synthetic lesions are compared with.
2. MoCo pretraining (v2 flavour): query encoder = DRN + MLP projection head, momentum key
   encoder (m = 0.99), a queue of normalised keys, InfoNCE at temperature 0.2. The queue holds
   ``queue_size`` keys but at most N - batch (N difference images), so that within an epoch it
   never holds keys of the images being contrasted (false negatives on small data sets).
   Views: a random dihedral transform (rot90 × flip), random resized crop (area 0.5-1), intensity
   scaling ×[0.7, 1.4] and faint Gaussian noise.
3. Centre: c = mean DRN embedding of all healthy difference images, computed once after
   pretraining and then fixed; coordinates with |c_i| < ``centre_eps`` are set to ±centre_eps
   (Deep SVDD's guard against a collapsed solution).
4. Fine-tuning with λc·L_com + λd·L_dis:
   L_com = ½(mean ||h(x) - c||² + mean ||h(x⁻) - c||²), x⁻ a rotated/flipped view (one of the 7
   non-identity dihedral transforms);
   L_dis pushes h(x⁺) away from c, x⁺ a synthetic-disorder view. ``disorder="lesion"``
   (default): 1-3 lesions of shifted tissue density pasted into the *slice* inside the scored
   region and compared with the slice's dedisorder image, x⁺ = |x_lesion - x_dd|
   (:func:`synthetic_lesion`), so a synthetic disorder shows in each window as a real one
   would (strongly in the brain window, faintly in the bone window) and carries the slice's own
   noise. ``disorder="blob"`` (the first recipe): 1-3 elliptical blobs of difference intensity
   (0.1-0.6, independent random per-channel weights) pasted into the difference image, plus a
   rectangle "cutout" of such intensity with probability 0.3. ``dis_loss="inverse"`` (default,
   Deep SAD's form): mean 1 / (||h(x⁺) - c||² + 1e-6); ``"hinge"``: mean max(0, margin - ||h(x⁺) - c||)².
   Model selection as for the DeDN: stop when the fine-tuning loss has not decreased for
   ``patience`` epochs; ``drn_best.pt`` holds the best epoch's encoder and the centre.

With ``cavity`` (default) every difference image is zeroed outside the cranial cavity
(``isl_rt.kernels.cavity``, the same mask the runtime applies, recorded in the bundle) before any
of this, and synthetic disorders are pasted inside it.

The slice score is ||h - c||₂; the bundle stores c. Every random draw of epoch e comes from
generators seeded by (seed, phase, e): a resumed run continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.nn import functional as F

from isl_rt.bundle import DEFAULT_CAVITY, BundleError, CavitySpec, sha256_file
from isl_rt.models.dedn import DeDN
from isl_rt.models.drn import DRN, DRN_PRESETS, ProjectionHead, build_drn
from isl_rt.training.common import (
    EarlyStopping,
    TrainingError,
    epoch_batches,
    check_device_name,
    load_checkpoint,
    resolve_device,
    save_checkpoint,
    set_threads,
    torch_generator,
)
from isl_rt.training.data import SliceSet
from isl_rt.training.dedn import load_dedn
from isl_rt.training.progress import ProgressCallback, ProgressEvent, emit

if TYPE_CHECKING:  # pragma: no cover - typing only
    from isl_rt.kernels.partition import Partition

__all__ = [
    "CHECKPOINT_FORMAT",
    "DRNTrainConfig",
    "DRNTrainResult",
    "DRNTrainer",
    "difference_images",
    "dihedral_view",
    "lesion_differences",
    "load_drn",
    "moco_view",
    "synthetic_disorder",
    "synthetic_lesion",
    "train_drn",
]

CHECKPOINT_FORMAT = "isl-rt-drn/1"
LAST, BEST = "drn_last.pt", "drn_best.pt"
_PHASE_MOCO, _PHASE_FINETUNE = 2, 3  # generator streams


@dataclass(frozen=True)
class DRNTrainConfig:
    """Options of a DRN training run (recorded in the checkpoint and the bundle)."""

    preset: str = "tiny"
    embedding_dim: int = 128
    #: inference partition: Partition.cells(k), or Partition.strided(k, stride) when stride ≥ 2
    k: int = 4
    stride: int = 0
    pretrain_epochs: int = 20
    max_epochs: int = 50
    patience: int = 5
    batch_size: int = 32
    #: optimisation steps per epoch; 0 = one pass over the slices
    steps_per_epoch: int = 0
    moco_lr: float = 3e-4
    finetune_lr: float = 1e-4
    weight_decay: float = 1e-4
    queue_size: int = 1024
    temperature: float = 0.2
    momentum: float = 0.99
    projection_dim: int = 128
    lambda_com: float = 1.0
    lambda_dis: float = 1.0
    dis_loss: str = "inverse"
    #: the synthetic disorder x⁺: "lesion", tissue of shifted density pasted into the slice and
    #: compared with the dedisorder image (:func:`synthetic_lesion`), or "blob", difference
    #: intensity pasted into the difference image itself (:func:`synthetic_disorder`)
    disorder: str = "lesion"
    margin: float = 1.0
    centre_eps: float = 0.1
    #: images per DeDN call when computing difference images
    dedn_batch: int = 32
    #: what the DRN learns from: "difference" (ISL) or "slice", the windowed slice itself (the
    #: paper's "original image" ablation; such a DRN cannot be exported into a bundle)
    input: str = "difference"
    #: score inside the skull only: bone = window ``cavity_window`` >= ``cavity_bone_hu`` HU
    cavity: bool = True
    cavity_window: str = DEFAULT_CAVITY.window
    cavity_bone_hu: float = DEFAULT_CAVITY.bone_hu
    cavity_margin: int = DEFAULT_CAVITY.margin
    #: bone reached in at least this many of the four directions (4: enclosed on all sides)
    cavity_sides: int = DEFAULT_CAVITY.sides
    #: keep only the component with the most fully enclosed pixels per slice
    cavity_largest: bool = DEFAULT_CAVITY.largest
    seed: int = 0
    device: str = "cpu"
    threads: int = 0
    command: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DRNTrainConfig:
        # checkpoints from before the cavity scored whole slices, and before lesions were pasted into slices
        return cls(**{"cavity": False, "disorder": "blob", **data})

    def cavity_spec(self) -> CavitySpec | None:
        """The bundle's form of the cavity this DRN was trained with (None: whole slices)."""
        if not self.cavity:
            return None
        return CavitySpec(self.cavity_window, self.cavity_bone_hu, self.cavity_margin, self.cavity_sides,
                          self.cavity_largest)

    def partition(self) -> Partition:
        from isl_rt.kernels.partition import Partition

        return Partition.strided(self.k, self.stride) if self.stride >= 2 else Partition.cells(self.k)

    def validate(self) -> None:
        check_device_name(self.device)
        if self.preset not in DRN_PRESETS:
            raise TrainingError(f"--preset must be one of {', '.join(DRN_PRESETS)}, got {self.preset!r}.")
        for name in ("embedding_dim", "k", "max_epochs", "patience", "batch_size", "queue_size", "dedn_batch"):
            if getattr(self, name) < 1:
                raise TrainingError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}.")
        if self.pretrain_epochs < 0 or self.steps_per_epoch < 0:
            raise TrainingError("pretrain epochs and steps per epoch must be 0 or more.")
        if self.stride == 1 or self.stride > self.k:
            raise TrainingError(f"--stride must be 0 (one cell per pass) or 2..k={self.k}, got {self.stride}.")
        if self.input not in ("difference", "slice"):
            raise TrainingError(f"the DRN input must be difference or slice, got {self.input!r}.")
        if self.cavity_margin < 0:
            raise TrainingError(f"--cavity-margin must be 0 or more pixels, got {self.cavity_margin}.")
        if not 1 <= self.cavity_sides <= 4:
            raise TrainingError(f"--cavity-sides must be 1, 2, 3 or 4, got {self.cavity_sides}.")
        if self.disorder not in ("lesion", "blob"):
            raise TrainingError(f"the synthetic disorder must be lesion or blob, got {self.disorder!r}.")
        if self.dis_loss not in ("inverse", "hinge"):
            raise TrainingError(f"the disorder loss must be inverse or hinge, got {self.dis_loss!r}.")
        if not 0.0 <= self.momentum < 1.0 or self.temperature <= 0:
            raise TrainingError("MoCo needs 0 ≤ momentum < 1 and a positive temperature.")


@dataclass(frozen=True)
class DRNTrainResult:
    """How a run ended: epochs of each phase, best fine-tuning epoch and loss, the centre."""

    pretrain_epochs: int
    finetune_epochs: int
    best_epoch: int
    best_loss: float
    stopped_early: bool
    centre: list[float]
    history: list[dict[str, float]]
    last_path: Path
    best_path: Path


# ---- difference images ----------------------------------------------------------------------------
def difference_images(
    dedn: DeDN,
    x: np.ndarray,
    edges: np.ndarray,
    partition: Partition,
    *,
    device: torch.device = torch.device("cpu"),
    batch_images: int = 32,
    progress: ProgressCallback | None = None,
    out_dd: np.ndarray | None = None,
) -> np.ndarray:
    """x_dif float32 [N,C,S,S] of slices x [N,C,S,S] / edges, through the runtime's kernels;
    the dedisorder images x_dd go to ``out_dd`` when one is given."""
    from isl_rt import kernels

    n, _, size, _ = x.shape
    group_map = partition.group_map(size)
    groups = partition.groups
    per_call = max(1, batch_images // groups)
    out = np.empty(x.shape, dtype=np.float32)
    dedn.eval()
    calls = math.ceil(n / per_call)
    emit(progress, ProgressEvent("differences", "start", 1, 1, 0, calls))
    for call, start in enumerate(range(0, n, per_call), start=1):
        stop = min(n, start + per_call)
        xs = np.ascontiguousarray(x[start:stop], dtype=np.float32)
        es = np.ascontiguousarray(edges[start:stop])
        fan = kernels.fanout(xs, es, group_map, groups)
        with torch.no_grad():
            xhat = dedn(torch.from_numpy(np.ascontiguousarray(fan)).to(device)).cpu().numpy()
        dd, dif = kernels.compose_diff(xs, np.ascontiguousarray(xhat, dtype=np.float32), group_map, groups)
        out[start:stop] = dif
        if out_dd is not None:
            out_dd[start:stop] = dd
        emit(progress, ProgressEvent("differences", "step", 1, 1, call, calls))
    return out


def _cached_differences(
    ckpt_dir: Path, slices: SliceSet, config: DRNTrainConfig, device: torch.device, progress: ProgressCallback | None
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(x_dif, x_dd, cache key) of the training slices, memory-mapped from ``ckpt_dir/differences``."""
    dedn_path = ckpt_dir / "dedn_best.pt"
    if not dedn_path.is_file():
        raise TrainingError(f"{dedn_path} does not exist: train the DeDN first (isl-rt train dedn ... --ckpt {ckpt_dir}).")
    dedn_sha = sha256_file(dedn_path)
    key = {
        "dedn_sha256": dedn_sha,
        "partition": config.partition().to_dict(),
        "slices": {k: v for k, v in slices.summary().items() if k != "excluded"},
    }
    folder = ckpt_dir / "differences"
    meta_path = folder / "differences.json"
    files = {"dif": folder / "dif.npy", "dd": folder / "dd.npy"}
    if meta_path.is_file() and all(path.is_file() for path in files.values()):
        try:
            if json.loads(meta_path.read_text()).get("key") == key:
                return np.load(files["dif"], mmap_mode="r"), np.load(files["dd"], mmap_mode="r"), key
        except (json.JSONDecodeError, OSError, ValueError):
            pass
    dedn, dedn_meta = load_dedn(dedn_path, device)
    if dedn.channels != slices.params.channels or int(dedn_meta["size"]) != slices.params.size:
        raise TrainingError(
            f"{dedn_path} was trained on {dedn.channels}-channel {dedn_meta['size']}-pixel slices, but the data gives "
            f"{slices.params.channels}-channel {slices.params.size}-pixel slices: train the DRN on the DeDN's data."
        )
    dd = np.empty(slices.x.shape, dtype=np.float32)
    dif = difference_images(
        dedn, slices.x, slices.edges, config.partition(), device=device, batch_images=config.dedn_batch, progress=progress, out_dd=dd
    )
    folder.mkdir(parents=True, exist_ok=True)
    meta_path.unlink(missing_ok=True)
    for name, array in (("dif", dif), ("dd", dd)):
        with open(folder / f"{name}.npy.tmp", "wb") as handle:
            np.save(handle, array, allow_pickle=False)
        (folder / f"{name}.npy.tmp").replace(files[name])
    from isl_rt.outputs import write_json_atomic

    write_json_atomic(meta_path, {"key": key})
    return np.load(files["dif"], mmap_mode="r"), np.load(files["dd"], mmap_mode="r"), key


# ---- views ----------------------------------------------------------------------------------------
def _dihedral(image: torch.Tensor, t: int) -> torch.Tensor:
    """Transform t in 0..7 of the dihedral group on a [C,S,S] image: rot90 (t mod 4), then flip (t ≥ 4)."""
    out = torch.rot90(image, t % 4, dims=(1, 2))
    return out.flip(2) if t >= 4 else out


def dihedral_view(batch: torch.Tensor, gen: torch.Generator, *, identity: bool = False) -> torch.Tensor:
    """Each image rotated by a multiple of 90° and/or flipped; without ``identity`` never unchanged (x⁻)."""
    low = 0 if identity else 1
    ts = torch.randint(low, 8, (batch.shape[0],), generator=gen).tolist()
    return torch.stack([_dihedral(img, t) for img, t in zip(batch, ts)])


def moco_view(batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A MoCo view: dihedral transform, random resized crop (area 0.5-1, aspect 3/4-4/3), intensity ×[0.7,1.4], noise."""
    b = batch.shape[0]
    x = dihedral_view(batch, gen, identity=True)
    area = 0.5 + 0.5 * torch.rand(b, generator=gen)
    log_ratio = (torch.rand(b, generator=gen) * 2 - 1) * math.log(4 / 3)
    ratio = torch.exp(log_ratio)
    sx = torch.sqrt(area * ratio).clamp(max=1.0)
    sy = torch.sqrt(area / ratio).clamp(max=1.0)
    tx = (torch.rand(b, generator=gen) * 2 - 1) * (1 - sx)
    ty = (torch.rand(b, generator=gen) * 2 - 1) * (1 - sy)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx, tx, sy, ty
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    scale = (0.7 + 0.7 * torch.rand(b, 1, 1, 1, generator=gen)).to(x.device, x.dtype)
    sigma = (0.005 * torch.rand(b, 1, 1, 1, generator=gen)).to(x.device, x.dtype)
    noise = torch.randn(x.shape, generator=gen).to(x.device, x.dtype)
    return (x * scale + sigma * noise).clamp(0.0, 1.0)


def _random_ellipse(
    where: torch.Tensor, grid: tuple[torch.Tensor, torch.Tensor], radius: tuple[float, float], gen: torch.Generator
) -> torch.Tensor:
    """r² [S,S] of an ellipse (r² < 1 inside) centred on a random pixel of ``where`` (bool [S,S];
    anywhere when it has none), radii (radius[0] + radius[1]·U)·S of at least 1.5 px, random angle."""
    yy, xx = grid
    s = yy.shape[0]
    inside = torch.nonzero(where)
    if inside.shape[0]:
        cy, cx = inside[int(torch.randint(0, inside.shape[0], (1,), generator=gen))].float().tolist()
    else:
        cy, cx = (torch.rand(2, generator=gen) * s).tolist()
    ry, rx = ((radius[0] + radius[1] * torch.rand(2, generator=gen)) * s).clamp(min=1.5).tolist()
    angle = float(torch.rand(1, generator=gen)) * math.pi
    dy, dx = yy - cy, xx - cx
    u = (dx * math.cos(angle) + dy * math.sin(angle)) / rx
    v = (-dx * math.sin(angle) + dy * math.cos(angle)) / ry
    return u * u + v * v


def synthetic_lesion(
    x: torch.Tensor, region: torch.Tensor, windows: torch.Tensor, gen: torch.Generator, *, p_border: float = 0.3, p_large: float = 0.2
) -> torch.Tensor:
    """x⁺ in the image domain: slices [B,C,S,S] with 1-3 lesions whose tissue is shifted in density.

    Each lesion is an ellipse (radii 2-15% of S, soft edge) inside ``region`` (bool [B,S,S]; with
    probability ``p_border`` centred within 3 pixels of its border, where extra-axial collections
    lie). Its intensity shift δ is drawn in units of the narrowest window width W: ±0.15-1 W (for
    CT with a 40/80 brain window: 12-80 HU, the range of infarcts, oedema, cysts and fresh blood)
    or, with probability ``p_large``, ±2-10 W (air, calcification). The density of every pixel is
    read back from the narrowest window that does not clip it, shifted by α·δ (α the edge
    profile), and windowed again into every channel, so a lesion shows in each window as it
    would on the scan: strongly in the brain window, faintly in the bone window. ``windows`` is
    float [C,2] (level, width). Values stay in [0,1]; the pixels' own noise is kept."""
    b, c, s, _ = x.shape
    level, width = windows[:, 0].view(1, c, 1, 1).to(x), windows[:, 1].view(1, c, 1, 1).to(x)
    low = level - width / 2
    # density per pixel from the narrowest unclipped window (the widest one where all clip)
    order = torch.argsort(windows[:, 1]).tolist()
    readings = low + x * width  # each channel's density where it does not clip
    density = readings[:, order[-1]]
    for ch in reversed(order[:-1]):
        inside = (x[:, ch] > 0.002) & (x[:, ch] < 0.998)
        density = torch.where(inside, readings[:, ch], density)
    w_min = float(windows[:, 1].min())
    reg = region.to(torch.bool).cpu()
    eroded = -F.max_pool2d(-reg.float().unsqueeze(1), 7, stride=1, padding=3).squeeze(1)
    border = reg & (eroded < 0.5)
    yy, xx = torch.meshgrid(torch.arange(s, dtype=torch.float32), torch.arange(s, dtype=torch.float32), indexing="ij")
    shift = torch.zeros(b, s, s)
    for i in range(b):
        for _ in range(int(torch.randint(1, 4, (1,), generator=gen))):
            where = border[i] if float(torch.rand(1, generator=gen)) < p_border and bool(border[i].any()) else reg[i]
            r2 = _random_ellipse(where, (yy, xx), (0.02, 0.13), gen)
            alpha = ((1.2 - torch.sqrt(r2)) / 0.5).clamp(0.0, 1.0) * reg[i]
            large = float(torch.rand(1, generator=gen)) < p_large
            magnitude = (2.0 + 8.0 * float(torch.rand(1, generator=gen))) if large else (0.15 + 0.85 * float(torch.rand(1, generator=gen)))
            sign = 1.0 if float(torch.rand(1, generator=gen)) < 0.5 else -1.0
            shift[i] = torch.where(alpha > 0, alpha * sign * magnitude * w_min, shift[i])
    before = ((density.unsqueeze(1) - low) / width).clamp(0.0, 1.0)
    after = ((density + shift.to(x)).unsqueeze(1) - low) / width
    # only the lesions change: pixels without a shift keep their values exactly
    lesioned = (x + after.clamp(0.0, 1.0) - before).clamp(0.0, 1.0)
    return torch.where((shift != 0).unsqueeze(1).to(x.device), lesioned, x)


def lesion_differences(
    dif: torch.Tensor, x: np.ndarray, dd: np.ndarray | None, region: torch.Tensor, windows: torch.Tensor, gen: torch.Generator
) -> torch.Tensor:
    """x⁺ as the DRN sees it: the difference images ``dif`` [B,C,S,S] (already zero outside the
    scored region) of slices ``x`` whose dedisorder images are ``dd`` (None: the DRN sees the
    slices, compared with 0), after :func:`synthetic_lesion` pasted lesions into the slices inside
    ``region``. Only lesion pixels change: dif + (|x⁺ - x_dd| - |x - x_dd|) inside the region."""
    xs = torch.from_numpy(np.ascontiguousarray(x))
    ref = torch.zeros_like(xs) if dd is None else torch.from_numpy(np.ascontiguousarray(dd))
    x_plus = synthetic_lesion(xs, region, windows, gen)
    change = ((x_plus - ref).abs() - (xs - ref).abs()) * region.unsqueeze(1).to(xs.dtype)
    return (dif + change.to(dif.device, dif.dtype)).clamp(0.0, 1.0)


def synthetic_disorder(batch: torch.Tensor, foreground: torch.Tensor, gen: torch.Generator, *, p_cutout: float = 0.3) -> torch.Tensor:
    """x⁺: difference images with 1-3 elliptical blobs of difference intensity pasted inside the
    head (``foreground`` bool [B,S,S]; anywhere when a slice has none), plus with probability
    ``p_cutout`` a rectangle of such intensity. Values stay in [0,1]."""
    b, c, s, _ = batch.shape
    yy, xx = torch.meshgrid(torch.arange(s, dtype=torch.float32), torch.arange(s, dtype=torch.float32), indexing="ij")
    add = torch.zeros(b, c, s, s)
    fg = foreground.cpu()
    for i in range(b):
        for _ in range(int(torch.randint(1, 4, (1,), generator=gen))):
            r2 = _random_ellipse(fg[i], (yy, xx), (0.03, 0.12), gen)
            profile = torch.where(r2 < 2.25, torch.exp(-2.0 * r2), torch.zeros(()))
            amplitude = (0.1 + 0.5 * torch.rand(1, generator=gen)) * (0.2 + 0.8 * torch.rand(c, generator=gen))
            add[i] = torch.maximum(add[i], amplitude.view(c, 1, 1) * profile)
        if float(torch.rand(1, generator=gen)) < p_cutout:
            h, w = ((0.05 + 0.2 * torch.rand(2, generator=gen)) * s).clamp(min=1).long().tolist()
            y0 = int(torch.randint(0, max(1, s - h), (1,), generator=gen))
            x0 = int(torch.randint(0, max(1, s - w), (1,), generator=gen))
            amplitude = (0.1 + 0.5 * torch.rand(1, generator=gen)) * (0.2 + 0.8 * torch.rand(c, generator=gen))
            patch = add[i, :, y0 : y0 + h, x0 : x0 + w]
            add[i, :, y0 : y0 + h, x0 : x0 + w] = torch.maximum(patch, amplitude.view(c, 1, 1).expand_as(patch))
    return (batch + add.to(batch.device, batch.dtype)).clamp(0.0, 1.0)


# ---- the trainer ----------------------------------------------------------------------------------
class DRNTrainer:
    """Query/key encoders, projection heads, the MoCo queue, the centre and the optimisers."""

    def __init__(self, config: DRNTrainConfig, channels: int, device: torch.device, *, queue_size: int = 0) -> None:
        """``queue_size`` > 0 overrides the configured MoCo queue length (see :func:`train_drn`)."""
        config.validate()
        self.config = config
        self.device = device
        torch.manual_seed(config.seed)
        self.encoder: DRN = build_drn(config.preset, channels, config.embedding_dim).to(device)
        self.head = ProjectionHead(config.embedding_dim, config.projection_dim).to(device)
        self.encoder_k = copy.deepcopy(self.encoder)
        self.head_k = copy.deepcopy(self.head)
        for p in (*self.encoder_k.parameters(), *self.head_k.parameters()):
            p.requires_grad_(False)
        gen = torch_generator(config.seed, 0, 9)
        self.queue_size = queue_size or config.queue_size
        self.queue = F.normalize(torch.randn(self.queue_size, config.projection_dim, generator=gen), dim=1).to(device)
        self.queue_ptr = 0
        self.opt_moco = torch.optim.Adam(
            [*self.encoder.parameters(), *self.head.parameters()], lr=config.moco_lr, weight_decay=config.weight_decay
        )
        self.opt_finetune = torch.optim.Adam(self.encoder.parameters(), lr=config.finetune_lr, weight_decay=1e-6)
        self.centre: torch.Tensor | None = None

    # ---- MoCo -----------------------------------------------------------------------------------
    def moco_loss(self, x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """InfoNCE of two views of ``x`` against the queue: (loss, logits, keys). No state changes."""
        v1, v2 = moco_view(x, gen), moco_view(x, gen)
        q = F.normalize(self.head(self.encoder(v1)), dim=1)
        with torch.no_grad():
            k = F.normalize(self.head_k(self.encoder_k(v2)), dim=1)
        logits = torch.cat([(q * k).sum(dim=1, keepdim=True), q @ self.queue.t()], dim=1) / self.config.temperature
        target = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        return F.cross_entropy(logits, target), logits, k

    def moco_step(self, x: torch.Tensor, gen: torch.Generator) -> dict[str, float]:
        """Momentum update of the key encoder, one InfoNCE step of the query encoder, enqueue the keys."""
        m = self.config.momentum
        self.encoder.train()
        self.head.train()
        with torch.no_grad():
            for p_k, p_q in zip(
                (*self.encoder_k.parameters(), *self.head_k.parameters()), (*self.encoder.parameters(), *self.head.parameters())
            ):
                p_k.mul_(m).add_(p_q.detach(), alpha=1.0 - m)
        loss, logits, k = self.moco_loss(x, gen)
        self.opt_moco.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_moco.step()
        with torch.no_grad():
            n = k.shape[0]
            idx = (torch.arange(n, device=k.device) + self.queue_ptr) % self.queue.shape[0]
            self.queue[idx] = k
            self.queue_ptr = int((self.queue_ptr + n) % self.queue.shape[0])
        accuracy = float((logits.detach().argmax(dim=1) == 0).float().mean())
        return {"infonce": float(loss.detach()), "top1": accuracy}

    # ---- centre ---------------------------------------------------------------------------------
    @torch.no_grad()
    def embed(self, dif: np.ndarray, batch_size: int = 64) -> torch.Tensor:
        """Embeddings [N,D] of difference images (no augmentation)."""
        self.encoder.eval()
        parts = [
            self.encoder(torch.from_numpy(np.array(dif[i : i + batch_size], dtype=np.float32)).to(self.device)).cpu()
            for i in range(0, dif.shape[0], batch_size)
        ]
        return torch.cat(parts)

    def compute_centre(self, dif: np.ndarray) -> torch.Tensor:
        centre = self.embed(dif).double().mean(dim=0).float()
        eps = self.config.centre_eps
        small = centre.abs() < eps
        centre[small & (centre < 0)] = -eps
        centre[small & (centre >= 0)] = eps
        self.centre = centre.to(self.device)
        return self.centre

    # ---- fine-tuning ----------------------------------------------------------------------------
    def finetune_losses(
        self, x: torch.Tensor, foreground: torch.Tensor, gen: torch.Generator, x_plus: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Losses of a batch of difference images; x⁺ is ``x_plus`` when given (see
        :func:`lesion_differences`), else difference-domain blobs inside ``foreground``."""
        assert self.centre is not None, "compute_centre first"
        c = self.config
        x_minus = dihedral_view(x, gen)
        if x_plus is None:
            x_plus = synthetic_disorder(x, foreground, gen)
        h = self.encoder(torch.cat([x, x_minus, x_plus]))
        d2 = ((h - self.centre) ** 2).sum(dim=1)
        d_x, d_minus, d_plus = d2.split(x.shape[0])
        l_com = 0.5 * (d_x.mean() + d_minus.mean())
        if c.dis_loss == "inverse":
            l_dis = (1.0 / (d_plus + 1e-6)).mean()
        else:
            l_dis = F.relu(c.margin - torch.sqrt(d_plus + 1e-12)).pow(2).mean()
        total = c.lambda_com * l_com + c.lambda_dis * l_dis
        ratio = torch.sqrt(d_plus + 1e-12).mean() / torch.sqrt(d_x + 1e-12).mean().clamp_min(1e-12)
        return {"loss": total, "com": l_com, "dis": l_dis, "separation": ratio}

    def finetune_step(
        self, x: torch.Tensor, foreground: torch.Tensor, gen: torch.Generator, x_plus: torch.Tensor | None = None
    ) -> dict[str, float]:
        self.encoder.train()
        out = self.finetune_losses(x, foreground, gen, x_plus)
        self.opt_finetune.zero_grad(set_to_none=True)
        out["loss"].backward()
        self.opt_finetune.step()
        return {key: float(value.detach()) for key, value in out.items()}

    # ---- state ----------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "encoder": self.encoder.state_dict(),
            "head": self.head.state_dict(),
            "encoder_k": self.encoder_k.state_dict(),
            "head_k": self.head_k.state_dict(),
            "queue": self.queue.cpu(),
            "queue_ptr": self.queue_ptr,
            "opt_moco": self.opt_moco.state_dict(),
            "opt_finetune": self.opt_finetune.state_dict(),
            "centre": None if self.centre is None else self.centre.cpu(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.encoder.load_state_dict(state["encoder"])
        self.head.load_state_dict(state["head"])
        self.encoder_k.load_state_dict(state["encoder_k"])
        self.head_k.load_state_dict(state["head_k"])
        self.queue = state["queue"].to(self.device)
        self.queue_ptr = int(state["queue_ptr"])
        self.opt_moco.load_state_dict(state["opt_moco"])
        self.opt_finetune.load_state_dict(state["opt_finetune"])
        self.centre = None if state["centre"] is None else state["centre"].to(self.device)


def _foreground(x: np.ndarray) -> np.ndarray:
    """bool [N,S,S]: pixels where some window shows more than air (the head)."""
    return np.asarray(x).max(axis=1) > 0.05


def _scored_region(dif: np.ndarray, slices: SliceSet, config: DRNTrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """(difference images as the DRN sees them, bool [N,S,S] where synthetic disorders go).

    With the cavity: x_dif zeroed outside it (what the runtime feeds the DRN) and the cavity
    itself; slices without any cavity (below the skull base, above the vertex) fall back to the
    head. Without: x_dif as it is and the head."""
    spec = config.cavity_spec()
    if spec is None:
        return dif, _foreground(slices.x)
    from isl_rt.pipeline import mask_cavity

    try:
        cavity = spec.resolve(slices.params.windows)
    except BundleError as err:
        raise TrainingError(f"{err} Train with --no-cavity for images without HU windows.") from None
    x = np.ascontiguousarray(slices.x, dtype=np.float32)
    scored = np.array(dif, dtype=np.float32)  # a copy: the cached differences stay as they are
    region = mask_cavity(x, scored, cavity) > 0
    empty = ~region.any(axis=(1, 2))
    region[empty] = _foreground(x[empty])
    return scored, region


def train_drn(
    slices: SliceSet,
    ckpt_dir: Path,
    config: DRNTrainConfig,
    *,
    resume: bool = False,
    progress: ProgressCallback | None = None,
) -> DRNTrainResult:
    """Difference images from ``ckpt_dir/dedn_best.pt``, MoCo pretraining, centre, fine-tuning."""
    ckpt_dir = Path(ckpt_dir)
    last_path, best_path = ckpt_dir / LAST, ckpt_dir / BEST
    config.validate()
    set_threads(config.threads)
    device = resolve_device(config.device)
    if last_path.exists() and not resume:
        raise TrainingError(f"{last_path} exists: pass --resume to continue that run, or choose another --ckpt folder.")
    if config.input == "slice":
        raw_dif = slices.x
        dedisorder: np.ndarray | None = None  # the slice itself is the DRN's input: x⁺ is compared with 0
        dif_key: dict[str, Any] = {"input": "slice", "slices": {k: v for k, v in slices.summary().items() if k != "excluded"}}
    else:
        raw_dif, dedisorder, dif_key = _cached_differences(ckpt_dir, slices, config, device, progress)
    dif, region = _scored_region(raw_dif, slices, config)
    windows = torch.from_numpy(slices.params.windows_array())
    n = dif.shape[0]
    # a queue longer than the data minus a batch would hold keys of the very images of the batch
    # (false negatives): cap it, so that within an epoch every negative is another image
    queue_size = min(config.queue_size, max(config.batch_size, n - config.batch_size))
    trainer = DRNTrainer(config, slices.params.channels, device, queue_size=queue_size)
    moco_done = ft_done = 0
    history: list[dict[str, float]] = []
    stopper = EarlyStopping(config.patience)
    stopped = False
    if resume and last_path.exists():
        state = load_checkpoint(last_path)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise TrainingError(f"{last_path} is not a DRN checkpoint of this isl-rt.")
        if state["differences"] != dif_key:
            raise TrainingError(
                f"{last_path} was trained on difference images of another DeDN, partition or data: train the DRN again into a fresh --ckpt folder, or restore that dedn_best.pt."
            )
        saved = DRNTrainConfig.from_dict(state["config"])
        for name in ("preset", "embedding_dim", "seed", "batch_size", "steps_per_epoch", "queue_size"):
            if getattr(saved, name) != getattr(config, name):
                raise TrainingError(f"{last_path} was trained with {name.replace('_', '-')}={getattr(saved, name)!r}: resume with the same options.")
        trainer.load_state(state["trainer"])
        moco_done, ft_done = int(state["moco_epochs"]), int(state["finetune_epochs"])
        history = list(state["history"])
        stopper = EarlyStopping.from_state(state["stopper"])
        stopped = bool(state["stopped"])

    def snapshot() -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "config": config.to_dict(),
            "data": slices.summary(),
            "channels": slices.params.channels,
            "size": slices.params.size,
            "differences": dif_key,
            "partition": config.partition().to_dict(),
            "queue_size": queue_size,
            "moco_epochs": moco_done,
            "finetune_epochs": ft_done,
            "history": history,
            "stopper": stopper.state(),
            "stopped": stopped,
            "trainer": trainer.state(),
        }

    while moco_done < config.pretrain_epochs:
        batch_list = epoch_batches(n, config.batch_size, config.steps_per_epoch, config.seed, moco_done, _PHASE_MOCO)
        gen = torch_generator(config.seed, moco_done, _PHASE_MOCO)
        emit(progress, ProgressEvent("moco", "start", moco_done + 1, config.pretrain_epochs, 0, len(batch_list)))
        sums: dict[str, float] = {}
        for step, idx in enumerate(batch_list, start=1):
            x = torch.from_numpy(np.ascontiguousarray(dif[idx])).to(device)
            losses = trainer.moco_step(x, gen)
            sums = {k: sums.get(k, 0.0) + v for k, v in losses.items()}
            emit(progress, ProgressEvent("moco", "step", moco_done + 1, config.pretrain_epochs, step, len(batch_list), losses))
        moco_done += 1
        means = {k: v / len(batch_list) for k, v in sums.items()}
        history.append({"phase": float(_PHASE_MOCO), "epoch": float(moco_done), **means})
        save_checkpoint(last_path, snapshot())
        emit(progress, ProgressEvent("moco", "epoch", moco_done, config.pretrain_epochs, len(batch_list), len(batch_list), means))

    if trainer.centre is None:
        trainer.compute_centre(dif)
        save_checkpoint(last_path, snapshot())

    while not stopped and ft_done < config.max_epochs:
        batch_list = epoch_batches(n, config.batch_size, config.steps_per_epoch, config.seed, ft_done, _PHASE_FINETUNE)
        gen = torch_generator(config.seed, ft_done, _PHASE_FINETUNE)
        emit(progress, ProgressEvent("finetune", "start", ft_done + 1, config.max_epochs, 0, len(batch_list)))
        sums = {}
        for step, idx in enumerate(batch_list, start=1):
            x = torch.from_numpy(np.ascontiguousarray(dif[idx])).to(device)
            fg = torch.from_numpy(region[idx])
            x_plus = None
            if config.disorder == "lesion":
                dd = None if dedisorder is None else np.asarray(dedisorder[idx], dtype=np.float32)
                x_plus = lesion_differences(x, np.asarray(slices.x[idx], dtype=np.float32), dd, fg, windows, gen)
            losses = trainer.finetune_step(x, fg, gen, x_plus)
            sums = {k: sums.get(k, 0.0) + v for k, v in losses.items()}
            emit(progress, ProgressEvent("finetune", "step", ft_done + 1, config.max_epochs, step, len(batch_list), losses))
        ft_done += 1
        means = {k: v / len(batch_list) for k, v in sums.items()}
        improved = stopper.update(means["loss"], ft_done)
        stopped = stopper.should_stop
        history.append({"phase": float(_PHASE_FINETUNE), "epoch": float(ft_done), **means})
        state = snapshot()
        save_checkpoint(last_path, state)
        if improved:
            save_checkpoint(best_path, state)
        note = "best" if improved else ""
        if stopped:
            note = f"stopped: no decrease for {config.patience} epochs"
        emit(progress, ProgressEvent("finetune", "epoch", ft_done, config.max_epochs, len(batch_list), len(batch_list), means, note))

    assert trainer.centre is not None
    return DRNTrainResult(
        pretrain_epochs=moco_done,
        finetune_epochs=ft_done,
        best_epoch=stopper.best_epoch,
        best_loss=stopper.best,
        stopped_early=stopped,
        centre=[float(v) for v in trainer.centre.cpu().tolist()],
        history=history,
        last_path=last_path,
        best_path=best_path,
    )


def load_drn(path: Path, device: torch.device = torch.device("cpu")) -> tuple[DRN, dict[str, Any]]:
    """The encoder of a DRN checkpoint (eval mode) and its metadata (``centre`` as a list of floats)."""
    state = load_checkpoint(path)
    if state.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(f"{path} is not a DRN checkpoint of this isl-rt ({state.get('format')!r}).")
    config = DRNTrainConfig.from_dict(state["config"])
    model = build_drn(config.preset, int(state["channels"]), config.embedding_dim)
    model.load_state_dict(state["trainer"]["encoder"])
    model.to(device).eval()
    centre = state["trainer"]["centre"]
    if centre is None:
        raise TrainingError(f"{path} has no DRN centre yet: let isl-rt train drn finish pretraining.")
    meta = {key: value for key, value in state.items() if key != "trainer"}
    meta["centre"] = [float(v) for v in centre.tolist()]
    return model, meta
