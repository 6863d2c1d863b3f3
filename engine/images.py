"""Decoding and normalisation of one image: bytes or an array in, uint8 pixels (C, S, S) out.

Every source funnels through `decode`, so one place decides how odd files behave: 16-bit greyscale is
scaled to 8 bits, alpha is composited on black, palettes and CMYK become RGB, grey-stored-as-RGB becomes
one channel, an EXIF orientation is applied, and anything that cannot be decoded raises `UnreadableImage`
with a reason a user can read.
Resizing follows the paper: resize the short side, then center-crop a square.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Our own per-call guard (`max_pixels`, checked from the header before any decode) replaces PIL's global
# one, which would warn at 89 Mpx and raise at 179 Mpx whatever limit the user chose.
Image.MAX_IMAGE_PIXELS = None

EXIF_ORIENTATION = 0x0112  # the tag cameras and phones set instead of rotating the pixels
GREY_TOLERANCE = 2  # RGB images whose channels differ by at most this much everywhere are greyscale
_PIL_BOMB = (Image.DecompressionBombError, Image.DecompressionBombWarning)


class UnreadableImage(Exception):
    """An image that cannot be used; `reason` is one human-readable line ("truncated image data")."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def open_image(data: bytes) -> Image.Image:
    """Open encoded image bytes lazily: only the header is parsed, no pixels are decoded."""
    if len(data) == 0:
        raise UnreadableImage("empty file (0 bytes)")
    try:
        return Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise UnreadableImage("not an image: cannot identify image file") from None
    except _PIL_BOMB as error:  # only if someone restored PIL's global limit
        raise UnreadableImage(f"image too large: {error}") from None
    except Exception as error:  # PIL's plugins raise many types (SyntaxError, struct.error, ...) on bad headers
        raise UnreadableImage(_failure("cannot read image header", error)) from None


def check_size(width: int, height: int, max_pixels: int) -> None:
    """Raise `UnreadableImage` when width × height exceeds `max_pixels` (decompression-bomb guard)."""
    if width * height > max_pixels:
        raise UnreadableImage(
            f"image too large: {width}×{height} = {_pixels(width * height)} > limit {_pixels(max_pixels)}"
        )


def load_pixels(image: Image.Image, *, max_pixels: int, min_side: int | None = None) -> Image.Image:
    """Decode the pixels of a lazily opened image after checking its size from the header.

    `min_side` (pixels) lets a JPEG decode at a reduced DCT scale (`Image.draft`) as long as both sides
    stay at least that long: decoding a 4000 px photo for a 224 px crop is then several times faster.
    """
    check_size(image.width, image.height, max_pixels)
    try:
        if min_side is not None and image.format == "JPEG":
            image.draft(image.mode, (min_side, min_side))
        image.load()
    except _PIL_BOMB as error:
        raise UnreadableImage(f"image too large: {error}") from None
    except Exception as error:
        raise UnreadableImage(_failure("cannot decode image", error)) from None
    return image


def decode(
    raw: bytes | Image.Image | np.ndarray,
    image_size: int,
    crop_fraction: float = 1.0,
    max_pixels: int = 100_000_000,
) -> np.ndarray:
    """Decode one raw image into uint8 pixels (C, S, S) with S = `image_size`.

    `raw` is encoded bytes, a lazily opened PIL image (header read, pixels not yet) or an array
    (H, W) / (H, W, 3) from an array source. C = 1 for greyscale, and for RGB whose channels are equal
    within `GREY_TOLERANCE`; else C = 3. The short side is resized to round(S / crop_fraction) and the
    center S × S is kept (crop_fraction 0.875 = the paper's resize 256 → crop 224).
    Raises `UnreadableImage` for empty, truncated, non-image or too-large (> `max_pixels`) input.
    """
    if not 0.0 < crop_fraction <= 1.0:
        raise ValueError(f"crop_fraction must be in (0, 1], got {crop_fraction}")
    short_side = round(image_size / crop_fraction)
    if isinstance(raw, np.ndarray):
        image = _from_array(raw)
        check_size(image.width, image.height, max_pixels)
    else:
        image = open_image(raw) if isinstance(raw, bytes | bytearray | memoryview) else raw
        image = load_pixels(image, max_pixels=max_pixels, min_side=short_side)
    try:
        image = _upright(image)
        image = _to_l_or_rgb(image)
        image = _resize_center_crop(image, image_size, short_side)
    except UnreadableImage:
        raise
    except Exception as error:  # a conversion PIL cannot do for this file's mode
        raise UnreadableImage(_failure("cannot decode image", error)) from None
    pixels = np.asarray(image, dtype=np.uint8)
    if pixels.ndim == 2:
        return pixels[None].copy()  # (1, S, S)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))  # (H, W, 3) -> (3, S, S)


