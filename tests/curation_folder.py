"""A folder with planted curation problems: unreadable files, exact copies, near duplicates (a JPEG
re-encoded at quality 70, a 95 % centre crop resized back) among unrelated digits."""

from __future__ import annotations

import functools
import io
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

# what each planted file is, by its key in the folder: the reason the Data page, Review and the export give
UNREADABLE = {
    "bad/truncated.jpg": "truncated image data",
    "bad/empty.png": "empty file",
    "bad/text.png": "not an image",
}
EXACT = {"twins/three-again.png": "digits/3.png"}  # copy -> the original it duplicates
NEAR = {"near/five-reencoded.jpg": "digits/5.png", "near/seven-cropped.png": "digits/7.png"}  # -> original


def digit(index: int, side: int = 64) -> Image.Image:
    """The first scikit-learn digit of class `index`, upscaled to side × side greyscale."""
    data = _digits()
    first = int(np.flatnonzero(data.target == index)[0])
    return Image.fromarray((data.images[first] * 16).clip(0, 255).astype(np.uint8)).resize((side, side), Image.BICUBIC)


@functools.cache
def _digits():
    return load_digits()


def centre_crop(image: Image.Image, fraction: float = 0.95) -> Image.Image:
    """The centre `fraction` of each side, resized back to the original size."""
    width, height = image.size
    w, h = round(width * fraction), round(height * fraction)
    left, top = (width - w) // 2, (height - h) // 2
    return image.crop((left, top, left + w, top + h)).resize((width, height), Image.BICUBIC)


def jpeg(image: Image.Image, quality: int = 70) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def curation_folder(root: Path) -> Path:
    """root/digits/0..9.png (unrelated), plus every planted file of UNREADABLE, EXACT and NEAR."""
    for folder in ("digits", "bad", "twins", "near"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for index in range(10):
        digit(index).save(root / "digits" / f"{index}.png")
    (root / "twins" / "three-again.png").write_bytes((root / "digits" / "3.png").read_bytes())
    (root / "near" / "five-reencoded.jpg").write_bytes(jpeg(digit(5)))
    centre_crop(digit(7)).save(root / "near" / "seven-cropped.png")
    (root / "bad" / "truncated.jpg").write_bytes(jpeg(digit(1))[:300])
    (root / "bad" / "empty.png").write_bytes(b"")
    (root / "bad" / "text.png").write_text("hello, I am not an image\n")
    return root
