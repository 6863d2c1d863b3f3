"""The encoder g_θ and the two projection heads h_φ (context) and h_ψ (content).

Encoder: torchvision's ResNet18, randomly initialised, without its last linear layer (512-d
features). At inputs ≤ 64 px the stem is the small-image one (3×3 conv, stride 1, no max-pool), as
for CIFAR; at larger inputs the standard 7×7/2 stem with max-pool. `resnet_small` is the same
network at a quarter of the width (128-d features), for practical runs on a CPU. `resnet_small_s2` is its stem and
first two residual stages alone (32-d pooled features): the grid features the scores compare are stage 2's, so stages
3 and 4 only fed the heads, and without them a step is 1.45–1.8× cheaper. The `auto` encoder picks it for Con2 on
greyscale scans (engine/encoder_choice.py; docs/quality.md finding 27). `resnet_half_s2` is the same two stages at twice
that width (ResNet18's at half width: 64-d pooled, 64 grid channels) behind a stride-2 stem: the stem halves the
map, so the step costs about what resnet_small_s2's does, spent on twice the channels at a quarter of the positions.
An option: `auto` does not pick it; it lifted BreastMNIST 3.7 points and cost chest x-rays 1.6 (docs/quality.md
finding 44). `resnet_half_late_s2` moves that stride from the stem to stage 1's first block (a strided 1 × 1
shortcut, as ResNet's later stages have): the stem's filters see every pixel, the stages the same quarter of the
positions (docs/quality.md finding 46).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet18
from torchvision.models.resnet import BasicBlock, ResNet

from engine.config import CON2_METHODS
from engine.rotations import ROTATIONS

SMALL_STEM_MAX_SIZE = 64
# Methods that train a rotation classifier on the encoder features (CSI's shift head; masked contrastive's too); only
# their models carry one, so every other method's state dict, checkpoints and bundles stay as they were.
SHIFT_HEAD_METHODS = ("csi", "masked_contrastive")
# The two half-width encoders: resnet_half_late_s2 is resnet_half_s2 with its stride moved from the stem to stage 1
HALF_WIDTH = ("resnet_half_s2", "resnet_half_late_s2")
GRID = 4  # cells per side of the "grid" features: layer 2's map (8–56 px wide) averaged to 4 × 4


class _NarrowResNet(ResNet):
    """ResNet18's layout (2-2-2-2 basic blocks) at a chosen base width; torchvision fixes 64."""

    def __init__(self, width: int) -> None:
        super().__init__(BasicBlock, [2, 2, 2, 2])
        # rebuild every layer at the narrower width with torchvision's own block builder
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.layer1 = self._make_layer(BasicBlock, width, 2)
        self.layer2 = self._make_layer(BasicBlock, width * 2, 2, stride=2)
        self.layer3 = self._make_layer(BasicBlock, width * 4, 2, stride=2)
        self.layer4 = self._make_layer(BasicBlock, width * 8, 2, stride=2)
        for m in self.modules():  # the same initialisation torchvision applies
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


def build_encoder(name: str, image_size: int) -> tuple[nn.Module, int]:
    """Encoder without its classifier and its feature size. Weights are random (no pretraining)."""
    if name == "resnet18":
        net, width = resnet18(weights=None), 64
    elif name in ("resnet_small", "resnet_small_s2"):
        net, width = _NarrowResNet(16), 16
    elif name in HALF_WIDTH:
        net, width = _NarrowResNet(32), 32
    else:
        raise ValueError(f"unknown encoder {name!r}")
    if image_size <= SMALL_STEM_MAX_SIZE:
        # resnet_half_s2's stem strides: on greyscale scans at 28–32 px, twice the channels on a quarter of the
        # positions ranked better at equal time than resnet_small_s2's full-resolution map (docs/quality.md finding 44)
        stride = 2 if name in HALF_WIDTH else 1
        net.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=stride, padding=1, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        net.maxpool = nn.Identity()
        if name == "resnet_half_late_s2":
            stride_stage1(net)
    net.fc = nn.Identity()
    if name.endswith("_s2"):
        # The grid features the scores compare are stage 2's; stages 3 and 4 only fed the heads. Without them the
        # heads read stage 2's pooled map, and a step costs 1.45–1.8× less (docs/quality.md finding 27).
        net.layer3, net.layer4 = nn.Identity(), nn.Identity()
        return net, width * 2
    return net, width * 8


