"""Progress events of the training loops.

Library code never prints: a loop takes ``progress: ProgressCallback | None`` and calls it with a
:class:`ProgressEvent` per step and per epoch; the CLI renders them as rich progress bars.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal

__all__ = ["ProgressCallback", "ProgressEvent", "emit"]


@dataclass(frozen=True)
class ProgressEvent:
    """One step (``kind="step"``) or the end of an epoch (``kind="epoch"``) of a training phase.

    ``phase`` names what is trained ("features", "dedn", "differences", "moco", "finetune");
    ``step``/``steps`` count within the epoch (1-based); ``losses`` are the step's losses, or the
    epoch means for an epoch event; ``note`` says what happened at the epoch's end ("best",
    "stopped: no decrease for 5 epochs").
    """

    phase: str
    kind: Literal["start", "step", "epoch"]
    epoch: int
    epochs: int
    step: int
    steps: int
    losses: dict[str, float] = field(default_factory=dict)
    note: str = ""


ProgressCallback = Callable[[ProgressEvent], None]


def emit(progress: ProgressCallback | None, event: ProgressEvent) -> None:
    """Send ``event`` to ``progress`` when there is one."""
    if progress is not None:
        progress(event)
