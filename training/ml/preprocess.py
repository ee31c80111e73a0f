"""The one image preprocessing used by training and by prediction.

Both paths go through `prepare()`, so a deployed model sees its images exactly
as it saw them in training:

1. Decode with `projects.imaging` (EXIF orientation applied, RGB). A JPEG is
   decoded at a reduced scale (`draft`) when it is at least twice the size
   needed; an image that arrives already decoded is reduced by the same
   power-of-two factor, so both routes give the same pixels' scale.
2. Take the central square whose side is `crop_fraction` of the shorter side
   (224/256 for a 224-pixel network, as the EfficientNet-Lite weights were
   evaluated) and resize it to the network's input size with bicubic filtering.
3. Scale pixels as (pixel - 127) / 128, in NCHW channels-last memory.

The cache key of an embedding names the backbone and this preprocessing
(`PREPROCESS_VERSION`); change the version whenever the steps above change so
old cached embeddings are not reused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from PIL import Image

PREPROCESS_VERSION = "p1"
# The EfficientNet evaluation crop: the network's size out of size + 32.
CROP_PADDING = 32


@dataclass(frozen=True)
class PreprocessSpec:
    image_size: int

    @property
    def crop_fraction(self) -> float:
        return self.image_size / (self.image_size + CROP_PADDING)

    @property
    def decode_size(self) -> int:
        """The shorter side an image needs before cropping and resizing."""
        return math.ceil(self.image_size / self.crop_fraction)

    def as_dict(self) -> dict:
        return {
            "image_size": self.image_size,
            "crop_fraction": self.crop_fraction,
            "resample": "bicubic",
            "normalisation": "(pixel - 127) / 128",
            "version": PREPROCESS_VERSION,
        }


def crop_box(
    width: int, height: int, spec: PreprocessSpec
) -> tuple[float, float, float, float]:
    """The central square the network looks at, as (left, top, right, bottom)."""
    side = min(width, height) * spec.crop_fraction
    left = (width - side) / 2
    top = (height - side) / 2
    return left, top, left + side, top + side


def prepare(image: Image.Image, spec: PreprocessSpec) -> Image.Image:
    """Any RGB photo -> the square, resized image the network takes."""
    if image.mode != "RGB":
        image = image.convert("RGB")

    factor = 1
    shorter = min(image.size)
    while factor < 8 and shorter // (factor * 2) >= spec.decode_size:
        factor *= 2
    if factor > 1:
        image = image.reduce(factor)

    return image.resize(
        (spec.image_size, spec.image_size),
        Image.Resampling.BICUBIC,
        box=crop_box(*image.size, spec),
    )


def load_stored(relative_path: str, spec: PreprocessSpec) -> Image.Image:
    """A stored image (path under MEDIA_ROOT), decoded fast and prepared."""
    from projects.imaging import load_stored_image

    size = spec.decode_size
    return prepare(load_stored_image(relative_path, draft_size=(size, size)), spec)


def decode(data: bytes, spec: PreprocessSpec) -> Image.Image:
    """Uploaded bytes, decoded fast and prepared; raises ImageRejected."""
    from projects.imaging import decode_image

    size = spec.decode_size
    return prepare(decode_image(data, draft_size=(size, size)).image, spec)


def to_tensor(images: list[Image.Image]):
    """Prepared images -> normalised float tensor (N, 3, S, S), channels-last."""
    import numpy as np
    import torch

    from training.ml.backbone import normalise

    batch = torch.from_numpy(np.stack([np.asarray(image) for image in images]))
    # NHWC viewed as NCHW is already channels-last in memory.
    return normalise(batch.permute(0, 3, 1, 2).float())
