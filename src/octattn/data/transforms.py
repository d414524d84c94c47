"""The paper's two pre-processing modes and the one evaluation transform.

* ``"resize"`` (the paper's final choice, default): the whole scan resized directly to
  the model's input size, aspect ratio not kept (a 768x496 scan is squeezed, not cut).
* ``"crop"`` (the paper's "original pre-processing", Table III): a random crop of
  8-100% of the area and 3/4-4/3 aspect (torchvision's ``RandomResizedCrop``, the
  Inception training crop), then resize. The paper found it often keeps only background.

Training may add :func:`random_jitter` (``jitter:``): small random affine moves and
brightness/contrast changes, against the overfitting of a few hundred real scans; and
:func:`random_appearance` (``randomise:``): domain randomisation of gamma, sharpness,
resolution and noise, so that a model trained on phantoms cannot lean on how they are drawn.

:func:`eval_transform` is the single deterministic transform used by evaluate, predict,
explain and serve: a direct resize and the model's normalisation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torchvision.transforms import InterpolationMode, RandomResizedCrop
from torchvision.transforms import functional as TF

PREPROCESS_MODES: tuple[str, ...] = ("resize", "crop")

INCEPTION_MEAN = 0.5
INCEPTION_STD = 0.5
"""timm's Inception pretrained configs normalise every channel with mean = std = 0.5."""


@dataclass(frozen=True)
class Preprocess:
    """What a model expects of its input; saved in every model bundle.

    Attributes:
        size: ``(height, width)`` in pixels.
        in_chans: 1 (gray) or 3 (the gray scan repeated).
        mean, std: per-channel normalisation after scaling to [0, 1].
        interpolation: ``"bilinear"`` or ``"bicubic"`` (antialiased either way).
    """

    size: tuple[int, int] = (299, 299)
    in_chans: int = 1
    mean: float = INCEPTION_MEAN
    std: float = INCEPTION_STD
    interpolation: str = "bilinear"

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        data = asdict(self)
        data["size"] = list(self.size)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preprocess:
        """Inverse of :meth:`to_dict`."""
        size = data.get("size", (299, 299))
        if isinstance(size, int):
            size = (size, size)
        return cls(
            size=(int(size[0]), int(size[1])),
            in_chans=int(data.get("in_chans", 1)),
            mean=float(data.get("mean", INCEPTION_MEAN)),
            std=float(data.get("std", INCEPTION_STD)),
            interpolation=str(data.get("interpolation", "bilinear")),
        )

    @property
    def interpolation_mode(self) -> InterpolationMode:
        """torchvision's enum for :attr:`interpolation`."""
        return InterpolationMode(self.interpolation)


def to_tensor(gray: np.ndarray) -> torch.Tensor:
    """``(H, W)`` uint8 array -> ``(1, H, W)`` uint8 tensor (no copy where possible)."""
    if not gray.flags.writeable:  # Pillow hands out read-only views; torch wants writable memory
        gray = gray.copy()
    return torch.from_numpy(np.ascontiguousarray(gray)).unsqueeze(0)


def apply_augment(image: torch.Tensor, augment: str) -> torch.Tensor:
    """Apply a deterministic augmentation spec such as ``"rot-10,hflip"`` to ``(1, H, W)``.

    Parts joined by commas: ``rot<degrees>`` (counter-clockwise positive, dark fill, as
    the area outside a rotated B-scan is vitreous-dark) and ``hflip``.
    """
    if not augment:
        return image
    for part in augment.split(","):
        if part == "hflip":
            image = TF.hflip(image)
        elif part.startswith("rot"):
            image = TF.rotate(image, float(part[3:]), interpolation=InterpolationMode.BILINEAR, fill=[0.0])
        else:
            raise ValueError(f"unknown augmentation {part!r} in {augment!r}")
    return image


JITTER_AT_1 = {"degrees": 10.0, "shift": 0.05, "scale": 0.10, "brightness": 0.20, "contrast": 0.20}
"""The largest change of each kind at ``jitter: 1`` (each drawn uniformly within +-strength x
this): a scan tilted, shifted and zoomed as little as fixation and device settings move it."""


def random_jitter(image: torch.Tensor, strength: float) -> torch.Tensor:
    """A uint8 ``(1, H, W)`` scan tilted, shifted and scaled a little (dark fill: what lies
    outside a B-scan is vitreous-dark) and made a little brighter or darker and more or less
    contrasted, by amounts drawn from torch's generator (so a seeded run repeats); ``strength``
    scales :data:`JITTER_AT_1`, 0 returns the scan untouched."""
    if strength <= 0:
        return image

    def draw(key: str) -> float:
        return float(torch.empty(()).uniform_(-1.0, 1.0)) * strength * JITTER_AT_1[key]

    height, width = image.shape[-2:]
    image = TF.affine(
        image,
        angle=draw("degrees"),
        translate=[round(draw("shift") * width), round(draw("shift") * height)],
        scale=1.0 + draw("scale"),
        shear=[0.0, 0.0],
        interpolation=InterpolationMode.BILINEAR,
        fill=[0.0],
    )
    image = TF.adjust_brightness(image, 1.0 + draw("brightness"))
    return TF.adjust_contrast(image, 1.0 + draw("contrast"))


