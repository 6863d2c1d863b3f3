"""The batched tensor augmentations agree with PIL/torchvision's per-image definitions."""

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image, ImageOps

from engine.augment import (
    ContentAugmentation,
    ContentParams,
    adjust_hue,
    apply_context,
    color_jitter,
    con2_views,
    crop_resize_flip,
    equalize,
    gaussian_blur,
    normalize,
    simclr_views,
    to_float,
)
from engine.config import ConfigError, TrainConfig


@pytest.fixture
def images():
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (4, 3, 12, 10), generator=g, dtype=torch.uint8).float() / 255


def test_invert_and_flip(images):
    assert torch.allclose(apply_context(images, "invert"), 1 - images)
    flipped = apply_context(images, "flip")
    assert torch.equal(flipped[:, :, 0], images[:, :, -1])  # top row is the old bottom row
    assert torch.equal(apply_context(flipped, "flip"), images)


def test_unknown_context_is_named():
    with pytest.raises(ValueError, match="rotate"):
        apply_context(torch.zeros(1, 3, 4, 4), "rotate")


def test_equalize_matches_pil():
    rng = np.random.default_rng(1)
    # skewed histograms (dark images), as equalisation is meant for
    arrays = [(rng.beta(2, 8, size=(20, 17, 3)) * 255).astype(np.uint8) for _ in range(3)]
    arrays.append(np.full((20, 17, 3), 77, dtype=np.uint8))  # a single grey level stays as it is
    batch = torch.stack([torch.from_numpy(a).permute(2, 0, 1) for a in arrays]).float() / 255
    ours = (equalize(batch) * 255).round().to(torch.uint8)
    for k, a in enumerate(arrays):
        expected = np.asarray(ImageOps.equalize(Image.fromarray(a)))
        assert np.array_equal(ours[k].permute(1, 2, 0).numpy(), expected)


def test_equalize_is_torchvisions_on_uint8_images():
    """The probe behind keeping the hand-written equalize (see its comment): on 8-bit images, random, few
    levels and constant, it is bit-identical to torchvision.transforms.v2.functional.equalize."""
    from torchvision.transforms.v2.functional import equalize as torchvision_equalize

    generator = torch.Generator().manual_seed(0)
    for trial in range(40):
        h, w = torch.randint(1, 40, (2,), generator=generator).tolist()
        pixels = torch.randint(0, 256, (4, 3, h, w), generator=generator, dtype=torch.uint8)
        pixels[0] = trial * 6  # a constant image
        pixels[1] = torch.randint(0, 3, (3, h, w), generator=generator, dtype=torch.uint8) * 100  # three levels
        pixels[2, 1] = 255  # one constant channel
        ours = (equalize(pixels.float() / 255) * 255).round().to(torch.uint8)
        assert torch.equal(ours, torchvision_equalize(pixels)), trial


def test_full_box_without_flip_is_identity_and_flip_mirrors(images):
    square = images[:, :, :10, :10]
    box = torch.tensor([[0.5, 0.5, 1.0, 1.0]]).expand(4, -1)
    same = crop_resize_flip(square, box, torch.zeros(4, dtype=torch.bool), 10)
    assert torch.allclose(same, square, atol=1e-5)
    mirrored = crop_resize_flip(square, box, torch.ones(4, dtype=torch.bool), 10)
    assert torch.allclose(mirrored, square.flip(-1), atol=1e-5)


def test_crop_takes_the_requested_region():
    x = torch.zeros(1, 3, 8, 8)
    x[:, :, :4, 4:] = 1.0  # top-right quadrant white
    out = crop_resize_flip(x, torch.tensor([[0.75, 0.25, 0.5, 0.5]]), torch.zeros(1, dtype=torch.bool), 4)
    assert out.min().item() == pytest.approx(1.0)


