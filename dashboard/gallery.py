"""Context images for the eye: the gallery (original | invert | flip | equalize) and a sample's context image.

The same `engine.augment.apply_context` the model trains with, applied to stored thumbnails, so what a
user judges (distinctiveness, alignment) is what training will see. Small images are enlarged with
nearest-neighbour sampling so an 8×8 digit shows its pixels instead of a blur.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

from engine.config import CONTEXTS

DISPLAY_SIDE = 112  # pixels: thumbnails smaller than this are enlarged (nearest neighbour) for display


def decode_png(png: bytes) -> np.ndarray:
    """PNG bytes → uint8 (H, W, 3) RGB (greyscale replicated, alpha dropped)."""
    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


FRAME_GREY = 190  # a 1-pixel grey frame, so a white context image (an inverted black one) has an edge


def enlarge(pixels: np.ndarray, side: int = DISPLAY_SIDE) -> np.ndarray:
    """Repeat pixels so the longer side is at least `side` (nearest neighbour; never shrinks), framed in grey."""
    factor = max(1, int(np.ceil(side / max(pixels.shape[:2]))))
    big = pixels.repeat(factor, axis=0).repeat(factor, axis=1) if factor > 1 else pixels
    return np.pad(big, ((1, 1), (1, 1), (0, 0)), constant_values=FRAME_GREY)


def apply_contexts(images: Sequence[np.ndarray], contexts: Sequence[str] = CONTEXTS) -> list[dict[str, np.ndarray]]:
    """For each uint8 (H, W, 3) image: {"original": it, context: t_c(it) for each context}, all uint8 (H, W, 3).

    Images may differ in size; each is processed on its own (a handful, on the CPU).
    """
    import torch  # imported here: only the gallery and a case view need it

    from engine.augment import apply_context

    rows = []
    for pixels in images:
        x = (
            torch.from_numpy(np.array(pixels, dtype=np.uint8)).permute(2, 0, 1)[None].float().div_(255.0)
        )  # (1, 3, H, W)
        row = {"original": pixels}
        for context in contexts:
            out = apply_context(x, context)[0].permute(1, 2, 0).mul(255.0).round().clamp(0, 255)
            row[context] = out.to(torch.uint8).numpy()
        rows.append(row)
    return rows


def context_gallery(pngs: Sequence[bytes], contexts: Sequence[str] = CONTEXTS) -> list[dict[str, np.ndarray]]:
    """Thumbnails (PNG bytes) → one row per sample of display-ready images: original and each context."""
    rows = apply_contexts([decode_png(png) for png in pngs], contexts)
    return [{name: enlarge(image) for name, image in row.items()} for row in rows]


def context_image(png: bytes, context: str) -> np.ndarray:
    """A sample's context image t_c(x) from its thumbnail, enlarged for display: uint8 (H, W, 3)."""
    return enlarge(apply_contexts([decode_png(png)], [context])[0][context])


def display(png: bytes) -> np.ndarray:
    """A thumbnail as display pixels, enlarged when small."""
    return enlarge(decode_png(png))
