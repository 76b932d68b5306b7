"""Losses of the DeDN (EdgeConnect's inpainting losses, adapted to ISL's small erased cells).

Generator loss = w_l1·L1 + w_adv·L_adv + w_perc·L_perc + w_style·L_style with EdgeConnect's
weights (1, 0.1, 0.1, 250) by default.

- L1, weighted on the erased region: mean |x̂ - x| over the erased pixels plus ``l1_valid``
  (default 0.1) times the mean over the kept pixels, per image, then averaged over the batch.
  EdgeConnect divides the whole-image L1 by the hole fraction; with its large irregular holes
  that mostly weighs the hole, but ISL erases one cell of a K×K grid (1/4 to 1/64 of the image),
  where the same rule would weigh the kept pixels up to 63 times more than the erased ones. The
  runtime keeps x̂ on the erased cells only, so those pixels carry the loss; the small kept-region
  term keeps the output anchored to the image.
- L_adv: the generator's adversarial loss on the raw output, "nsgan" (EdgeConnect's default,
  BCE on logits) or "hinge".
- L_perc: Σ over the five feature maps of mean |φ_i(x̂) - φ_i(x)| (raw output, as EdgeConnect).
- L_style: Σ over the five maps of mean |G(φ_i(x̂·h)) - G(φ_i(x·h))|, h = erased region (as
  EdgeConnect), G the Gram matrix divided by C·H·W.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Literal

import torch
from torch.nn import functional as F

__all__ = [
    "AdversarialKind",
    "LossWeights",
    "discriminator_loss",
    "generator_adversarial_loss",
    "gram",
    "masked_l1",
    "perceptual_loss",
    "style_loss",
]

AdversarialKind = Literal["nsgan", "hinge"]
FeatureFn = Callable[[torch.Tensor], list[torch.Tensor]]


@dataclass(frozen=True)
class LossWeights:
    """Weights of the generator's loss terms (EdgeConnect's defaults) and the adversarial kind."""

    l1: float = 1.0
    adversarial: float = 0.1
    perceptual: float = 0.1
    style: float = 250.0
    l1_valid: float = 0.1
    adversarial_kind: AdversarialKind = "nsgan"

    def to_dict(self) -> dict[str, float | str]:
        return asdict(self)


def masked_l1(output: torch.Tensor, target: torch.Tensor, hole: torch.Tensor, valid_weight: float) -> torch.Tensor:
    """Mean |output - target| over the erased pixels (``hole`` = 1) plus ``valid_weight`` times
    the mean over the kept ones, per image, averaged over the batch. ``hole`` is [B,1,H,W]."""
    err = (output - target).abs().mean(dim=1, keepdim=True)
    hole_px = hole.sum(dim=(1, 2, 3))
    valid = 1.0 - hole
    valid_px = valid.sum(dim=(1, 2, 3))
    in_hole = (err * hole).sum(dim=(1, 2, 3)) / hole_px.clamp_min(1.0)
    in_valid = (err * valid).sum(dim=(1, 2, 3)) / valid_px.clamp_min(1.0)
    return (in_hole + valid_weight * in_valid).mean()


def gram(features: torch.Tensor) -> torch.Tensor:
    """Gram matrix [B, C, C] of a feature map [B, C, H, W], divided by C·H·W."""
    b, c, h, w = features.shape
    f = features.reshape(b, c, h * w)
    return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)


def perceptual_loss(out_feats: list[torch.Tensor], target_feats: list[torch.Tensor]) -> torch.Tensor:
    """Σ_i mean |φ_i(output) - φ_i(target)|."""
    return torch.stack([F.l1_loss(a, b) for a, b in zip(out_feats, target_feats)]).sum()


def style_loss(out_feats: list[torch.Tensor], target_feats: list[torch.Tensor]) -> torch.Tensor:
    """Σ_i mean |G(φ_i(output)) - G(φ_i(target))|."""
    return torch.stack([F.l1_loss(gram(a), gram(b)) for a, b in zip(out_feats, target_feats)]).sum()


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: AdversarialKind) -> torch.Tensor:
    """The discriminator's loss: real patches towards 1 (nsgan) or above +1 (hinge), fakes the other way."""
    if kind == "nsgan":
        return 0.5 * (
            F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
        )
    if kind == "hinge":
        return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())
    raise ValueError(f"unknown adversarial loss {kind!r}; use 'nsgan' or 'hinge'.")


def generator_adversarial_loss(fake_logits: torch.Tensor, kind: AdversarialKind) -> torch.Tensor:
    """The generator's adversarial loss: make the discriminator call its output real."""
    if kind == "nsgan":
        return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
    if kind == "hinge":
        return -fake_logits.mean()
    raise ValueError(f"unknown adversarial loss {kind!r}; use 'nsgan' or 'hinge'.")
