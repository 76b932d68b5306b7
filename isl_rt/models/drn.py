"""The DRN: a small ResNet-style encoder of difference images.

``forward(difference [B, C, S, S]) -> embedding [B, D]``; the slice score is ||h - c||₂ with c the
bundle's centre. Layout: 3×3 stem (stride 2), four stages of basic residual blocks (widths w, 2w,
4w, 8w; the first block of stages 2-4 has stride 2), global average pooling, then a linear map
to D of the pooled features together with the image's intensity statistics.

Normalisation is GroupNorm (at most 8 groups), not BatchNorm: the encoder is the same function
in training and inference, and MoCo's query and key encoders cannot exchange information through
batch statistics. A per-sample normalisation, however, divides out the overall strength of the
difference image, which is itself evidence of disorder (the paper's pixel-sum baseline reaches
AUC 0.75 on it alone). So the head also sees, per channel, log(ε + mean), log(ε + RMS) and
log(ε + max) of the difference image (ε = 1e-4): the trunk learns patterns, the statistics keep
the magnitude. Exports to ONNX as Conv, InstanceNormalization (inside reshapes), ReduceMean/Max,
Log, Concat and Gemm; any S ≥ 16 works.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["DRN", "DRN_PRESETS", "STATISTICS", "DRNPreset", "ProjectionHead", "build_drn", "intensity_statistics"]


@dataclass(frozen=True)
class DRNPreset:
    """Stem width w and residual blocks per stage."""

    width: int
    blocks: tuple[int, int, int, int]


DRN_PRESETS: dict[str, DRNPreset] = {
    "tiny": DRNPreset(width=16, blocks=(1, 1, 1, 1)),
    "base": DRNPreset(width=32, blocks=(2, 2, 2, 2)),
    "full": DRNPreset(width=64, blocks=(2, 2, 2, 2)),
}


def _norm(features: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, features), features)


#: intensity statistics per channel given to the head (see the module docstring)
STATISTICS = 3
_EPS = 1e-4


def intensity_statistics(difference: torch.Tensor) -> torch.Tensor:
    """[B, 3C]: log(ε + mean), log(ε + RMS), log(ε + max) of each channel."""
    mean = difference.mean(dim=(2, 3))
    rms = torch.sqrt((difference * difference).mean(dim=(2, 3)))
    peak = difference.amax(dim=(2, 3))
    return torch.log(torch.cat([mean, rms, peak], dim=1).clamp_min(0.0) + _EPS)


class BasicBlock(nn.Module):
    """ResNet's basic block with GroupNorm; a 1×1 projection when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.norm1 = _norm(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.norm2 = _norm(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), _norm(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return F.relu(y + self.shortcut(x))


class DRN(nn.Module):
    """Difference-image encoder: ``forward(difference [B,C,S,S]) -> embedding [B,D]``."""

    def __init__(
        self,
        channels: int = 3,
        embedding_dim: int = 128,
        width: int = 16,
        blocks: tuple[int, int, int, int] = (1, 1, 1, 1),
    ) -> None:
        super().__init__()
        self.channels = channels
        self.embedding_dim = embedding_dim
        self.width = width
        self.blocks = tuple(blocks)
        self.stem = nn.Sequential(nn.Conv2d(channels, width, 3, stride=2, padding=1, bias=False), _norm(width), nn.ReLU(inplace=True))
        stages: list[nn.Module] = []
        c_in = width
        for index, count in enumerate(blocks):
            c_out = width * (2**index)
            for j in range(count):
                stages.append(BasicBlock(c_in, c_out, stride=2 if (j == 0 and index > 0) else 1))
                c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(c_in + STATISTICS * channels, embedding_dim)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, difference: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(difference))
        return self.fc(torch.cat([x.mean(dim=(2, 3)), intensity_statistics(difference)], dim=1))


class ProjectionHead(nn.Module):
    """MoCo v2's MLP head (D -> D -> P), used during contrastive pretraining only."""

    def __init__(self, embedding_dim: int, projection_dim: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(embedding_dim, embedding_dim), nn.ReLU(inplace=True), nn.Linear(embedding_dim, projection_dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


def build_drn(preset: str, channels: int, embedding_dim: int = 128) -> DRN:
    """A DRN of the named preset."""
    if preset not in DRN_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(DRN_PRESETS)}.")
    p = DRN_PRESETS[preset]
    return DRN(channels=channels, embedding_dim=embedding_dim, width=p.width, blocks=p.blocks)