APPEARANCE_AT_1 = {"log_gamma": float(np.log(1.8)), "blur_px": 1.5, "downscale": 0.5, "noise": 0.08}
"""The largest change of each kind at ``randomise: 1``: a gamma between 1/1.8 and 1.8, a Gaussian
blur of up to 1.5 pixels, the scan shrunk to as little as half its size and brought back (a coarser
device), and Gaussian noise of up to 8% of full scale; each drawn uniformly, scaled by the strength."""


def random_appearance(image: torch.Tensor, strength: float) -> torch.Tensor:
    """A uint8 ``(1, H, W)`` scan with its grey-level curve, sharpness, resolution and noise
    drawn afresh (domain randomisation): what a renderer gets wrong about a device varies from
    scan to scan, so a model cannot learn it as a cue. Amounts come from torch's generator (a
    seeded run repeats); ``strength`` scales :data:`APPEARANCE_AT_1`, 0 returns the scan untouched."""
    if strength <= 0:
        return image

    def draw(key: str) -> float:  # uniform in [0, strength x the largest change]
        return float(torch.rand(())) * strength * APPEARANCE_AT_1[key]

    height, width = image.shape[-2:]
    x = image.float() / 255.0
    x = x.clamp_min(1e-4) ** float(np.exp((2 * float(torch.rand(())) - 1) * strength * APPEARANCE_AT_1["log_gamma"]))
    sigma = draw("blur_px")
    if sigma > 0.1:
        x = TF.gaussian_blur(x, [2 * int(np.ceil(3 * sigma)) + 1] * 2, [sigma, sigma])
    factor = 1.0 - draw("downscale")
    if factor < 0.95:
        small = [max(8, round(height * factor)), max(8, round(width * factor))]
        x = TF.resize(TF.resize(x, small, antialias=True), [height, width], antialias=True)
    x = x + torch.randn_like(x) * draw("noise")
    return (x.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)


def normalise(image: torch.Tensor, pre: Preprocess) -> torch.Tensor:
    """uint8 ``(1, H, W)`` (or ``(N, 1, H, W)``) -> float, normalised, ``in_chans`` channels."""
    x = (image.float() / 255.0 - pre.mean) / pre.std
    if pre.in_chans == 3:
        x = x.repeat_interleave(3, dim=-3)
    return x


def resize(image: torch.Tensor, pre: Preprocess) -> torch.Tensor:
    """Direct resize of a uint8 ``(1, H, W)`` to ``pre.size``; identity when already that size."""
    if tuple(image.shape[-2:]) == pre.size:
        return image
    return TF.resize(image, list(pre.size), interpolation=pre.interpolation_mode, antialias=True)


def eval_transform(pre: Preprocess) -> Callable[[np.ndarray], torch.Tensor]:
    """The deterministic transform used everywhere outside training."""

    def transform(gray: np.ndarray) -> torch.Tensor:
        return normalise(resize(to_tensor(gray), pre), pre)

    return transform


def train_transform(
    pre: Preprocess, mode: str = "resize", hflip_prob: float = 0.0, jitter: float = 0.0, randomise: float = 0.0
) -> Callable[[np.ndarray, str], torch.Tensor]:
    """The training transform: deterministic copy augmentation, then ``mode``, then jitter,
    appearance randomisation and flip.

    Args:
        pre: the model's input spec.
        mode: ``"resize"`` or ``"crop"`` (see the module docstring).
        hflip_prob: probability of a random horizontal flip (0 in the paper's recipe).
        jitter: strength of :func:`random_jitter` (0, the paper's recipe: off).
        randomise: strength of :func:`random_appearance` (0, the paper's recipe: off).
    """
    if mode not in PREPROCESS_MODES:
        raise ValueError(f"unknown pre-processing mode {mode!r}; expected one of {PREPROCESS_MODES}")
    crop = RandomResizedCrop(list(pre.size), interpolation=pre.interpolation_mode, antialias=True)

    def transform(gray: np.ndarray, augment: str = "") -> torch.Tensor:
        image = apply_augment(to_tensor(gray), augment)
        image = crop(image) if mode == "crop" else resize(image, pre)
        image = random_jitter(image, jitter)  # after the resize: the affine works on the small image
        image = random_appearance(image, randomise)
        if hflip_prob > 0 and torch.rand(()) < hflip_prob:
            image = TF.hflip(image)
        return normalise(image, pre)

    return transform
