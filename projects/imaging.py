"""Turn the bytes of an uploaded file into a clean 8-bit RGB picture, or refuse it.

Every way into a project (browser upload, zip, command line) goes through
`decode_image()`, so every stored image has passed the same checks: a format
known from its content rather than its name, sizes within the limits checked
before any pixel is decoded, data complete enough to decode in full, and colours
normalised to what training expects.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from django.conf import settings
from PIL import ExifTags, Image, ImageOps

from projects import storage

ACCEPTED_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF")
ACCEPTED_FORMATS_TEXT = "JPEG, PNG, BMP, GIF, WebP or TIFF"

# The extension an original is stored under, from its detected format.
EXTENSIONS = {
    "JPEG": "jpg",
    "PNG": "png",
    "BMP": "bmp",
    "GIF": "gif",
    "WEBP": "webp",
    "TIFF": "tiff",
}
CONTENT_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "BMP": "image/bmp",
    "GIF": "image/gif",
    "WEBP": "image/webp",
    "TIFF": "image/tiff",
}

# EXIF orientations that turn the picture a quarter: width and height swap.
_SWAPPING_ORIENTATIONS = {5, 6, 7, 8}
# A palette image with this few colours is more likely a drawing or a
# placeholder than a photo; the report says so.
_FEW_COLOURS = 64
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}


class ImageRejected(Exception):
    """A file that cannot become an image; str() is a reason a person understands."""


@dataclass
class DecodedImage:
    image: Image.Image
    format: str
    width: int
    height: int
    notes: list[str] = field(default_factory=list)

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.format]


def decode_image(
    data: bytes, *, draft_size: tuple[int, int] | None = None
) -> DecodedImage:
    """Decode `data` fully into an upright 8-bit RGB image, or raise ImageRejected.

    With `draft_size`, a JPEG is decoded at the smallest scale (1/2, 1/4, 1/8)
    that still covers that size, which is much faster; `width` and `height` are
    always those of the full image.
    """
    _check_file_size(len(data))
    picture = _open(data)
    file_format = "JPEG" if picture.format == "MPO" else picture.format

    width, height = picture.size
    _check_pixels(width, height)
    notes = []

    try:
        frames = getattr(picture, "n_frames", 1)
        if frames > 1:
            notes.append(_frames_note(picture.format, frames))
            picture.seek(0)

        orientation = _orientation(picture)
        if orientation in _SWAPPING_ORIENTATIONS:
            width, height = height, width
        if orientation not in (None, 1):
            notes.append("turned upright using its EXIF orientation")

        if draft_size and file_format == "JPEG":
            if orientation in _SWAPPING_ORIENTATIONS:
                draft_size = (draft_size[1], draft_size[0])
            picture.draft("RGB", draft_size)

        picture.load()
        if orientation not in (None, 1):
            ImageOps.exif_transpose(picture, in_place=True)
        image = _to_rgb(picture, notes)
    except ImageRejected:
        raise
    except Image.DecompressionBombError:
        raise _too_many_pixels(width, height)
    except Exception as exc:
        # Pillow reports broken files through many exception types.
        if isinstance(exc, OSError) and "truncated" in str(exc):
            raise ImageRejected(
                "The image is incomplete: the file ends before the picture does "
                "(it may have been cut off while copying or downloading)."
            )
        detail = str(exc).rstrip(".") or type(exc).__name__
        raise ImageRejected(f"The {file_format} data is damaged: {detail}.")

    return DecodedImage(
        image=image, format=file_format, width=width, height=height, notes=notes
    )


def load_stored_image(
    relative_path: str, draft_size: tuple[int, int] | None = None
) -> Image.Image:
    """The RGB picture of a stored original (relative to MEDIA_ROOT)."""
    data = storage.media_path(relative_path).read_bytes()
    return decode_image(data, draft_size=draft_size).image


def _check_file_size(size: int) -> None:
    if size == 0:
        raise ImageRejected("The file is empty.")

    limit = settings.IMAGE_MAX_BYTES
    if size > limit:
        raise ImageRejected(
            f"The file is {_megabytes(size)}; files over {_megabytes(limit)} "
            f"are refused."
        )


def _check_pixels(width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageRejected(f"The image declares an impossible size, {width}×{height}.")
    if width * height > settings.IMAGE_MAX_PIXELS:
        raise _too_many_pixels(width, height)


def _too_many_pixels(width: int, height: int) -> ImageRejected:
    limit = settings.IMAGE_MAX_PIXELS
    return ImageRejected(
        f"The image is {width}×{height} pixels ({_megapixels(width * height)}); "
        f"images over {_megapixels(limit)} are refused."
    )


def _open(data: bytes) -> Image.Image:
    """Identify the format from the content and read the header, nothing more."""
    try:
        return Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except Image.DecompressionBombError:
        raise ImageRejected(
            f"The image declares more pixels than the limit of "
            f"{_megapixels(settings.IMAGE_MAX_PIXELS)}."
        )
    except Exception:
        # Not one of ours; below, find out what it is to say so.
        pass

    damaged = _accepted_format_by_signature(data)
    if damaged:
        raise ImageRejected(
            f"The {damaged} file is damaged or incomplete: its header cannot be read."
        )
    known = _identify_other_format(data)
    if known:
        raise ImageRejected(
            f"{known} images are not accepted. Use {ACCEPTED_FORMATS_TEXT}."
        )
    raise ImageRejected(f"This is not an image: {_describe_content(data)}")


def _accepted_format_by_signature(data: bytes) -> str | None:
    """The accepted format whose magic bytes `data` starts with, if any."""
    head = data[:16]
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "WebP"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "TIFF"
    return None


def _identify_other_format(data: bytes) -> str | None:
    """The name of an image format Pillow knows but the studio does not accept."""
    try:
        with Image.open(io.BytesIO(data)) as other:
            return other.format
    except Image.DecompressionBombError:
        return None
    except Exception:
        pass

    head = data[:32]
    if head[4:8] == b"ftyp" and head[8:12] in {
        b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1"
    }:  # fmt: skip
        return "HEIC/HEIF"
    return None


def _describe_content(data: bytes) -> str:
    head = data[:1024]
    if head.startswith(b"%PDF"):
        return "it is a PDF document."
    if head.startswith(b"PK\x03\x04"):
        return "it is a zip archive (import it as a zip instead)."
    if b"<svg" in head.lower():
        return "it is an SVG drawing."
    if b"\x00" not in head:
        try:
            head.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            return "it is a text file."
    return "its content is not in any known image format."


def _frames_note(source_format: str, frames: int) -> str:
    if source_format == "TIFF":
        return f"multi-page TIFF: first of {frames} pages used"
    if source_format == "MPO":
        return f"multi-picture JPEG: first of {frames} pictures used"
    return f"animated {source_format}: first of {frames} frames used"


def _orientation(picture: Image.Image) -> int | None:
    try:
        return picture.getexif().get(ExifTags.Base.Orientation)
    except Exception:
        # A broken EXIF block is no reason to refuse the photo.
        return None


def _to_rgb(picture: Image.Image, notes: list[str]) -> Image.Image:
    mode = picture.mode
    if mode == "RGB" and "transparency" not in picture.info:
        return picture

    if mode in _SIXTEEN_BIT_MODES:
        notes.append("16-bit image scaled to 8 bits")
        gray = picture.convert("I").point(lambda v: v / 257 + 0.5).convert("L")
        return gray.convert("RGB")
    if mode in ("I", "F"):
        return _stretch_to_8_bit(picture, notes).convert("RGB")

    if mode == "P":
        colours = picture.getcolors(256)
        if colours is not None:
            count = len(colours)
            note = (
                f"palette image with {count} colour{'s' if count != 1 else ''} "
                f"converted to RGB"
            )
            if len(colours) <= _FEW_COLOURS:
                note += "; check that it is a photo, not a drawing or placeholder"
            notes.append(note)
        has_alpha = "transparency" in picture.info or picture.palette.mode == "RGBA"
        if not has_alpha:
            return picture.convert("RGB")
        return _on_white(picture.convert("RGBA"), notes)

    if mode in _ALPHA_MODES or "transparency" in picture.info:
        return _on_white(picture.convert("RGBA"), notes)

    if mode == "CMYK":
        notes.append("CMYK colours converted to RGB")
    try:
        return picture.convert("RGB")
    except ValueError:
        raise ImageRejected(f"Images in the {mode} colour mode are not supported.")


def _on_white(rgba: Image.Image, notes: list[str]) -> Image.Image:
    """Composite on white: a transparent background must not turn black."""
    alpha = rgba.getchannel("A")
    if alpha.getextrema()[0] < 255:
        notes.append("transparent areas filled with white")
    background = Image.new("RGB", rgba.size, (255, 255, 255))
    background.paste(rgba.convert("RGB"), mask=alpha)
    return background


def _stretch_to_8_bit(picture: Image.Image, notes: list[str]) -> Image.Image:
    """Scale 32-bit integer or float pixels into 0..255 without clipping."""
    low, high = picture.getextrema()
    if picture.mode == "I" and low >= 0 and high <= 65535:
        notes.append("16-bit image scaled to 8 bits")
        return picture.point(lambda v: v / 257 + 0.5).convert("L")
    if picture.mode == "F" and low >= 0 and high <= 1:
        low, high = 0.0, 1.0

    notes.append(f"{picture.mode} pixel values {low}..{high} scaled to 8 bits")
    if high == low:
        return Image.new("L", picture.size, 0)
    scale = 255 / (high - low)
    offset = -low * scale + 0.5
    return picture.convert("F").point(lambda v: v * scale + offset).convert("L")


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1_000_000:.1f} megapixels"
