"""What both training loops share: devices, threads, seeded generators, checkpoints, model selection."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from isl_rt.errors import IslError

__all__ = [
    "EarlyStopping",
    "TrainingError",
    "batches",
    "check_device_name",
    "epoch_rng",
    "load_checkpoint",
    "resolve_device",
    "save_checkpoint",
    "set_threads",
    "torch_generator",
]


class TrainingError(IslError):
    """A training run that cannot start or go on (bad option, missing or mismatched checkpoint)."""


def check_device_name(device: str) -> None:
    """A TrainingError unless ``device`` is ``cpu``, ``cuda`` or ``cuda:N``."""
    if device not in ("cpu", "cuda") and not (device.startswith("cuda:") and device[5:].isdigit()):
        raise TrainingError(f"--device must be cpu, cuda or cuda:N, got {device!r}.")


def resolve_device(device: str) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N``; a TrainingError when CUDA is asked for but absent."""
    check_device_name(device)
    if device == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise TrainingError(f"--device {device} needs a CUDA GPU and a CUDA build of torch, and this torch sees none; use --device cpu.")
    return torch.device(device)


def set_threads(threads: int) -> None:
    """``torch.set_num_threads(threads)`` when threads > 0 (0 keeps torch's default)."""
    if threads < 0:
        raise TrainingError(f"--threads must be 0 (torch's default) or more, got {threads}.")
    if threads > 0:
        torch.set_num_threads(threads)


def epoch_rng(seed: int, epoch: int, stream: int) -> np.random.Generator:
    """A numpy generator determined by (seed, epoch, stream) alone, so a resumed run draws what an
    uninterrupted run would have drawn."""
    return np.random.default_rng([seed, epoch, stream])


def torch_generator(seed: int, epoch: int, stream: int) -> torch.Generator:
    """A CPU torch generator determined by (seed, epoch, stream) alone."""
    value = int(np.random.default_rng([seed, epoch, stream]).integers(0, 2**62))
    return torch.Generator(device="cpu").manual_seed(value)


def batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A random order of 0..n-1 cut into batches (the last may be smaller), each sorted (memory-map friendly)."""
    order = rng.permutation(n)
    return [np.sort(order[i : i + batch_size]) for i in range(0, n, batch_size)]


def epoch_batches(n: int, batch_size: int, steps_per_epoch: int, seed: int, epoch: int, stream: int) -> list[np.ndarray]:
    """The batches of one epoch, determined by (seed, epoch, stream): one pass over a random order
    when ``steps_per_epoch`` is 0, else that many random batches (with replacement only when the
    data holds fewer than ``batch_size`` items)."""
    rng = epoch_rng(seed, epoch, stream)
    if steps_per_epoch == 0:
        return batches(n, batch_size, rng)
    return [np.sort(rng.choice(n, size=min(batch_size, n), replace=n < batch_size)) for _ in range(steps_per_epoch)]


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """``torch.save`` to a temporary file, then an atomic rename: a crash never leaves half a checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint written by :func:`save_checkpoint` (tensors and plain data only)."""
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"{path} does not exist: train first (isl-rt train dedn / isl-rt train drn) into that --ckpt folder.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for a damaged file
        raise TrainingError(f"{path} could not be read as an isl-rt checkpoint ({type(err).__name__}): it is damaged; train again.") from None
    if not isinstance(state, dict) or "format" not in state:
        raise TrainingError(f"{path} is not an isl-rt checkpoint.")
    return state


@dataclass
class EarlyStopping:
    """The paper's model selection: stop when the training loss has not decreased for ``patience`` epochs."""

    patience: int = 5
    best: float = float("inf")
    best_epoch: int = -1
    since_best: int = 0

    def update(self, loss: float, epoch: int) -> bool:
        """Record an epoch's loss; True when it is the best so far."""
        if loss < self.best:
            self.best, self.best_epoch, self.since_best = float(loss), epoch, 0
            return True
        self.since_best += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.since_best >= self.patience

    def state(self) -> dict[str, Any]:
        return {"patience": self.patience, "best": self.best, "best_epoch": self.best_epoch, "since_best": self.since_best}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> EarlyStopping:
        return cls(int(state["patience"]), float(state["best"]), int(state["best_epoch"]), int(state["since_best"]))
