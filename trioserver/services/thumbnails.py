"""Thumbnail rendering with Pillow: pure, blocking functions run in a worker thread.

Only PNG, JPEG, GIF and WebP are ever decoded (Pillow is told which decoders it may use), and an
image's pixel count is checked from its header before any pixel is decoded, so a small file that
claims to be a huge image (a decompression bomb) is refused without being expanded.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from trioserver.errors import Codes, MatrixError

THUMBNAIL_TYPES = {
    "image/png": "PNG",
    "image/jpeg": "JPEG",
    "image/gif": "GIF",
    "image/webp": "WEBP",
}
ANIMATED_TYPES = frozenset({"image/gif", "image/webp"})
METHODS = ("crop", "scale")
MAX_DIMENSION = 1600


@dataclass(frozen=True)
class Thumbnail:
    data: bytes
    content_type: str


def configure(max_image_pixels: int) -> None:
    """Make Pillow itself refuse anything over the limit (DecompressionBombError)."""
    # Pillow warns at MAX_IMAGE_PIXELS and raises at twice that; warn/raise at the limit.
    Image.MAX_IMAGE_PIXELS = max_image_pixels // 2


def too_big() -> MatrixError:
    return MatrixError(413, Codes.TOO_LARGE, "The image is too large to thumbnail")


def _open(source: Path, content_type: str, max_pixels: int) -> Image.Image:
    fmt = THUMBNAIL_TYPES.get(content_type)
    if fmt is None:
        raise MatrixError(400, Codes.UNKNOWN, "This content type cannot be thumbnailed")
    try:
        image = Image.open(source, formats=[fmt])
    except Image.DecompressionBombError:
        raise too_big() from None
    except (OSError, ValueError, SyntaxError):
        raise MatrixError(400, Codes.UNKNOWN, "The content is not a valid image") from None
    width, height = image.size
    if width * height > max_pixels:
        raise too_big()
    return image


def is_animated(source: Path, content_type: str, max_pixels: int) -> bool:
    if content_type not in ANIMATED_TYPES:
        return False
    with _open(source, content_type, max_pixels) as image:
        return bool(getattr(image, "is_animated", False))


def render(source: Path, content_type: str, width: int, height: int, method: str,
           max_pixels: int) -> Thumbnail:
    """A `method` thumbnail of at most width x height (crop: exactly, when the source allows).

    JPEG stays JPEG; everything else (first frame of an animation included) becomes PNG so
    transparency survives. Images are never scaled up.
    """
    with _open(source, content_type, max_pixels) as image:
        try:
            image.seek(0)
            image.load()
        except Image.DecompressionBombError:
            raise too_big() from None
        except (OSError, ValueError, SyntaxError):
            raise MatrixError(400, Codes.UNKNOWN, "The content is not a valid image") from None
        frame = ImageOps.exif_transpose(image) if content_type == "image/jpeg" else image
        if content_type == "image/jpeg":
            frame = frame.convert("RGB")
        elif frame.mode not in ("RGB", "RGBA", "L", "LA"):
            frame = frame.convert("RGBA")
        if method == "crop":
            target = (min(width, frame.width), min(height, frame.height))
            out = ImageOps.fit(frame, target, Image.Resampling.LANCZOS)
        else:
            out = frame.copy()
            out.thumbnail((width, height), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        if content_type == "image/jpeg":
            out.save(buf, "JPEG", quality=85, optimize=True)
            return Thumbnail(buf.getvalue(), "image/jpeg")
        out.save(buf, "PNG", optimize=True)
        return Thumbnail(buf.getvalue(), "image/png")
