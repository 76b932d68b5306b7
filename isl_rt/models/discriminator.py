"""The PatchGAN discriminator that trains the DeDN (EdgeConnect's, with spectral normalisation).

Five 4×4 convolutions (stride 2, 2, 2, 1, 1; base, 2·base, 4·base, 8·base, 1 channels), each but
the last followed by LeakyReLU(0.2), all spectrally normalised and without biases. The output
is a map of real/fake *logits*, one per overlapping patch (70×70 pixels of receptive field);
the losses in :mod:`isl_rt.training.losses` apply the sigmoid or hinge. It is used in training
only and never exported.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

__all__ = ["PatchDiscriminator"]


class PatchDiscriminator(nn.Module):
    """``forward(image [B,C,S,S]) -> logits [B,1,S/8-2,S/8-2]`` (S ≥ 32)."""

    def __init__(self, channels: int = 3, base: int = 64) -> None:
        super().__init__()
        widths = [channels, base, 2 * base, 4 * base, 8 * base]
        strides = [2, 2, 2, 1]
        layers: list[nn.Module] = []
        for c_in, c_out, stride in zip(widths[:-1], widths[1:], strides):
            layers += [
                spectral_norm(nn.Conv2d(c_in, c_out, kernel_size=4, stride=stride, padding=1, bias=False)),
                nn.LeakyReLU(0.2, inplace=True),
            ]
        layers.append(spectral_norm(nn.Conv2d(widths[-1], 1, kernel_size=4, stride=1, padding=1, bias=False)))
        self.net = nn.Sequential(*layers)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.parametrizations.weight.original, 0.0, 0.02)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image)
