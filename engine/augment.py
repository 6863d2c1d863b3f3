"""Context augmentations t_c and the content augmentation set T, batched on tensors.

Everything here runs on whole batches on the batch's device (the GPU when training there), so the
data pipeline is a single uint8 tensor copy per step and never starves the accelerator. Parameters
of T are drawn per image from a `torch.Generator` and applied in one pass: crop, resize and
horizontal flip are one `grid_sample`; colour jitter, greyscale and blur are vectorised.

Order (App. D): context first, then T, then normalisation with mean = std = 0.5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engine.config import AUTO_CONTEXT, CONTEXTS, TrainConfig

GREY_WEIGHTS = (0.2989, 0.587, 0.114)  # ITU-R 601 luma, with torchvision's rounding


def to_float(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 (B, C, S, S) with C ∈ {1, 3} → float (B, 3, S, S) in [0, 1]; greyscale is replicated."""
    x = pixels.float().div_(255.0)
    return x.expand(-1, 3, -1, -1).contiguous() if x.shape[1] == 1 else x


def normalize(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] → [-1, 1]: mean = std = 0.5 per channel (App. D)."""
    return (x - 0.5) / 0.5


def apply_context(x: torch.Tensor, context: str) -> torch.Tensor:
    """The context augmentation t_c on float images in [0, 1], (B, 3, S, S) → same shape.

    invert: x ↦ 1 − x. flip: vertical mirror (top ↔ bottom). equalize: per-channel histogram
    equalisation with PIL's lookup table, on the image quantised to 8 bits.
    """
    if context == "invert":
        return 1.0 - x
    if context == "flip":
        return x.flip(-2)
    if context == "equalize":
        return equalize(x)
    if context == AUTO_CONTEXT:  # a programming error: train() and train_run() replace it before any view is made
        raise ValueError("context 'auto' must be chosen from the training images first (engine.context_choice)")
    raise ValueError(f"unknown context augmentation {context!r}; choose one of {', '.join(CONTEXTS)}")


def equalize(x: torch.Tensor) -> torch.Tensor:
    """Histogram equalisation of each image and channel, batched; PIL.ImageOps.equalize's rule.

    x: (B, C, H, W) float in [0, 1]. A channel with a single grey level is left unchanged.

    Kept by hand rather than torchvision.transforms.v2.functional.equalize, although the two are
    bit-identical on 8-bit images (tests/test_augment.py probes random, few-level and constant ones):
    the dashboard's gallery previews the contexts with this module, and the dashboard may not load
    torchvision (tests/test_architecture.py); and torchvision bins a float image its own way
    (x·(256 − ε), floored) where this rounds x·255, so the two differ on floats between the 256 levels
    (a resized image's), by up to 65 levels on a probe.
    """
    b, c, h, w = x.shape
    levels = (x * 255.0).round().clamp_(0, 255).long().reshape(b * c, h * w)  # (BC, HW)
    hist = torch.zeros(b * c, 256, device=x.device, dtype=torch.long)
    hist.scatter_add_(1, levels, torch.ones_like(levels))
    # PIL: step = (pixels − count of the highest level present) // 255
    top = 255 - torch.argmax((hist.flip(1) > 0).long(), dim=1)  # highest non-empty bin
    last_count = hist.gather(1, top[:, None]).squeeze(1)
    step = (h * w - last_count) // 255  # (BC,)
    before = torch.cumsum(hist, dim=1) - hist  # pixels strictly below each level
    safe = step.clamp(min=1)[:, None]
    lut = ((safe // 2 + before) // safe).clamp_(max=255)
    identity = torch.arange(256, device=x.device).expand_as(lut)
    lut = torch.where((step > 0)[:, None], lut, identity)
    out = lut.gather(1, levels).float().div_(255.0)
    return out.reshape(b, c, h, w)


@dataclass(frozen=True)
class ContentParams:
    """One draw of T per image; every tensor has the batch as its first dimension."""

    box: torch.Tensor  # (B, 4): crop centre x, centre y, width, height as fractions of the image
    hflip: torch.Tensor  # (B,) bool
    jitter: torch.Tensor  # (B, 4): brightness, contrast, saturation factors and hue shift (1, 1, 1, 0 = off)
    jitter_order: torch.Tensor  # (4,) permutation of the jitter operations (one order per batch)
    grey: torch.Tensor  # (B,) bool
    blur_sigma: torch.Tensor  # (B,) Gaussian blur σ in pixels; 0 = no blur

    def expand(self, n: int) -> ContentParams:
        """Broadcast a single draw (B = 1) to n images: the same t applied to all of them."""
        return ContentParams(
            self.box.expand(n, -1),
            self.hflip.expand(n),
            self.jitter.expand(n, -1),
            self.jitter_order,
            self.grey.expand(n),
            self.blur_sigma.expand(n),
        )


def simclr_min_area(image_size: int) -> float:
    """SimCLR's smallest random crop, as a share of the image area: 0.08 at ≥ 64 px, 0.2 below."""
    return 0.08 if image_size >= 64 else 0.2


@dataclass(frozen=True)
class ContentAugmentation:
    """The content augmentation set T: SimCLR's set (Chen et al. 2020), with our default strengths.

    Never contains vertical flips, so the flip context stays distinct from every content view.
    """

    image_size: int
    crop_scale: tuple[float, float] | None = None  # None: (0.08, 1) at ≥ 64 px, (0.2, 1) below
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip_p: float = 0.5
    jitter_strength: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)
    jitter_p: float = 0.8
    grey_p: float = 0.2
    blur_p: float | None = None  # None: 0.5 at ≥ 64 px, off below (too destructive on tiny images)
    blur_sigma: tuple[float, float] = (0.1, 2.0)

    @classmethod
    def from_config(cls, config: TrainConfig, image_size: int, *, min_area: float | None = None) -> ContentAugmentation:
        """T as a run's `TrainConfig` sets it (crop range, colour jitter, blur) for images of `image_size` px.

        `min_area`: the crop's smallest share of the image area, if not `config.crop_min_area` (test-time
        augmentation has its own, `ScoreConfig.tta_min_area`); 0 = SimCLR's range (`simclr_min_area`).
        """
        low = config.crop_min_area if min_area is None else min_area
        s = config.jitter_strength
        return cls(
            image_size,
            crop_scale=(low if low > 0 else simclr_min_area(image_size), config.crop_max_area),
            jitter_strength=(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s),  # SimCLR's ColorJitter(0.8s, 0.8s, 0.8s, 0.2s)
            jitter_p=config.jitter_probability,
            blur_p=config.blur_probability if image_size >= config.blur_min_size else 0.0,
        )

    @property
    def scale(self) -> tuple[float, float]:
        if self.crop_scale is not None:
            return self.crop_scale
        return (simclr_min_area(self.image_size), 1.0)

    @property
    def blur_probability(self) -> float:
        if self.blur_p is not None:
            return self.blur_p
        return 0.5 if self.image_size >= 64 else 0.0

    def sample(self, n: int, generator: torch.Generator, device: torch.device | str) -> ContentParams:
        """Draw T's parameters for n images on `device` (the generator must live there too)."""

        def uniform(*shape: int, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
            return torch.rand(*shape, generator=generator, device=device) * (high - low) + low

        # RandomResizedCrop: area fraction and log-uniform aspect ratio; sides clipped to the image,
        # which (unlike torchvision's 10 retries) keeps the draw vectorised.
        area = uniform(n, low=self.scale[0], high=self.scale[1])
        log_ratio = uniform(n, low=math.log(self.crop_ratio[0]), high=math.log(self.crop_ratio[1]))
        ratio = torch.exp(log_ratio)
        width = torch.sqrt(area * ratio).clamp(max=1.0)
        height = torch.sqrt(area / ratio).clamp(max=1.0)
        cx = width / 2 + uniform(n) * (1 - width)
        cy = height / 2 + uniform(n) * (1 - height)
        box = torch.stack([cx, cy, width, height], dim=1)

        hflip = uniform(n) < self.hflip_p
        b, c, s, h = self.jitter_strength
        factors = torch.stack(
            [
                uniform(n, low=1 - b, high=1 + b),
                uniform(n, low=1 - c, high=1 + c),
                uniform(n, low=1 - s, high=1 + s),
                uniform(n, low=-h, high=h),
            ],
            dim=1,
        )
        off = torch.tensor([1.0, 1.0, 1.0, 0.0], device=device)
        jitter = torch.where((uniform(n) < self.jitter_p)[:, None], factors, off)
        order = torch.randperm(4, generator=generator, device=device)
        grey = uniform(n) < self.grey_p
        sigma = uniform(n, low=self.blur_sigma[0], high=self.blur_sigma[1])
        sigma = torch.where(uniform(n) < self.blur_probability, sigma, torch.zeros_like(sigma))
        return ContentParams(box, hflip, jitter, order, grey, sigma)

    def apply(self, x: torch.Tensor, params: ContentParams) -> torch.Tensor:
        """Apply one draw of T to float images in [0, 1]: (B, 3, H, W) → (B, 3, S, S) in [0, 1]."""
        x = crop_resize_flip(x, params.box, params.hflip, self.image_size)
        x = color_jitter(x, params.jitter, params.jitter_order)
        x = torch.where(params.grey[:, None, None, None], grey(x).expand_as(x), x)
        if bool((params.blur_sigma > 0).any()):
            x = gaussian_blur(x, params.blur_sigma)
        return x

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Draw and apply T independently for every image of the batch."""
        return self.apply(x, self.sample(x.shape[0], generator, x.device))


def crop_resize_flip(x: torch.Tensor, box: torch.Tensor, hflip: torch.Tensor, size: int) -> torch.Tensor:
    """Crop each image to its box, resize to size×size (bilinear) and mirror left-right where asked.

    One affine `grid_sample` does all three. box: (B, 4) centre/size fractions; hflip: (B,) bool.
    """
    cx, cy, w, h = box.unbind(1)
    sign = 1.0 - 2.0 * hflip.to(x.dtype)
    theta = torch.zeros(x.shape[0], 2, 3, device=x.device, dtype=x.dtype)
    # affine_grid maps output coords in [-1, 1] to input coords in [-1, 1]
    theta[:, 0, 0] = w * sign
    theta[:, 0, 2] = cx * 2 - 1
    theta[:, 1, 1] = h
    theta[:, 1, 2] = cy * 2 - 1
    grid = F.affine_grid(theta, [x.shape[0], x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def grey(x: torch.Tensor) -> torch.Tensor:
    """Luma of RGB images: (B, 3, H, W) → (B, 1, H, W)."""
    r, g, b = x.unbind(1)
    return (GREY_WEIGHTS[0] * r + GREY_WEIGHTS[1] * g + GREY_WEIGHTS[2] * b).unsqueeze(1)


def _blend(a: torch.Tensor, b: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """factor·a + (1 − factor)·b, clamped to [0, 1]; factor: (B,)."""
    f = factor[:, None, None, None]
    return (f * a + (1 - f) * b).clamp_(0, 1)


def color_jitter(x: torch.Tensor, jitter: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """torchvision's ColorJitter with a per-image draw: brightness, contrast, saturation, hue.

    jitter: (B, 4) factors (1, 1, 1, 0 leaves an image unchanged); order: the operations' order.
    """
    for op in order.tolist():
        if op == 0:
            x = _blend(x, torch.zeros_like(x), jitter[:, 0])
        elif op == 1:
            mean = grey(x).mean(dim=(1, 2, 3), keepdim=True)
            x = _blend(x, mean.expand_as(x), jitter[:, 1])
        elif op == 2:
            x = _blend(x, grey(x).expand_as(x), jitter[:, 2])
        elif bool((jitter[:, 3] != 0).any()):
            x = adjust_hue(x, jitter[:, 3])
    return x


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue of each image by shift (B,) in turns (−0.5..0.5), through HSV."""
    r, g, b = x.unbind(1)
    maxc, _ = x.max(dim=1)
    minc, _ = x.min(dim=1)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    hue = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    hue = torch.where(delta > 0, (hue / 6.0) % 1.0, torch.zeros_like(hue))
    sat = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc))
    hue = (hue + shift[:, None, None]) % 1.0
    # HSV → RGB, vectorised over the six hue sectors
    i = torch.floor(hue * 6.0)
    f = hue * 6.0 - i
    v = maxc
    p = v * (1 - sat)
    q = v * (1 - sat * f)
    t = v * (1 - sat * (1 - f))
    i = i.long() % 6
    rgb = torch.stack(
        [
            torch.stack([v, q, p, p, t, v], dim=1).gather(1, i[:, None]).squeeze(1),
            torch.stack([t, v, v, q, p, p], dim=1).gather(1, i[:, None]).squeeze(1),
            torch.stack([p, p, t, v, v, q], dim=1).gather(1, i[:, None]).squeeze(1),
        ],
        dim=1,
    )
    return rgb


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with a per-image σ (B,) in pixels; σ = 0 leaves the image unchanged.

    Kernel width ≈ 10% of the image side (SimCLR), odd, at least 3.
    """
    b, c, h, w = x.shape
    k = max(3, int(0.1 * h) // 2 * 2 + 1)
    radius = k // 2
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    s = sigma.clamp(min=1e-3)[:, None]
    kernel = torch.exp(-(offsets[None, :] ** 2) / (2 * s**2))  # (B, k)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    identity = torch.zeros_like(kernel)
    identity[:, radius] = 1.0
    kernel = torch.where((sigma > 0)[:, None], kernel, identity)
    kernel = kernel.repeat_interleave(c, dim=0)  # (B·C, k): one kernel per channel of each image
    flat = x.reshape(1, b * c, h, w)
    flat = F.pad(flat, (radius, radius, radius, radius), mode="reflect")
    flat = F.conv2d(flat, kernel[:, None, None, :], groups=b * c)  # horizontal pass
    flat = F.conv2d(flat, kernel[:, None, :, None], groups=b * c)  # vertical pass
    return flat.reshape(b, c, h, w)


def con2_views(
    pixels: torch.Tensor,
    context: str,
    augmentation: ContentAugmentation,
    generator: torch.Generator,
    views_per_context: int = 2,
) -> torch.Tensor:
    """The 2kN training views of a batch of N originals, in the layout `losses` expects.

    pixels: (N, C, S, S) uint8 on the training device → (4N, 3, S', S') normalised:
    [t(x), t'(x), t(x^c), t'(x^c)], each block N rows, x^c = t_c(x). With views_per_context = 1:
    (2N, …) = [t(x), t(x^c)], every row its own draw of T.
    """
    x = to_float(pixels)
    both = torch.cat([x, apply_context(x, context)])  # (2N, 3, S, S): originals then context images
    first = augmentation(both, generator)
    if views_per_context == 1:
        return normalize(first)
    second = augmentation(both, generator)
    n = x.shape[0]
    return normalize(torch.cat([first[:n], second[:n], first[n:], second[n:]]))


def simclr_views(pixels: torch.Tensor, augmentation: ContentAugmentation, generator: torch.Generator) -> torch.Tensor:
    """The 2N SimCLR views of N originals: [t(x), t'(x)], (2N, 3, S', S') normalised."""
    x = to_float(pixels)
    return normalize(torch.cat([augmentation(x, generator), augmentation(x, generator)]))
