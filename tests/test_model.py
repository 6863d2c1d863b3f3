"""The encoders: ResNet18 and the narrow ResNet, with the small-image stem up to 64 px and ResNet's 7×7 stem above."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from engine.model import GRID, SMALL_STEM_MAX_SIZE, Con2Model, build_encoder


def images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("name,width", [("resnet18", 64), ("resnet_small", 16)])
def test_small_images_get_the_3x3_stride_1_stem_without_max_pool(name, width):
    net, feature_dim = build_encoder(name, SMALL_STEM_MAX_SIZE)
    assert feature_dim == 8 * width
    conv = net.conv1
    assert (conv.in_channels, conv.out_channels) == (3, width)
    assert (conv.kernel_size, conv.stride, conv.padding) == ((3, 3), (1, 1), (1, 1))
    assert isinstance(net.maxpool, nn.Identity) and isinstance(net.fc, nn.Identity)


@pytest.mark.parametrize("name,width", [("resnet18", 64), ("resnet_small", 16)])
def test_above_64_px_the_stem_is_resnets_7x7_stride_2_with_max_pool(name, width):
    net, feature_dim = build_encoder(name, SMALL_STEM_MAX_SIZE + 1)
    assert feature_dim == 8 * width
    conv = net.conv1
    assert (conv.in_channels, conv.out_channels) == (3, width)
    assert (conv.kernel_size, conv.stride, conv.padding) == ((7, 7), (2, 2), (3, 3))
    assert isinstance(net.maxpool, nn.MaxPool2d) and net.maxpool.stride == 2
    assert isinstance(net.fc, nn.Identity)


def test_resnet18_is_torchvisions_layout_and_size():
    net, _ = build_encoder("resnet18", 224)
    # torchvision's ResNet18 holds 11,689,512 parameters; its classifier (512 · 1000 + 1000) is dropped
    assert sum(p.numel() for p in net.parameters()) == 11_689_512 - 513_000
    assert [len(getattr(net, f"layer{i}")) for i in range(1, 5)] == [2, 2, 2, 2]
    assert [getattr(net, f"layer{i}")[0].conv1.out_channels for i in range(1, 5)] == [64, 128, 256, 512]


@pytest.mark.parametrize(
    "size,stage2_side",
    [(32, 16), (72, 9)],  # small stem: 32 → 32 → layer2 16; ResNet stem: 72 → conv 36 → pool 18 → layer2 9
)
def test_the_stem_sets_the_resolution_the_stages_see(size, stage2_side):
    torch.manual_seed(0)  # the weights' initialisation
    model = Con2Model("resnet_small", image_size=size, projection_dim=8).eval()
    seen = []
    hook = model.encoder.layer2.register_forward_hook(lambda module, inputs, output: seen.append(output.shape))
    try:
        with torch.no_grad():
            out = model(images(2, size))
    finally:
        hook.remove()
    assert seen[0] == (2, 32, stage2_side, stage2_side)
    assert out.features.shape == (2, 128) and out.z_context.shape == out.z_content.shape == (2, 8)
    assert torch.allclose(out.z_context.norm(dim=1), torch.ones(2), atol=1e-5)  # heads are L2-normalised
    with torch.no_grad():
        grid = model.features(images(2, size), "grid")
    assert grid.shape == (2, model.feature_size("grid")) == (2, 32 * GRID * GRID)


def test_resnet18_forward_above_64_px_gives_512_d_features():
    torch.manual_seed(0)
    model = Con2Model("resnet18", image_size=72, projection_dim=16).eval()
    with torch.no_grad():
        out = model(images(2, 72))
        grid = model.features(images(2, 72), "grid")
    assert out.features.shape == (2, 512) and out.z_content.shape == (2, 16)
    assert grid.shape == (2, model.feature_size("grid")) == (2, 128 * GRID * GRID)
    assert torch.isfinite(out.features).all()


def test_an_unknown_encoder_or_feature_kind_is_named():
    with pytest.raises(ValueError, match="resnet50"):
        build_encoder("resnet50", 32)
    with pytest.raises(ValueError, match="patches"):
        Con2Model("resnet_small", image_size=16, projection_dim=8).features(images(1, 16), "patches")


@pytest.mark.parametrize("size", [16, 72])
def test_the_two_stage_encoder_scores_the_same_grid_with_stages_3_and_4_gone(size):
    # resnet_small_s2 is resnet_small without stages 3 and 4: given the same stem and stages 1–2 it computes the same
    # grid features (what the scores compare), and its pooled output and heads read stage 2's map (32-d)
    torch.manual_seed(0)
    full = Con2Model("resnet_small", image_size=size, projection_dim=8).eval()
    short = Con2Model("resnet_small_s2", image_size=size, projection_dim=8).eval()
    kept = {k: v for k, v in full.encoder.state_dict().items() if not k.startswith(("layer3.", "layer4."))}
    short.encoder.load_state_dict(kept)  # strict: every stage-1–2 weight and nothing else
    assert not any(k.startswith(("layer3.", "layer4.")) for k in short.state_dict())
    x = images(3, size, seed=1)
    with torch.no_grad():
        assert torch.equal(short.features(x, "grid"), full.features(x, "grid"))
        out = short(x)
    assert short.feature_size("grid") == full.feature_size("grid") == 32 * GRID * GRID
    assert out.features.shape == (3, short.feature_size("pooled")) == (3, 32)
    assert out.z_content.shape == (3, 8)
    assert sum(p.numel() for p in short.encoder.parameters()) < sum(p.numel() for p in full.encoder.parameters()) / 4


def stem_map(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """An encoder's stem output (its max-pool an identity at ≤ 64 px)."""
    return net.maxpool(net.relu(net.bn1(net.conv1(x))))


