"""The context augmentation a run trains with when its config says `auto`: chosen from the training images.

The paper picks a context per dataset by its two assumptions (§3.3, Table 2): the context images must be easy
to tell from the originals yet keep their content. At the CPU recipe's budget we measured which choice that
comes to (docs/quality.md, finding 24, 3 seeds a task):
- greyscale images larger than 16 px (BreastMNIST, PneumoniaMNIST, BR35H): histogram equalisation beat
  inversion on BreastMNIST (+1.7 S_NND, every seed) and BR35H (+0.8, every seed), and was level on
  PneumoniaMNIST (88.6 against 88.8): an equalised scan is a distinct, brighter image of the same anatomy;
- colour photographs (CIFAR-10) and tiny greyscale images (the 16 px digits): inversion. On CIFAR-10
  equalisation was level on the mean of the ten classes (+0.1) but swung single classes by up to 15 points
  either way and lowered the worst (cat, −2.2); on the digits it lost 0.4 on the mean and 1.4 on the worst
  (digit 8), where equalising 17 grey levels changes what the image shows.
So `auto` is equalize for greyscale images above 16 px and invert for everything else. The resolved name is
what the run records (its config, its model, its summary), so a model scores new images with the context it
learned.
"""

from __future__ import annotations

import dataclasses

import torch

from engine.config import AUTO_CONTEXT, TrainConfig

SMALL_SIDE_PX = 16  # images at most this side keep invert (the digits: 8 px, trained at 16)
# A colour image counts as greyscale when its channels differ by at most this many grey levels (of 255) on
# average (|R − G| + |G − B|): BR35H's scans saved as RGB JPEGs average 0.07, the most tinted 4.6 (its 1,050
# training images at 32 px); CIFAR-10's airplanes have a median of 31.6, and 4.4 % of them fall under 2.
GREY_TOLERANCE = 2.0
GREY_SHARE = 0.9  # the share of training images that must be greyscale for the set to count as greyscale
SAMPLE = 2048  # images looked at, evenly spaced: enough for a share, and bounded memory on a large set
CHUNK = 256  # images converted to int16 at a time


def is_greyscale(pixels: torch.Tensor) -> bool:
    """Whether a set of (N, C, H, W) uint8 images is greyscale: one channel, or three that (nearly) agree in
    at least GREY_SHARE of the images (a folder of scans may hold a few tinted ones)."""
    n = pixels.shape[0]
    if pixels.shape[1] == 1 or n == 0:
        return True
    rows = torch.linspace(0, n - 1, min(n, SAMPLE)).round().long().unique()
    grey = 0
    for chunk in rows.split(CHUNK):
        rgb = pixels[chunk, :3].to(torch.int16)
        spread = (rgb[:, 0] - rgb[:, 1]).abs() + (rgb[:, 1] - rgb[:, 2]).abs()  # (B, H, W)
        grey += int((spread.float().mean(dim=(1, 2)) <= GREY_TOLERANCE).sum())
    return grey >= GREY_SHARE * len(rows)


def scan_like(pixels: torch.Tensor) -> bool:
    """Whether training images (N, C, S, S) are greyscale and larger than SMALL_SIDE_PX: the images (scans at 28–32
    px) on which the `auto` choices of context and encoder depart from the paper's (engine/encoder_choice.py)."""
    return scan_of(is_greyscale(pixels), int(pixels.shape[-1]))


def scan_of(greyscale: bool, side: int) -> bool:
    """The rule `scan_like` applies, on what is already known of the images: whether they are greyscale, and their
    side. `resolve_auto` calls it directly, having looked at the images once for every `auto` choice."""
    return greyscale and side > SMALL_SIDE_PX


def context_for(scan: bool) -> str:
    """The context `auto` stands for on images that are (or are not) `scan_like`."""
    return "equalize" if scan else "invert"


def choose_context(pixels: torch.Tensor) -> str:
    """The context `auto` stands for on these training images: equalize for greyscale images larger than
    SMALL_SIDE_PX, invert otherwise."""
    return context_for(scan_like(pixels))


def resolve_context(config: TrainConfig, pixels: torch.Tensor) -> TrainConfig:
    """`config` with `auto` replaced by the context chosen for `pixels`, the training images as they train
    (resized); any other value is kept as it is."""
    if config.context != AUTO_CONTEXT:
        return config
    return dataclasses.replace(config, context=choose_context(pixels))