def stride_stage1(net: nn.Module) -> None:
    """Move the stem's stride to stage 1's first block, its shortcut a strided 1 × 1 convolution as ResNet's later
    stages have: the stem's 3 × 3 filters see every pixel, and the stages still work on a quarter of the positions."""
    net.conv1.stride = (1, 1)
    first, width = net.layer1[0], net.conv1.out_channels
    first.conv1.stride = (2, 2)
    first.stride = 2
    shortcut = nn.Conv2d(width, width, kernel_size=1, stride=2, bias=False)
    first.downsample = nn.Sequential(shortcut, nn.BatchNorm2d(width))
    nn.init.kaiming_normal_(shortcut.weight, mode="fan_out", nonlinearity="relu")


class ProjectionHead(nn.Module):
    """MLP with one hidden layer (d → d → p, ReLU), output L2-normalised (SimCLR's head)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, in_dim), nn.ReLU(inplace=True), nn.Linear(in_dim, out_dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(h), dim=1)

    def raw(self, h: torch.Tensor) -> torch.Tensor:
        """The projection before L2 normalisation: (B, d) → (B, p). CSI and self-OECL score with its norm."""
        return self.net(h)


@dataclass(frozen=True)
class Con2Output:
    """What one forward pass returns; the z outputs are L2-normalised."""

    features: torch.Tensor  # (B, D) encoder features h = g_θ(x), used for scoring
    z_context: torch.Tensor  # (B, P) h_φ(h), for context contrasting
    z_content: torch.Tensor  # (B, P) h_ψ(h), for content alignment (and SimCLR, CSI, self-OECL)
    content_raw: torch.Tensor  # (B, P) h_ψ(h) before normalisation: z_content = content_raw / ‖content_raw‖
    shift_logits: torch.Tensor | None  # (B, 4) the rotation head's logits; None for a model without one


def shift_classes(method: str, rotation_weight: float = 0.0) -> int:
    """Outputs of the rotation head a model trained with `method` carries: 4, or 0 = none. Con2 carries one when
    trained with the auxiliary rotation loss (TrainConfig.rotation_weight > 0)."""
    auxiliary = rotation_weight > 0 and method in CON2_METHODS
    return ROTATIONS if method in SHIFT_HEAD_METHODS or auxiliary else 0


class Con2Model(nn.Module):
    """g_θ with its two independent projection heads, and a linear rotation head (CSI, masked contrastive) when
    `shift_classes` > 0."""

    def __init__(
        self, encoder: str = "resnet_small", image_size: int = 32, projection_dim: int = 128, shift_classes: int = 0
    ) -> None:
        super().__init__()
        self.encoder, self.feature_dim = build_encoder(encoder, image_size)
        self.grid_channels = self.encoder.layer2[-1].bn2.num_features
        self.context_head = ProjectionHead(self.feature_dim, projection_dim)
        self.content_head = ProjectionHead(self.feature_dim, projection_dim)
        # absent (not merely unused) otherwise: a state dict without it still loads into the model
        self.shift_head = nn.Linear(self.feature_dim, shift_classes) if shift_classes else None

    def forward(self, x: torch.Tensor) -> Con2Output:
        """x: (B, 3, S, S) normalised images."""
        h = self.encoder(x)
        raw = self.content_head.raw(h)
        shift = None if self.shift_head is None else self.shift_head(h)
        return Con2Output(h, self.context_head(h), F.normalize(raw, dim=1), raw, shift)

    def features(self, x: torch.Tensor, kind: str = "pooled") -> torch.Tensor:
        """Encoder features only (heads discarded at test time): (B, 3, S, S) → (B, D).

        kind: "pooled" = the encoder's output, its last stage averaged over the whole image (the paper;
        D = 512 or 128); "grid" = the second stage's output averaged over a GRID × GRID grid of cells and
        flattened (D = 16 · 128 or 16 · 32), which keeps where in the image a structure sits — the global
        average discards that, and on small, aligned images (digits, x-rays) layout is much of the
        difference between a normal and an anomaly (docs/quality.md);
        "grid_pooled" = both from one forward pass, side by side (grid first): S_LH reads each on its own.
        """
        if kind == "pooled":
            return self.encoder(x)
        if kind not in ("grid", "grid_pooled"):
            raise ValueError(f"unknown feature kind {kind!r}")
        net = self.encoder
        h = net.layer2(net.layer1(net.maxpool(net.relu(net.bn1(net.conv1(x))))))
        grid = F.adaptive_avg_pool2d(h, GRID).flatten(1)
        if kind == "grid":
            return grid
        pooled = net.fc(torch.flatten(net.avgpool(net.layer4(net.layer3(h))), 1))  # the rest of ResNet.forward
        return torch.cat([grid, pooled], dim=1)

    def feature_size(self, kind: str = "pooled") -> int:
        """D of `features(x, kind)`."""
        grid = self.grid_channels * GRID * GRID
        return {"pooled": self.feature_dim, "grid": grid, "grid_pooled": grid + self.feature_dim}[kind]
