"""The DeDN: an inpainting generator of the EdgeConnect family, written for isl-rt.

Input ``masked`` [B, 2C+1, S, S] in the runtime's fan-out order: the image with the erased
cells zeroed (x·m, C channels), the erased region (1 - m, one channel) and the Canny edge maps
of the whole image (C channels). Output ``inpainted`` [B, C, S, S] in [0, 1]; the runtime keeps
it on the erased cells only.

Layout (EdgeConnect's ``InpaintGenerator``): reflection pad + 7×7 stem, two stride-2 4×4
convolutions (base, 2·base, 4·base channels), residual blocks with a dilation-2 3×3 convolution
then a 3×3 one, two stride-2 transposed convolutions, reflection pad + 7×7 head, and
(tanh + 1) / 2. Every convolution but the head is followed by instance normalisation without
affine parameters or running statistics (EdgeConnect's choice); it exports to ONNX
``InstanceNormalization`` and behaves the same in training and inference. The network is fully
convolutional: S must be a multiple of 4.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["PRESETS", "DeDN", "DeDNPreset", "build_dedn", "dedn_input_channels"]


@dataclass(frozen=True)
class DeDNPreset:
    """Input size S, base channel count and number of residual blocks of one preset."""

    size: int
    base: int
    blocks: int


#: tiny: any CPU (the shipped default); base: laptop GPU / fast CPU; full: EdgeConnect's generator.
PRESETS: dict[str, DeDNPreset] = {
    "tiny": DeDNPreset(size=128, base=16, blocks=4),
    "base": DeDNPreset(size=256, base=32, blocks=6),
    "full": DeDNPreset(size=256, base=64, blocks=8),
}


def dedn_input_channels(channels: int) -> int:
    """2C + 1: x·m (C), 1 - m (1), edges (C)."""
    return 2 * channels + 1


def _norm(features: int) -> nn.Module:
    return nn.InstanceNorm2d(features, affine=False, track_running_stats=False)


class ResidualBlock(nn.Module):
    """x + [pad(d), conv3×3 dilation d, IN, ReLU, pad(1), conv3×3, IN](x)."""

    def __init__(self, features: int, dilation: int = 2) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(dilation),
            nn.Conv2d(features, features, kernel_size=3, dilation=dilation),
            _norm(features),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(features, features, kernel_size=3),
            _norm(features),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class DeDN(nn.Module):
    """The dedisorder network: ``forward(masked [B,2C+1,S,S]) -> inpainted [B,C,S,S]`` in [0,1]."""

    def __init__(self, channels: int = 3, base: int = 16, blocks: int = 4, dilation: int = 2) -> None:
        super().__init__()
        if channels < 1 or base < 1 or blocks < 0:
            raise ValueError(f"DeDN needs channels ≥ 1, base ≥ 1, blocks ≥ 0; got {channels}, {base}, {blocks}.")
        self.channels = channels
        self.base = base
        self.blocks = blocks
        b1, b2, b4 = base, 2 * base, 4 * base
        self.encoder = nn.Sequential(
            nn.ReflectionPad2d(3),
            nn.Conv2d(dedn_input_channels(channels), b1, kernel_size=7),
            _norm(b1),
            nn.ReLU(inplace=True),
            nn.Conv2d(b1, b2, kernel_size=4, stride=2, padding=1),
            _norm(b2),
            nn.ReLU(inplace=True),
            nn.Conv2d(b2, b4, kernel_size=4, stride=2, padding=1),
            _norm(b4),
            nn.ReLU(inplace=True),
        )
        self.middle = nn.Sequential(*(ResidualBlock(b4, dilation) for _ in range(blocks)))
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(b4, b2, kernel_size=4, stride=2, padding=1),
            _norm(b2),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(b2, b1, kernel_size=4, stride=2, padding=1),
            _norm(b1),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(3),
            nn.Conv2d(b1, channels, kernel_size=7),
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """EdgeConnect's initialisation: N(0, 0.02) weights, zero biases."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.normal_(module.weight, 0.0, 0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, masked: torch.Tensor) -> torch.Tensor:
        if masked.dim() != 4 or masked.shape[1] != dedn_input_channels(self.channels):
            raise ValueError(
                f"DeDN input must be [B, {dedn_input_channels(self.channels)}, S, S], got {list(masked.shape)}."
            )
        y = self.decoder(self.middle(self.encoder(masked)))
        return (torch.tanh(y) + 1.0) * 0.5


def build_dedn(preset: str, channels: int) -> DeDN:
    """A DeDN of the named preset for ``channels`` windows."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}.")
    p = PRESETS[preset]
    return DeDN(channels=channels, base=p.base, blocks=p.blocks)