@pytest.mark.parametrize(
    "op,factor,reference",
    [
        (0, 1.3, TF.adjust_brightness),
        (1, 0.6, TF.adjust_contrast),
        (2, 1.4, TF.adjust_saturation),
    ],
)
def test_jitter_operations_match_torchvision(images, op, factor, reference):
    jitter = torch.tensor([1.0, 1.0, 1.0, 0.0]).repeat(4, 1)
    jitter[:, op] = factor
    ours = color_jitter(images, jitter, torch.tensor([op]))
    for k in range(4):
        assert torch.allclose(ours[k], reference(images[k], factor), atol=1e-5)


def test_hue_matches_torchvision(images):
    shifts = torch.tensor([0.1, -0.1, 0.05, 0.0])
    ours = adjust_hue(images, shifts)
    for k in range(4):
        assert torch.allclose(ours[k], TF.adjust_hue(images[k], float(shifts[k])), atol=2e-3)


def test_blur_matches_torchvision():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, 70, 70, generator=g)
    ours = gaussian_blur(x, torch.tensor([1.5, 0.0]))
    k = max(3, int(0.1 * 70) // 2 * 2 + 1)
    assert torch.allclose(ours[0], TF.gaussian_blur(x[0], [k, k], [1.5, 1.5]), atol=1e-5)
    assert torch.allclose(ours[1], x[1], atol=1e-6)  # σ = 0: untouched


def identity_params(n, image_size):
    return ContentParams(
        box=torch.tensor([[0.5, 0.5, 1.0, 1.0]]).expand(n, -1),
        hflip=torch.zeros(n, dtype=torch.bool),
        jitter=torch.tensor([[1.0, 1.0, 1.0, 0.0]]).expand(n, -1),
        jitter_order=torch.arange(4),
        grey=torch.zeros(n, dtype=torch.bool),
        blur_sigma=torch.zeros(n),
    )


def test_content_augmentation_draws_differ_per_image_and_stay_in_range():
    aug = ContentAugmentation(image_size=16)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(6)).expand(8, -1, -1, -1)
    out = aug(x, g)
    assert out.shape == (8, 3, 16, 16)
    assert out.min() >= 0 and out.max() <= 1
    assert not torch.allclose(out[0], out[1])  # independent draws per image
    params = aug.sample(1000, torch.Generator().manual_seed(1), "cpu")
    area = params.box[:, 2] * params.box[:, 3]
    assert area.min() >= 0.2 * 0.74 and area.max() <= 1.0  # (0.2, 1) below 64 px; clipping shrinks a little
    assert 0.4 < params.hflip.float().mean() < 0.6
    assert 0.12 < params.grey.float().mean() < 0.28
    assert (params.blur_sigma == 0).all()  # no blur below 64 px
    big = ContentAugmentation(image_size=64).sample(1000, torch.Generator().manual_seed(1), "cpu")
    assert 0.4 < (big.blur_sigma > 0).float().mean() < 0.6


@pytest.mark.parametrize("size", [16, 64])
def test_the_train_configs_default_t_is_the_engines_default_t(size):
    """TrainConfig's augmentation fields default to ContentAugmentation's own strengths: same draws, bit for bit."""
    plain = ContentAugmentation(image_size=size).sample(200, torch.Generator().manual_seed(3), "cpu")
    configured = ContentAugmentation.from_config(TrainConfig(), size).sample(
        200, torch.Generator().manual_seed(3), "cpu"
    )
    for name in ("box", "hflip", "jitter", "jitter_order", "grey", "blur_sigma"):
        assert torch.equal(getattr(plain, name), getattr(configured, name)), name


def test_the_train_configs_crop_jitter_and_blur_fields_reach_t():
    config = TrainConfig(
        crop_min_area=0.5,
        crop_max_area=0.6,
        jitter_strength=0.0,
        jitter_probability=1.0,
        blur_probability=1.0,
        blur_min_size=0,
    )
    params = ContentAugmentation.from_config(config, 16).sample(500, torch.Generator().manual_seed(4), "cpu")
    area = params.box[:, 2] * params.box[:, 3]
    assert area.min() >= 0.5 * 0.74 and area.max() <= 0.6 + 1e-6
    assert torch.equal(params.jitter, torch.tensor([1.0, 1.0, 1.0, 0.0]).expand(500, -1))  # strength 0: no change
    assert (params.blur_sigma > 0).all()  # blurred at 16 px: blur_min_size 0
    tta = ContentAugmentation.from_config(config, 16, min_area=0.0)  # TTA's own smallest crop: 0 = SimCLR's
    assert tta.scale == (0.2, 0.6)
    with pytest.raises(ConfigError, match="crop_min_area"):
        TrainConfig(crop_min_area=0.7, crop_max_area=0.6)


