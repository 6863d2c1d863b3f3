"""The quality suite with the encoder's architecture changed in ways the engine has no option for (docs/quality.md
finding 44): what an architecture lever would do to the suite's cells before it becomes an option.

    PROBE=zeroinit python benchmarks/architecture_probe.py --tasks breastmnist --seeds 3 --no-simclr --label L
    PROBE=stem2,width:32 python benchmarks/architecture_probe.py --tasks breastmnist --seeds 3 --no-simclr \\
        --label L --train epochs=160

PROBE is a comma-separated list of changes to resnet_small / resnet_small_s2 (the encoder a cell resolves to):
- `zeroinit`: the last batch norm of every residual block starts at γ = 0, so each block starts as the identity
  (Goyal et al. 2017's trick for short schedules);
- `head:H`: the projection heads' hidden layer has H units instead of the encoder's feature size (32 on the two
  stages);
- `width:W`: the residual stages at base width W instead of 16 (channels W and 2W in stages 1–2);
- `stem2`: the 3 × 3 stem of images ≤ 64 px strides by 2, so every stage sees a quarter of the positions;
- `grid12`: the grid features the scores read are stage 1's map and stage 2's, each averaged to 4 × 4 and side by
  side (stage 2's alone as shipped): the finer stage beside the wider one (finding 45).
- `late2`: at ≤ 64 px the stride of resnet_half_s2's stem moves to stage 1's first block (with a strided 1 × 1
  shortcut, as ResNet's later stages have): the stem's 3 × 3 filters see every pixel, the stages the option's
  quarter of the positions. Its cost a step is not measured interleaved (finding 45: its cells trained 10–20 %
  longer than the option's and the shipped encoder's, on a noisy machine), so give it epochs from a measurement.
`stem2,width:32` is `resnet_half_s2` (engine/model.py), built in the same order, so its cells are the option's to the
last digit. Every other argument is benchmarks/quality.py's; the random-initialisation readings use the changed
encoder too. The epochs a changed step gets at equal time are the caller's to set (`--train epochs=N`), from its
measured cost.
"""

from __future__ import annotations

import engine  # noqa: F401  (first: it sets GOMP_SPINCOUNT)

# isort: split
import os
import runpy
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock

import engine.model as model


def parse(probe: str) -> dict[str, str]:
    """`zeroinit,width:32` → {"zeroinit": "", "width": "32"}."""
    changes = dict(part.split(":", 1) if ":" in part else (part, "") for part in probe.split(",") if part)
    unknown = set(changes) - {"zeroinit", "head", "width", "stem2", "grid12", "late2"}
    if unknown:
        raise SystemExit(f"unknown PROBE change(s): {', '.join(sorted(unknown))}")
    return changes


def patch(changes: dict[str, str]) -> None:
    """Replace engine.model's encoder builder (and the heads' hidden width) for this process."""
    shipped = model.build_encoder
    width = int(changes.get("width") or 16)

    def build(name: str, image_size: int) -> tuple[nn.Module, int]:
        if name in ("resnet_small", "resnet_small_s2") and width != 16:
            net = model._NarrowResNet(width)  # noqa: SLF001  (the engine's own narrow ResNet, at another width)
            if image_size <= model.SMALL_STEM_MAX_SIZE:
                net.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
                nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
                net.maxpool = nn.Identity()
            net.fc = nn.Identity()
            if name.endswith("_s2"):
                net.layer3, net.layer4 = nn.Identity(), nn.Identity()
            built = (net, width * 2 if name.endswith("_s2") else width * 8)
        else:
            built = shipped(name, image_size)
        if "stem2" in changes and image_size <= model.SMALL_STEM_MAX_SIZE:
            built[0].conv1.stride = (2, 2)
        if "late2" in changes and image_size <= model.SMALL_STEM_MAX_SIZE:
            model.stride_stage1(built[0])
        if "zeroinit" in changes:
            for block in built[0].modules():
                if isinstance(block, BasicBlock):
                    nn.init.zeros_(block.bn2.weight)
        return built

    model.build_encoder = build
    if "head" in changes:
        hidden = int(changes["head"])

        def head_init(self: model.ProjectionHead, in_dim: int, out_dim: int) -> None:
            nn.Module.__init__(self)
            self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim))

        model.ProjectionHead.__init__ = head_init
    if "grid12" in changes:
        patch_grid12()


def patch_grid12() -> None:
    """Con2Model's grid features with stage 1's pooled map before stage 2's (and the feature size to match)."""
    shipped_init, shipped_features = model.Con2Model.__init__, model.Con2Model.features

    def init(self: model.Con2Model, *args, **kwargs) -> None:
        shipped_init(self, *args, **kwargs)
        self.grid_channels += self.encoder.layer1[-1].bn2.num_features

    def features(self: model.Con2Model, x: torch.Tensor, kind: str = "pooled") -> torch.Tensor:
        if kind not in ("grid", "grid_pooled"):
            return shipped_features(self, x, kind)
        # the shipped pass, stage 1's output kept on the way: its grid goes first (grid, then pooled, as shipped)
        stage1: list[torch.Tensor] = []
        hook = self.encoder.layer1.register_forward_hook(lambda _module, _inputs, out: stage1.append(out))
        try:
            shipped = shipped_features(self, x, kind)
        finally:
            hook.remove()
        return torch.cat([F.adaptive_avg_pool2d(stage1[0], model.GRID).flatten(1), shipped], dim=1)

    model.Con2Model.__init__, model.Con2Model.features = init, features


def main() -> None:
    changes = parse(os.environ.get("PROBE", ""))
    patch(changes)
    print(f"architecture probe: {changes or 'none'}", file=sys.stderr)
    suite = Path(__file__).resolve().with_name("quality.py")
    sys.argv = [str(suite), *sys.argv[1:]]
    runpy.run_path(str(suite), run_name="__main__")


if __name__ == "__main__":
    main()
