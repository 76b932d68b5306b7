"""Self-supervised training of the fallback feature network (no VGG-19 weights available).

Task: rotation prediction. Each healthy slice is rotated by a random multiple of 90° and the
network (:class:`~isl_rt.models.features.SelfSupervisedFeatures`) learns which one from its last
stage; its five first-ReLU maps then serve the perceptual and style losses. Head CT slices have
a clear anatomical orientation, so the task needs real shape features, and it costs a few
hundred small steps before DeDN training.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from isl_rt.models.features import SelfSupervisedFeatures, freeze
from isl_rt.training.common import epoch_rng
from isl_rt.training.progress import ProgressCallback, ProgressEvent, emit

__all__ = ["train_self_supervised_features"]


def train_self_supervised_features(
    x: np.ndarray,
    *,
    steps: int = 300,
    batch_size: int = 16,
    base: int = 16,
    lr: float = 1e-3,
    seed: int = 0,
    device: torch.device = torch.device("cpu"),
    progress: ProgressCallback | None = None,
) -> tuple[SelfSupervisedFeatures, dict[str, float]]:
    """Train on slices ``x`` float32 [N,C,S,S]; returns the frozen network and the final
    loss/accuracy (means over the last 20 steps)."""
    n, c = x.shape[0], x.shape[1]
    torch.manual_seed(seed)
    net = SelfSupervisedFeatures(channels=c, base=base).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    rng = epoch_rng(seed, 0, 7)
    losses: list[float] = []
    accs: list[float] = []
    emit(progress, ProgressEvent("features", "start", 1, 1, 0, steps))
    for step in range(1, steps + 1):
        idx = np.sort(rng.choice(n, size=min(batch_size, n), replace=n < batch_size))
        turns = rng.integers(0, 4, size=idx.size)
        batch = torch.from_numpy(np.ascontiguousarray(x[idx])).to(device)
        rotated = torch.stack([torch.rot90(img, int(t), dims=(1, 2)) for img, t in zip(batch, turns)])
        target = torch.from_numpy(turns).to(device)
        logits = net.classify(rotated)
        loss = F.cross_entropy(logits, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        accs.append(float((logits.argmax(1) == target).float().mean()))
        emit(progress, ProgressEvent("features", "step", 1, 1, step, steps, {"rotation_ce": losses[-1], "accuracy": accs[-1]}))
    tail = slice(-20, None)
    summary = {"rotation_ce": float(np.mean(losses[tail])) if losses else float("nan"), "accuracy": float(np.mean(accs[tail])) if accs else float("nan"), "steps": float(steps)}
    return freeze(net.cpu()).to(device), summary  # type: ignore[return-value]