def test_same_seed_same_views():
    aug = ContentAugmentation(image_size=16)
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(7))
    a = aug(x, torch.Generator().manual_seed(5))
    b = aug(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


class _NoOp(ContentAugmentation):
    def __call__(self, x, generator):
        return self.apply(x, identity_params(x.shape[0], self.image_size))


class _Marked(ContentAugmentation):
    """A T whose draws are told apart: call c (1, 2, …) shifts every pixel by c/100 and row r of its batch by
    r/1000, so each view says which draw (t or t′) made it and which input row it came from."""

    def __init__(self, image_size: int) -> None:
        super().__init__(image_size)
        object.__setattr__(self, "calls", 0)

    def __call__(self, x, generator):
        object.__setattr__(self, "calls", self.calls + 1)
        rows = torch.arange(x.shape[0], dtype=x.dtype)[:, None, None, None]
        return x + self.calls / 100 + rows / 1000


def test_con2_views_layout():
    pixels = torch.randint(0, 256, (3, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(4))
    x, xc = to_float(pixels), 1 - to_float(pixels)
    rows = torch.arange(3, dtype=torch.float32)[:, None, None, None] / 1000

    def by_draw(images, call, first_row):  # what draw `call` of _Marked made of `images` at rows first_row…
        return normalize(images + call / 100 + rows + first_row / 1000)

    views = con2_views(pixels, "invert", _Marked(image_size=8), torch.Generator())
    assert views.shape == (12, 3, 8, 8)
    # [t(x), t′(x), t(x^c), t′(x^c)]: t is the first call over [x, x^c], t′ the second
    assert torch.allclose(views[0:3], by_draw(x, 1, 0), atol=1e-5)
    assert torch.allclose(views[3:6], by_draw(x, 2, 0), atol=1e-5)
    assert torch.allclose(views[6:9], by_draw(xc, 1, 3), atol=1e-5)
    assert torch.allclose(views[9:12], by_draw(xc, 2, 3), atol=1e-5)
    # one view per context: [t(x), t(x^c)] from a single call
    single = con2_views(pixels, "invert", _Marked(image_size=8), torch.Generator(), views_per_context=1)
    assert torch.allclose(single[0:3], by_draw(x, 1, 0), atol=1e-5)
    assert torch.allclose(single[3:6], by_draw(xc, 1, 3), atol=1e-5)
    # SimCLR: [t(x), t′(x)], one call each
    simclr = simclr_views(pixels, _Marked(image_size=8), torch.Generator())
    assert simclr.shape == (6, 3, 8, 8)
    assert torch.allclose(simclr[0:3], by_draw(x, 1, 0), atol=1e-5)
    assert torch.allclose(simclr[3:6], by_draw(x, 2, 0), atol=1e-5)


def test_con2_views_one_per_context_layout():
    pixels = torch.randint(0, 256, (3, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    views = con2_views(pixels, "flip", _NoOp(image_size=8), torch.Generator(), views_per_context=1)
    assert views.shape == (6, 3, 8, 8)
    assert torch.allclose(views[0:3], normalize(to_float(pixels)), atol=1e-5)
    assert torch.allclose(views[3:6], normalize(to_float(pixels).flip(-2)), atol=1e-5)


def test_greyscale_is_replicated_and_normalised_to_unit_range():
    pixels = torch.tensor([[[[0, 255]]]], dtype=torch.uint8)
    x = to_float(pixels)
    assert x.shape == (1, 3, 1, 2)
    assert normalize(x).tolist()[0][0][0] == [-1.0, 1.0]
