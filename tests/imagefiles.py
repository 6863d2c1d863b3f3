"""Real image files for tests: good ones in many formats and modes, and the bad ones users meet."""

from __future__ import annotations

import io
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared(name: str) -> Path:
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"shared dataset {path} is absent (it lives beside the repo, never in it)")
    return path


def save(path: Path, image: Image.Image, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, fmt)
    return path


def huge_png(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of zeros written row by row: 400 Mpx costs ~50 kB and a fraction of a second."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # bit depth 1, greyscale
    compressor = zlib.compressobj(9)
    row = b"\0" * (1 + (width + 7) // 8)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def labelled_folder(root: Path, per_label: int, shape: tuple[int, int], copy: str) -> Path:
    """`root/no/` and `root/yes/`, each with `per_label` seeded greyscale noise PNGs (`shape`: rows, columns)
    named 0.png, 1.png, ..., and an exact copy of no/0.png as `yes/<copy>`."""
    rng = np.random.default_rng(0)
    for label in ("no", "yes"):
        (root / label).mkdir(parents=True)
        for i in range(per_label):
            Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(root / label / f"{i}.png")
    shutil.copy(root / "no" / "0.png", root / "yes" / copy)
    return root


def messy_folder(root: Path) -> Path:
    """Good images in several formats, modes and sizes, and four bad files."""
    save(root / "good" / "grey.png", Image.new("L", (40, 20), 50))
    save(root / "good" / "colour.jpg", Image.new("RGB", (33, 47), (250, 10, 10)))
    save(root / "good" / "sixteen.tif", Image.fromarray(np.full((16, 16), 65535, np.uint16)))
    save(root / "good" / "palette.gif", Image.new("P", (9, 9), 0))
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))
    buffer = io.BytesIO()
    noise.save(buffer, "JPEG")
    (root / "bad").mkdir()
    (root / "bad" / "truncated.jpg").write_bytes(buffer.getvalue()[:1000])
    (root / "bad" / "empty.png").write_bytes(b"")
    (root / "bad" / "text.png").write_text("hello, I am not an image\n")
    (root / "bad" / "huge.png").write_bytes(huge_png(20000, 20000))
    return root
