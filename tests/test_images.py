"""Decoding and normalisation: every mode and format to uint8 (C, S, S), and reasons for bad files."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from PIL import Image

from engine.images import UnreadableImage, decode
from tests.imagefiles import huge_png


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def solid(mode: str, value, size=(30, 20)) -> Image.Image:
    """A plain image; palette images get a palette whose entry 1 is `value` (an RGB triple)."""
    if mode == "P":
        image = Image.new("P", size, 1)
        image.putpalette([0, 0, 0, *value] + [0, 0, 0] * 254)
        return image
    if mode in ("I;16", "I", "F"):
        dtype = {"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]
        return Image.fromarray(np.full(size[::-1], value, dtype=dtype))
    return Image.new(mode, size, value)


# (format, mode, value written, channels expected, value expected per channel, tolerance)
CASES = [
    ("PNG", "L", 77, 1, [77], 0),
    ("PNG", "1", 1, 1, [255], 0),
    ("PNG", "I;16", 32896, 1, [128], 0),  # 16-bit full range 0..65535 maps to 0..255
    ("PNG", "RGB", (200, 100, 50), 3, [200, 100, 50], 0),
    ("PNG", "RGBA", (200, 100, 50, 128), 3, [100, 50, 25], 0),  # composited on black
    ("PNG", "LA", (200, 128), 1, [100], 0),
    ("PNG", "P", (10, 200, 30), 3, [10, 200, 30], 0),
    ("PNG", "P", (90, 90, 90), 1, [90], 0),  # a grey palette is greyscale
    ("JPEG", "L", 140, 1, [140], 1),
    ("JPEG", "RGB", (200, 100, 50), 3, [200, 100, 50], 3),
    ("JPEG", "CMYK", (0, 255, 255, 0), 3, [255, 0, 0], 3),  # pure red in CMYK
    ("BMP", "1", 1, 1, [255], 0),
    ("BMP", "L", 33, 1, [33], 0),
    ("BMP", "RGB", (1, 2, 250), 3, [1, 2, 250], 0),
    ("BMP", "P", (250, 0, 0), 3, [250, 0, 0], 0),
    ("GIF", "P", (0, 0, 255), 3, [0, 0, 255], 0),
    ("GIF", "L", 60, 1, [60], 0),
    ("TIFF", "I;16", 65535, 1, [255], 0),
    ("TIFF", "I", 25700, 1, [100], 0),  # 32-bit ints holding 16-bit data: 25700 / 257 = 100
    ("TIFF", "F", 0.5, 1, [128], 0),  # floats in 0..1 scale by 255
    ("TIFF", "CMYK", (0, 0, 0, 0), 1, [255], 0),  # no ink = white = grey
    ("TIFF", "LA", (80, 255), 1, [80], 0),
    ("TIFF", "RGBA", (10, 20, 30, 0), 1, [0], 0),  # fully transparent = black
    ("WEBP", "RGB", (20, 200, 20), 3, [20, 200, 20], 4),
    ("WEBP", "RGBA", (200, 200, 200, 255), 1, [200], 2),
]


@pytest.mark.parametrize(("fmt", "mode", "value", "channels", "expected", "tolerance"), CASES)
def test_every_mode_decodes_to_the_right_channels_and_values(fmt, mode, value, channels, expected, tolerance):
    data = encode(solid(mode, value), fmt, **({"lossless": True} if fmt == "WEBP" and tolerance == 0 else {}))
    pixels = decode(data, image_size=16)
    assert pixels.dtype == np.uint8
    assert pixels.shape == (channels, 16, 16)
    for channel, want in zip(pixels, expected, strict=True):
        assert np.abs(channel.astype(int) - want).max() <= tolerance, (channel.min(), channel.max(), want)


def test_palette_transparency_is_composited_on_black():
    image = Image.new("P", (10, 10), 1)
    image.putpalette([0, 0, 0, 250, 250, 250] + [0, 0, 0] * 254)
    image.paste(2, (0, 0, 5, 10))  # left half: index 2, declared transparent below
    data = encode(image, "PNG", transparency=2)
    pixels = decode(data, image_size=10)
    assert pixels.shape == (1, 10, 10)
    assert (pixels[0, :, :5] == 0).all() and (pixels[0, :, 5:] == 250).all()


def test_rgb_with_nearly_equal_channels_counts_as_grey_and_beyond_the_tolerance_as_colour():
    grey = decode(encode(Image.new("RGB", (8, 8), (100, 101, 102)), "PNG"), image_size=8)
    colour = decode(encode(Image.new("RGB", (8, 8), (100, 100, 103)), "PNG"), image_size=8)
    assert grey.shape == (1, 8, 8) and np.all(grey == 101)  # luma of (100, 101, 102) rounds to 101
    assert colour.shape == (3, 8, 8) and colour[:, 0, 0].tolist() == [100, 100, 103]


def three_blocks(horizontal: bool) -> Image.Image:
    """30×10 (or 10×30) image of three 10×10 blocks valued 0, 128, 255."""
    blocks = np.concatenate([np.full((10, 10), v, np.uint8) for v in (0, 128, 255)], axis=1)
    return Image.fromarray(blocks if horizontal else blocks.T)


@pytest.mark.parametrize("horizontal", [True, False])
def test_crop_fraction_one_keeps_the_center_square_of_the_long_side(horizontal):
    pixels = decode(encode(three_blocks(horizontal), "PNG"), image_size=10, crop_fraction=1.0)
    assert pixels.shape == (1, 10, 10)
    assert np.all(pixels == 128)


def test_crop_fraction_resizes_the_short_side_to_size_over_fraction_then_crops():
    # 20×20 with a bright 10×10 center: the short side is already round(10 / 0.5) = 20, so the crop is
    # exactly the bright square; with crop_fraction 1.0 the whole image is shrunk, dark border included.
    image = np.zeros((20, 20), np.uint8)
    image[5:15, 5:15] = 200
    data = encode(Image.fromarray(image), "PNG")
    assert np.all(decode(data, image_size=10, crop_fraction=0.5) == 200)
    whole = decode(data, image_size=10, crop_fraction=1.0)
    assert whole[0, 0, 0] <= 5 and whole[0, 5, 5] >= 195
    # 0.875 is the paper's 256 -> 224: a 64×48 image is resized to 73×55 (short side round(48 / 0.875))
    # and its center 48×48 kept, so the crop sees 48/73 of the width.
    ramp = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (48, 1))
    cropped = decode(encode(Image.fromarray(ramp), "PNG"), image_size=48, crop_fraction=0.875)
    assert cropped.shape == (1, 48, 48)
    assert 35 <= cropped[0, 24, 0] <= 50 and 205 <= cropped[0, 24, -1] <= 220


def test_downscaling_is_antialiased():
    checker = (np.indices((64, 64)).sum(axis=0) % 2 * 255).astype(np.uint8)  # 1-pixel checkerboard
    pixels = decode(encode(Image.fromarray(checker), "PNG"), image_size=16)
    assert abs(int(pixels.mean()) - 127) <= 2
    assert int(pixels.max()) - int(pixels.min()) <= 10  # nearest-neighbour would give 0s and 255s


def test_big_jpeg_decoded_at_reduced_scale_matches_the_full_decode():
    y, x = np.mgrid[0:1200, 0:1600]
    gradient = np.stack([x * 255 // 1600, y * 255 // 1200, (x + y) * 255 // 2800], axis=2).astype(np.uint8)
    via_jpeg = decode(encode(Image.fromarray(gradient), "JPEG", quality=95), image_size=32)
    via_png = decode(encode(Image.fromarray(gradient), "PNG"), image_size=32)
    assert via_jpeg.shape == via_png.shape == (3, 32, 32)
    assert np.abs(via_jpeg.astype(int) - via_png).mean() < 2.0


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_photo_stored_sideways_is_turned_upright_by_its_exif_orientation(fmt):
    stored = np.zeros((32, 64), np.uint8)  # stored 64 wide × 32 high: left half white
    stored[:, :32] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display": the white half is then on top
    turned = decode(encode(Image.fromarray(stored), fmt, exif=exif.tobytes()), image_size=16)
    assert turned[0, :7].mean() > 200 and turned[0, 9:].mean() < 50  # rows: top white, bottom black
    as_stored = decode(encode(Image.fromarray(stored), fmt), image_size=16)
    assert as_stored[0, :, :7].mean() > 200 and as_stored[0, :, 9:].mean() < 50  # columns, untagged


def test_arrays_go_through_the_same_path():
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8)
    assert np.array_equal(decode(grey, image_size=8), grey[None])
    rgb = np.zeros((8, 12, 3), np.uint8)
    rgb[..., 0] = 255
    out = decode(rgb, image_size=8)
    assert out.shape == (3, 8, 8) and out[:, 4, 4].tolist() == [255, 0, 0]
    assert decode(np.full((8, 8, 1), 9, np.uint8), image_size=4).shape == (1, 4, 4)
    assert np.all(decode(np.full((8, 8), 65535, np.uint16), image_size=4) == 255)


def test_an_array_with_no_finite_value_is_unreadable_and_partial_nan_is_kept():
    with pytest.raises(UnreadableImage, match="^no pixel values: every value is NaN or infinite$"):
        decode(np.full((8, 8), np.nan, np.float32), image_size=8)
    with pytest.raises(UnreadableImage, match="^no pixel values"):
        decode(np.full((8, 8), np.inf), image_size=8)
    partly = np.full((8, 8), 0.5, np.float32)
    partly[0, 0] = np.nan  # a missing pixel in a scan: the rest is still an image
    assert decode(partly, image_size=8)[0, 4, 4] == 128


def test_an_array_of_non_numbers_is_unreadable():
    with pytest.raises(UnreadableImage, match="^not an image array: complex128 values$"):
        decode(np.zeros((8, 8), np.complex128), image_size=8)


def test_empty_text_and_truncated_files_raise_with_a_specific_reason():
    jpeg = encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)), "JPEG")
    png = encode(Image.new("L", (64, 64), 5), "PNG")
    cases = {
        b"": "empty file (0 bytes)",
        b"this is not an image\n": "not an image: cannot identify image file",
        jpeg[: len(jpeg) // 2]: "truncated image data",
        png[:-30]: "truncated image data",
    }
    for data, reason in cases.items():
        with pytest.raises(UnreadableImage) as caught:
            decode(data, image_size=8)
        assert caught.value.reason == reason


def test_too_large_image_is_refused_from_its_header_before_decoding():
    with pytest.raises(UnreadableImage) as caught:
        decode(huge_png(20000, 20000), image_size=8, max_pixels=100_000_000)
    assert caught.value.reason == "image too large: 20000×20000 = 400 Mpx > limit 100 Mpx"
    with pytest.raises(UnreadableImage, match=r"^image too large: 30×20 = 600 px > limit 599 px$"):
        decode(np.zeros((20, 30), np.uint8), image_size=8, max_pixels=599)


def test_pil_decompression_bomb_guard_never_escapes(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # as if some other code restored PIL's limit
    with pytest.raises(UnreadableImage, match="image too large"):
        decode(encode(Image.new("L", (100, 100)), "PNG"), image_size=8)  # over 2× the limit: PIL's error
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UnreadableImage, match="image too large"):
            decode(encode(Image.new("L", (40, 40)), "PNG"), image_size=8)  # between 1× and 2×: PIL's warning


def test_invalid_crop_fraction_is_a_programming_error():
    with pytest.raises(ValueError, match="crop_fraction"):
        decode(np.zeros((8, 8), np.uint8), image_size=8, crop_fraction=0.0)
