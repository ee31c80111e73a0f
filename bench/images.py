"""Photo sets the benchmarks import: real photos and transformed copies of them.

A copy is flipped, cropped a little, sometimes rotated and re-encoded at
another quality, so it has different bytes (the studio would skip an exact
duplicate) and looks like another shot of the same subject.
"""

from __future__ import annotations

import hashlib
import shutil
from io import BytesIO
from pathlib import Path

from PIL import Image, ImageOps

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp"}


def labeled_photos(root: Path) -> list[tuple[str, Path]]:
    """(label, path) for every photo under root/<split>/<label>/ or root/<label>/.

    Sorted by label then name, so every run picks the same photos.
    """
    photos = []
    for path in root.rglob("*"):
        if path.is_file() and path.suffix.lower() in PHOTO_SUFFIXES:
            photos.append((path.parent.name, path))
    return sorted(photos, key=lambda item: (item[0], item[1].name, str(item[1])))


def transformed_copy(source: Path, variant: int) -> bytes:
    """JPEG bytes of a changed copy of `source`; `variant` picks the change."""
    with Image.open(source) as image:
        image = ImageOps.exif_transpose(image).convert("RGB")
    if variant % 2 == 0:
        image = ImageOps.mirror(image)
    if variant % 3 == 1:
        image = image.rotate(4 + variant % 7, resample=Image.BICUBIC, expand=False)
    # Crop 2% to 9% off the edges, a different amount for each variant.
    margin = 0.02 + 0.01 * (variant % 8)
    width, height = image.size
    dx, dy = int(width * margin / 2), int(height * margin / 2)
    image = image.crop((dx, dy + variant % 3, width - dx, height - dy))
    quality = (92, 85, 78, 70)[variant % 4]

    buffer = BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def write_photo_set(
    sources: list[tuple[str, Path]],
    total: int,
    out_dir: Path,
    *,
    copies_only: bool = False,
    variant_base: int = 0,
) -> list[Path]:
    """Write `total` files into out_dir/<label>/: first the sources as they are
    (unless copies_only), then transformed copies of them, round robin, until
    there are `total`.

    Returns the written paths. Every file has different bytes.
    """
    written: list[Path] = []
    seen: set[str] = set()

    for label, source in [] if copies_only else sources:
        if len(written) == total:
            break
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        target = out_dir / label / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        written.append(target)

    jpegs = [(label, p) for label, p in sources if p.suffix.lower() != ".gif"]
    attempt = 0
    while len(written) < total:
        label, source = jpegs[attempt % len(jpegs)]
        variant = variant_base + attempt
        attempt += 1
        data = transformed_copy(source, variant)
        digest = hashlib.sha256(data).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        target = out_dir / label / f"{source.stem}-copy{variant}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        written.append(target)
    return written


def typical_photo(root: Path, size=(500, 375)) -> Path:
    """The first photo (by name) of the most typical size in the data set."""
    for _, path in labeled_photos(root):
        if path.suffix.lower() in {".jpg", ".jpeg"}:
            with Image.open(path) as image:
                if image.size == size:
                    return path
    raise RuntimeError(f"No {size[0]}x{size[1]} JPEG under {root}")
