"""Feature networks for the DeDN's perceptual and style losses.

Both return five feature maps, the first ReLU of each of five stages, from an image batch
[B, C, H, W] in [0, 1]:

- :class:`VGG19Features`: VGG-19's ``relu1_1, relu2_1, relu3_1, relu4_1, relu5_1`` (EdgeConnect's
  choice), with weights read from a torchvision-format state dict (``features.<i>.weight``);
  torchvision itself is not needed. Images are normalised with the ImageNet mean/std; a C = 3
  image is read as RGB, any other C feeds each channel as a grey image (3 equal channels).
- :class:`SelfSupervisedFeatures`: a small five-stage convolutional network trained by the
  project itself on healthy slices (rotation prediction, :mod:`isl_rt.training.features`), for
  when no pretrained VGG-19 weights can be had. It reads the C channels directly.

Feature networks are frozen (``requires_grad = False``, eval mode) while they serve a loss.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from isl_rt.errors import InputError

__all__ = [
    "FEATURE_KINDS",
    "SelfSupervisedFeatures",
    "VGG19Features",
    "VGG19_CONFIG",
    "VGG19_TAPS",
    "freeze",
    "load_vgg19",
]

#: the values recorded in the bundle's ``training.feature_network``
FEATURE_KINDS = ("vgg19", "self-supervised")

#: torchvision's VGG-19 ``features`` layout: channel counts, "M" = 2×2 max pool
VGG19_CONFIG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
)
#: indices in ``features`` of relu1_1, relu2_1, relu3_1, relu4_1, relu5_1
VGG19_TAPS: tuple[int, ...] = (1, 6, 11, 20, 29)

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def freeze(module: nn.Module) -> nn.Module:
    """Eval mode and no gradients for the module's parameters (a loss network)."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


class VGG19Features(nn.Module):
    """VGG-19 ``features`` up to relu5_1, returning the five first-ReLU activations."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for item in VGG19_CONFIG:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                assert isinstance(item, int)
                layers += [nn.Conv2d(c_in, item, kernel_size=3, padding=1), nn.ReLU(inplace=False)]
                c_in = item
        # keep the layers up to and including relu5_1; indices match torchvision's state dict
        self.features = nn.Sequential(*layers[: VGG19_TAPS[-1] + 1])
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        b, c, h, w = image.shape
        x = image if c == 3 else image.reshape(b * c, 1, h, w).expand(b * c, 3, h, w)
        x = (x - self.mean) / self.std
        taps = set(VGG19_TAPS)
        out: list[torch.Tensor] = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in taps:
                out.append(x)
        return out


def load_vgg19(path: str | Path) -> VGG19Features:
    """A frozen :class:`VGG19Features` with the weights of a torchvision VGG-19 state dict file.

    Accepts a plain state dict or one nested under ``"state_dict"``; keys may carry a
    ``module.`` prefix. Raises :class:`InputError` with a sentence when the file is missing,
    unreadable or not VGG-19.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist: pass a torchvision VGG-19 state dict (vgg19-*.pth) to --vgg19-weights.")
    try:
        state: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for a bad file
        raise InputError(f"{path} could not be read as a PyTorch state dict ({type(err).__name__}): pass a torchvision VGG-19 .pth file.") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise InputError(f"{path} does not hold a state dict: pass a torchvision VGG-19 .pth file.")
    state = {str(k).removeprefix("module."): v for k, v in state.items()}
    model = VGG19Features()
    wanted = model.features.state_dict()
    found = {k: state.get(f"features.{k}") for k in wanted}
    missing = [k for k, v in found.items() if v is None]
    if missing:
        raise InputError(
            f"{path} lacks VGG-19 weights such as 'features.{missing[0]}': it is not a torchvision VGG-19 state dict."
        )
    wrong = [k for k, v in found.items() if tuple(v.shape) != tuple(wanted[k].shape)]
    if wrong:
        k = wrong[0]
        raise InputError(
            f"{path} has 'features.{k}' of shape {tuple(found[k].shape)} where VGG-19 has {tuple(wanted[k].shape)}: "
            "it is not a torchvision VGG-19 state dict."
        )
    model.features.load_state_dict({k: v.float() for k, v in found.items()})
    return freeze(model)  # type: ignore[return-value]


class SelfSupervisedFeatures(nn.Module):
    """Five stages of [conv3×3, ReLU (tapped), conv3×3, ReLU], 2×2 max pool between stages.

    ``head`` (global average pool + linear to ``classes``) serves only the self-supervised task.
    """

    def __init__(self, channels: int = 3, base: int = 16, classes: int = 4) -> None:
        super().__init__()
        widths = [base, 2 * base, 4 * base, 8 * base, 8 * base]
        self.channels = channels
        self.base = base
        self.stages = nn.ModuleList()
        c_in = channels
        for width in widths:
            self.stages.append(
                nn.ModuleDict(
                    {
                        "first": nn.Sequential(nn.Conv2d(c_in, width, 3, padding=1), nn.ReLU(inplace=False)),
                        "second": nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True)),
                    }
                )
            )
            c_in = width
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(c_in, classes)
        for module in self.modules():  # He initialisation: the stack has no normalisation layers
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        return self._run(image)[0]

    def classify(self, image: torch.Tensor) -> torch.Tensor:
        """Logits of the self-supervised task."""
        return self.head(self._run(image)[1].mean(dim=(2, 3)))

    def _run(self, image: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        x = image
        taps: list[torch.Tensor] = []
        for index, stage in enumerate(self.stages):
            if index:
                x = self.pool(x)
            x = stage["first"](x)
            taps.append(x)
            x = stage["second"](x)
        return taps, x