def stage2_map(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Stage 2's map, the one the grid features average."""
    return net.layer2(net.layer1(stem_map(net, x)))


@pytest.mark.parametrize("size", [28, 72])
def test_the_half_width_two_stage_encoder_has_twice_the_channels_on_a_map_half_as_wide(size):
    # resnet_half_s2: ResNet18's stem and stages 1–2 at half width (32 → 64 channels); at ≤ 64 px its 3 × 3 stem
    # strides, so stage 2's map is a quarter of the small encoder's positions (7 × 7 at 28 px, docs/quality.md
    # finding 44); above 64 px both keep the standard 7 × 7/2 stem and max-pool
    torch.manual_seed(0)
    small = Con2Model("resnet_small_s2", image_size=size, projection_dim=8).eval()
    half = Con2Model("resnet_half_s2", image_size=size, projection_dim=8).eval()
    assert half.encoder.conv1.stride == (2, 2)
    assert small.encoder.conv1.stride == ((1, 1) if size <= 64 else (2, 2))
    assert not any(k.startswith(("layer3.", "layer4.")) for k in half.state_dict())
    x = images(2, size, seed=3)
    with torch.no_grad():
        stage2, small2, out = stage2_map(half.encoder, x), stage2_map(small.encoder, x), half(x)
    assert stage2.shape[1] == 2 * small2.shape[1] == 64
    if size <= 64:
        assert stage2.shape[-1] == (small2.shape[-1] + 1) // 2
    else:
        assert stage2.shape[-1] == small2.shape[-1]
    assert half.feature_size("grid") == 64 * GRID * GRID and out.features.shape == (2, 64)
    assert half.features(x, "grid").shape == (2, 64 * GRID * GRID)


@pytest.mark.parametrize("size", [28, 72])
def test_the_late_stride_option_keeps_the_stem_at_full_resolution_and_halves_the_map_in_stage_1(size):
    # resnet_half_late_s2: at ≤ 64 px the stem keeps every pixel and stage 1's first block strides (its shortcut a
    # strided 1 × 1 convolution), so stage 2's map is resnet_half_s2's 7 × 7 at 28 px; above 64 px both are ResNet's
    torch.manual_seed(0)
    late = Con2Model("resnet_half_late_s2", image_size=size, projection_dim=8).eval()
    half = Con2Model("resnet_half_s2", image_size=size, projection_dim=8).eval()
    net = late.encoder
    x = images(2, size, seed=4)
    with torch.no_grad():
        stem = stem_map(net, x)
        stage1, stage2, half2 = net.layer1(stem), stage2_map(net, x), stage2_map(half.encoder, x)
    if size <= 64:
        assert net.conv1.stride == (1, 1) and net.layer1[0].conv1.stride == (2, 2)
        assert stem.shape[-1] == size and stage1.shape[-1] == (size + 1) // 2
        assert net.layer1[0].downsample[0].stride == (2, 2)
    else:
        assert net.layer1[0].downsample is None and net.conv1.stride == (2, 2)
    assert stage2.shape == half2.shape and stage2.shape[1] == 64
    assert late.feature_size("grid") == 64 * GRID * GRID and late.features(x, "grid").shape == (2, 64 * GRID * GRID)
    # one 1 × 1 shortcut and its batch norm more than resnet_half_s2 at ≤ 64 px; the same network above
    extra = sum(p.numel() for p in late.parameters()) - sum(p.numel() for p in half.parameters())
    assert extra == (32 * 32 + 2 * 32 if size <= 64 else 0)


@pytest.mark.parametrize(
    "encoder, size",
    [
        ("resnet_small", 16),
        ("resnet_small_s2", 16),
        ("resnet_half_s2", 28),
        ("resnet_half_late_s2", 28),
        ("resnet18", 72),
    ],
)
def test_grid_and_pooled_features_from_one_pass_are_each_kind_alone_side_by_side(encoder, size):
    # S_LH's two Gaussians (ScoreConfig.lh_pooled) read both kinds from one forward pass: it must compute exactly what
    # two separate passes would, grid columns first
    torch.manual_seed(0)
    model = Con2Model(encoder, image_size=size, projection_dim=8).eval()
    x = images(3, size, seed=2)
    with torch.no_grad():
        both = model.features(x, "grid_pooled")
        grid, pooled = model.features(x, "grid"), model.features(x, "pooled")
    assert both.shape == (3, model.feature_size("grid_pooled")) == (3, grid.shape[1] + pooled.shape[1])
    torch.testing.assert_close(both[:, : grid.shape[1]], grid)
    torch.testing.assert_close(both[:, grid.shape[1] :], pooled)