def _upright(image: Image.Image) -> Image.Image:
    """The image as it is meant to be seen: a photo stored sideways with an EXIF orientation is turned,
    so the center crop, the model and the thumbnails all see what a viewer shows. Images without the tag
    (almost all) are returned as they are, without a copy."""
    if image.getexif().get(EXIF_ORIENTATION, 1) in (0, 1):
        return image
    return ImageOps.exif_transpose(image)


def _from_array(array: np.ndarray) -> Image.Image:
    """An array (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) as a PIL image of the matching mode."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise UnreadableImage(f"not an image array: shape {array.shape}")
    if array.dtype.kind not in "buif":  # bool, unsigned, signed, float
        raise UnreadableImage(f"not an image array: {array.dtype} values")
    if array.dtype == np.uint8 or array.dtype == bool:
        return Image.fromarray(np.ascontiguousarray(array))
    if array.ndim == 3:
        raise UnreadableImage(f"colour arrays must be uint8, got {array.dtype}")
    if array.dtype == np.uint16:
        return Image.fromarray(np.ascontiguousarray(array))  # mode I;16
    if np.issubdtype(array.dtype, np.integer):
        return Image.fromarray(array.astype(np.int32))  # mode I
    return Image.fromarray(array.astype(np.float32))  # mode F


def _to_l_or_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode as 8-bit L (greyscale) or RGB, alpha composited on black."""
    mode = image.mode
    if mode == "L":
        return image
    if mode == "1":
        return image.convert("L")
    if mode.startswith("I") or mode == "F":
        return Image.fromarray(_high_depth_to_uint8(np.asarray(image), mode))
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
        mode = image.mode
    if mode in ("LA", "La", "RGBA", "RGBa"):
        image = _composite_on_black(image)
    elif mode != "RGB":
        image = image.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX
    if image.mode == "RGB" and _is_grey(np.asarray(image)):
        return image.convert("L")
    return image


def _high_depth_to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """16/32-bit integer or float greyscale (H, W) to uint8.

    Integers in 0..65535 (16-bit files; PIL opens some as mode I) map their full range to 0..255; floats
    in 0..1 scale by 255; anything else (signed data, HU values) is stretched from its min to its max.
    """
    values = values.astype(np.float64)
    finite = values[np.isfinite(values)]
    if not finite.size:  # all black would pass for an image and train; nothing is there to see
        raise UnreadableImage("no pixel values: every value is NaN or infinite")
    low, high = float(finite.min()), float(finite.max())
    if mode != "F" and low >= 0 and high <= 65535:
        scaled = values / 257.0  # 65535 / 255 = 257 exactly
    elif mode == "F" and low >= 0 and high <= 1:
        scaled = values * 255.0
    elif high > low:
        scaled = (values - low) * (255.0 / (high - low))
    else:
        scaled = np.zeros_like(values)
    return np.clip(np.nan_to_num(np.rint(scaled)), 0, 255).astype(np.uint8)


def _composite_on_black(image: Image.Image) -> Image.Image:
    """Drop alpha by compositing on black: each colour value times alpha / 255."""
    if image.mode in ("La", "RGBa"):  # already premultiplied
        return image.convert("L" if image.mode == "La" else "RGB")
    values = np.asarray(image).astype(np.uint16)
    colour, alpha = values[:, :, :-1], values[:, :, -1:]
    blended = ((colour * alpha + 127) // 255).astype(np.uint8)
    return Image.fromarray(blended[:, :, 0] if blended.shape[2] == 1 else blended)


def _is_grey(rgb: np.ndarray) -> bool:
    """True when the channels of an (H, W, 3) uint8 image are equal within `GREY_TOLERANCE` everywhere."""
    spread = rgb.max(axis=2).astype(np.int16) - rgb.min(axis=2)
    return int(spread.max(initial=0)) <= GREY_TOLERANCE


def _resize_center_crop(image: Image.Image, size: int, short_side: int) -> Image.Image:
    """Resize so the short side is `short_side` pixels (antialiased), then keep the center size × size."""
    width, height = image.size
    if width <= height:
        new_size = (short_side, max(short_side, round(height * short_side / width)))
    else:
        new_size = (max(short_side, round(width * short_side / height)), short_side)
    if new_size != image.size:
        # reducing_gap first shrinks by an integer factor with a box filter: same look, much faster on big images
        image = image.resize(new_size, Image.Resampling.BICUBIC, reducing_gap=3.0)
    # Same rounding as torchvision's CenterCrop, which the paper's pipeline uses.
    left = int(round((new_size[0] - size) / 2.0))
    top = int(round((new_size[1] - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def _pixels(count: int) -> str:
    return f"{count / 1e6:.4g} Mpx" if count >= 1_000_000 else f"{count} px"


def _failure(what: str, error: Exception) -> str:
    """A one-line reason for a PIL failure; truncation gets one fixed wording whatever the format."""
    message = str(error)
    if isinstance(error, EOFError) or "truncated" in message.lower():
        return "truncated image data"
    return f"{what}: {message or type(error).__name__}"
