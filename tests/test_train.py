"""The training loop: progress and cancel through one callback, checkpoints and resume, loud failures."""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

import engine.train
from engine.augment import ContentAugmentation, con2_views
from engine.checkpoint import DirectoryCheckpoints
from engine.config import CONTEXTS, TrainConfig
from engine.model import Con2Model
from engine.train import NonFiniteLoss, TrainingCancelled, epoch_batches, steps_per_epoch, train


@pytest.fixture(scope="module")
def pixels():
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (24, 1, 12, 12), generator=g, dtype=torch.uint8)


def tiny(**overrides) -> TrainConfig:
    # invert, not the default auto: these tests call the step's internals, which take a context already chosen
    base = dict(epochs=2, batch_size=8, encoder="resnet_small", projection_dim=16, checkpoint_every=1, context="invert")
    return TrainConfig(**{**base, **overrides})


@pytest.mark.parametrize(
    "method", ["con2", "context_only", "content_only", "simclr", "csi", "self_oecl", "firm", "masked_contrastive"]
)
def test_every_method_trains_and_reports_each_step(pixels, method):
    reports = []
    trained = train(pixels, tiny(method=method), on_step=reports.append)
    assert [r.step for r in reports] == list(range(1, 7))  # 24 images / batch 8 = 3 steps × 2 epochs
    assert all(math.isfinite(r.loss) and r.images_per_s > 0 and r.lr > 0 for r in reports)
    assert [r.epoch_end for r in reports].count(True) == 2
    assert reports[-1].eta_s == pytest.approx(0.0)
    if method == "simclr":
        assert all(r.loss_context is None for r in reports)
    else:
        assert all(r.loss_context is not None and r.loss_content is not None for r in reports)
    assert len(trained.history) == 2 and not trained.model.training


def test_con2_objective_is_context_plus_alpha_content_with_alpha_annealed(pixels):
    reports = []
    # the paper's schedule and weights: L = L_context + α·L_content, α from 0 to 1
    train(pixels, tiny(epochs=3, alpha_schedule="linear", context_weight=1.0), on_step=reports.append)
    assert reports[0].alpha == 0.0 and reports[-1].alpha == 1.0
    alphas = [r.alpha for r in reports]
    assert alphas == sorted(alphas)
    for r in reports:
        assert r.loss == pytest.approx(r.loss_context + r.alpha * r.loss_content, rel=1e-4)


def test_the_default_recipe_weighs_content_fully_from_the_first_step(pixels):
    """The CPU recipe: α = 1 from the first step and λ = 0.3, L = λ·L_context + L_content."""
    reports = []
    config = tiny(epochs=2)
    train(pixels, config, on_step=reports.append)
    assert {r.alpha for r in reports} == {1.0} and config.context_weight == 0.3
    for r in reports:
        assert r.loss == pytest.approx(0.3 * r.loss_context + r.loss_content, rel=1e-4)


def test_learning_rate_follows_a_cosine_to_zero(pixels):
    reports = []
    train(pixels, tiny(epochs=4, lr=1e-3), on_step=reports.append)
    assert reports[0].lr == pytest.approx(1e-3)
    mid = len(reports) // 2
    assert reports[mid].lr == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * mid / len(reports))), rel=1e-6)
    assert reports[-1].lr < 1e-4


def test_callback_returning_false_cancels(pixels):
    seen = []

    def stop_at_three(report):
        seen.append(report.step)
        return report.step < 3

    with pytest.raises(TrainingCancelled):
        train(pixels, tiny(epochs=5), on_step=stop_at_three)
    assert seen == [1, 2, 3]


def test_resume_continues_from_the_last_checkpoint_and_matches_an_uninterrupted_run(pixels, tmp_path):
    config = tiny(epochs=4, checkpoint_every=2)
    straight = train(pixels, config)

    def stop_in_epoch_four(report):
        return report.epoch < 4  # cancels at the first step of epoch 4; last checkpoint: epoch 2

    store = DirectoryCheckpoints(tmp_path)
    with pytest.raises(TrainingCancelled):
        train(pixels, config, on_step=stop_in_epoch_four, checkpoints=store)
    assert store.load()["epoch"] == 2
    epochs_seen = []
    resumed = train(pixels, config, on_step=lambda r: epochs_seen.append(r.epoch), checkpoints=store)
    assert epochs_seen[0] == 3  # nothing before the checkpoint is redone
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-5)


def test_weight_average_follows_its_formula_and_copies_integer_buffers():
    model = torch.nn.BatchNorm1d(2)
    average = engine.train.WeightAverage(model, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(2.0)  # from 1 at the start
    model.num_batches_tracked.fill_(7)
    average.update(model, step=100)  # past the ramp: decay 0.9
    assert torch.allclose(average.state_dict()["weight"], torch.full((2,), 1.0 + 0.1 * (2.0 - 1.0)))
    assert int(average.state_dict()["num_batches_tracked"]) == 7
    average.update(model, step=0)  # the ramp: decay min(0.9, 1/10) = 0.1, so the average moves most of the way
    assert torch.allclose(average.state_dict()["weight"], torch.full((2,), 1.1 + 0.9 * (2.0 - 1.1)))
    copy = torch.nn.BatchNorm1d(2)
    average.copy_to(copy)
    assert torch.equal(copy.weight, average.state_dict()["weight"])


def test_an_averaged_run_returns_the_average_and_resumes_to_the_same_weights(pixels, tmp_path):
    config = tiny(epochs=4, checkpoint_every=2, ema_decay=0.9)
    straight = train(pixels, config)
    last = train(pixels, tiny(epochs=4, checkpoint_every=2))  # the same run without the average
    pairs = zip(straight.model.state_dict().values(), last.model.state_dict().values(), strict=True)
    assert any(not torch.equal(a, b) for a, b in pairs)
    store = DirectoryCheckpoints(tmp_path)
    with pytest.raises(TrainingCancelled):
        train(pixels, config, on_step=lambda r: r.epoch < 4, checkpoints=store)
    assert "average" in store.load()
    resumed = train(pixels, config, checkpoints=store)
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-5)


def test_a_cancel_at_an_epoch_end_keeps_that_epoch_and_times_add_up(pixels, tmp_path):
    config = tiny(epochs=4, checkpoint_every=10)  # only the cancel and the end write checkpoints
    store = DirectoryCheckpoints(tmp_path)
    with pytest.raises(TrainingCancelled):
        train(pixels, config, on_step=lambda r: not (r.epoch == 2 and r.epoch_end), checkpoints=store)
    first = store.load()
    assert first["epoch"] == 2 and [h["epoch"] for h in first["history"]] == [1, 2]
    resumed = train(pixels, config, checkpoints=store)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    assert resumed.wall_s > first["elapsed_s"] > 0  # the first session's time is counted too


def test_a_checkpoint_of_another_config_is_refused(pixels, tmp_path):
    store = DirectoryCheckpoints(tmp_path)
    train(pixels, tiny(epochs=1), checkpoints=store)
    with pytest.raises(ValueError, match="different config"):
        train(pixels, tiny(epochs=1, temperature=0.5), checkpoints=store)


def test_a_diverging_loss_stops_loudly(pixels):
    with pytest.raises(NonFiniteLoss, match="step"):
        train(pixels, tiny(epochs=3, lr=1e30))


def test_same_seed_same_model_different_seed_different_model(pixels):
    a = train(pixels, tiny(epochs=1, seed=1))
    b = train(pixels, tiny(epochs=1, seed=1))
    c = train(pixels, tiny(epochs=1, seed=2))
    wa, wb, wc = (next(m.model.encoder.parameters()) for m in (a, b, c))
    assert torch.equal(wa, wb)
    assert not torch.equal(wa, wc)


def test_amp_changes_nothing_on_the_cpu(pixels):
    """engine.device: no autocast on the CPU (bf16 there is slower), so amp on or off is one run, bit for bit."""
    on, off = [], []
    a = train(pixels, tiny(epochs=1, amp=True, device="cpu"), on_step=on.append)
    b = train(pixels, tiny(epochs=1, amp=False, device="cpu"), on_step=off.append)
    assert [(r.loss, r.loss_context, r.loss_content) for r in on] == [
        (r.loss, r.loss_context, r.loss_content) for r in off
    ]
    for wa, wb in zip(a.model.state_dict().values(), b.model.state_dict().values(), strict=True):
        assert torch.equal(wa, wb)


@pytest.mark.parametrize("method", ["con2", "simclr"])
def test_only_the_forward_pass_runs_under_autocast(pixels, monkeypatch, method):
    """Views are built before autocast and the losses computed after it (in float32), whatever the device."""
    events = []

    @contextlib.contextmanager
    def recording_autocast(device, amp):
        events.append("autocast(")
        yield
        events.append(")")

    def recorded(name, function):
        def wrapper(*args, **kwargs):
            events.append(name)
            return function(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(engine.train, "autocast", recording_autocast)
    for name in ("con2_views", "simclr_views", "context_contrasting_loss", "content_alignment_loss", "simclr_loss"):
        monkeypatch.setattr(engine.train, name, recorded(name, getattr(engine.train, name)))
    monkeypatch.setattr(Con2Model, "forward", recorded("forward", Con2Model.forward))
    train(pixels, tiny(epochs=1, method=method))
    views, losses = (
        ("simclr_views", ["simclr_loss"])
        if method == "simclr"
        else ("con2_views", ["context_contrasting_loss", "content_alignment_loss"])
    )
    one_step = [views, "autocast(", "forward", ")", *losses]
    assert events == one_step * 3  # 24 images / batch 8


def test_batches_cover_the_set_and_never_leave_a_lonely_image():
    batches = epoch_batches(17, 8, torch.Generator().manual_seed(0))
    assert [len(b) for b in batches] == [8, 8]  # the 17th image alone would have no positive pair
    assert steps_per_epoch(17, 8) == 2 and steps_per_epoch(18, 8) == 3 and steps_per_epoch(5, 8) == 1
    everything = torch.cat(epoch_batches(18, 8, torch.Generator().manual_seed(0)))
    assert sorted(everything.tolist()) == list(range(18))


def test_too_few_images_is_an_error():
    with pytest.raises(ValueError, match="at least 2"):
        train(torch.zeros(1, 1, 8, 8, dtype=torch.uint8), tiny())


class _Untouched(ContentAugmentation):
    """T as the identity: the views training builds are then exactly x and t_c(x)."""

    def __call__(self, x, generator):
        return x


def pil_context(image: torch.Tensor, context: str) -> torch.Tensor:
    """t_c of one (1, S, S) uint8 image by PIL's own operations, as a (3, S, S) float in [0, 1]."""
    picture = Image.fromarray(image[0].numpy())
    changed = ImageOps.flip(picture) if context == "flip" else ImageOps.equalize(picture)
    return torch.from_numpy(np.array(changed)).float().div(255).expand(3, -1, -1)


@pytest.mark.parametrize("context", ["flip", "equalize"])
def test_flip_and_equalize_make_the_context_views_inside_training(monkeypatch, context):
    # dark images (a skewed histogram, which equalisation spreads) of 20 × 20: PIL's equalisation leaves an
    # image of fewer than 256 pixels as it is (its step, (pixels − top count) // 255, is 0)
    g = torch.Generator().manual_seed(8)
    dark = torch.randint(0, 64, (24, 1, 20, 20), generator=g, dtype=torch.uint8)
    seen = []

    def spy(batch, context_arg, augmentation, generator, views_per_context):
        views = con2_views(batch, context_arg, _Untouched(augmentation.image_size), generator, views_per_context)
        seen.append((batch.clone(), context_arg, views.detach().clone()))
        return views

    monkeypatch.setattr(engine.train, "con2_views", spy)
    reports = []
    train(dark, tiny(epochs=1, context=context), on_step=reports.append)
    assert len(seen) == len(reports) == 3 and {c for _, c, _ in seen} == {context}
    for batch, _, views in seen:
        n = len(batch)
        plain = torch.stack([image.float().div(255).expand(3, -1, -1) for image in batch])
        expected = torch.stack([pil_context(image, context) for image in batch])
        assert not torch.allclose(expected, plain, atol=1e-2)  # the context half really differs
        assert torch.allclose(views[:n], (plain - 0.5) / 0.5, atol=1e-5)  # [t(x), t(x^c)], one view each
        assert torch.allclose(views[n:], (expected - 0.5) / 0.5, atol=1e-5)
    assert all(math.isfinite(r.loss_context) and math.isfinite(r.loss_content) for r in reports)


def test_the_context_changes_what_is_learned(pixels):
    # the same seed, batches and draws of T: only t_c differs, so the weights may only differ through it
    weights = {c: next(train(pixels, tiny(epochs=1, context=c)).model.encoder.parameters()) for c in CONTEXTS}
    assert not torch.equal(weights["invert"], weights["flip"])
    assert not torch.equal(weights["flip"], weights["equalize"])
    assert not torch.equal(weights["invert"], weights["equalize"])


@pytest.mark.parametrize("where", ["extra", "shared"])
def test_the_auxiliary_rotation_loss_adds_its_weighted_cross_entropy_and_trains_the_head(pixels, where):
    """L = λ·L_context + α·L_content + w·L_rotation: the extra term is linear in w, and its gradient reaches the
    rotation head and the encoder; extra embeds one more (turned) view per image, shared none."""
    config = tiny(rotation_weight=1.0, rotation_views=where)
    model = Con2Model("resnet_small", 12, 16, shift_classes=4)
    augmentation = ContentAugmentation.from_config(config, 12)
    batch = pixels[:8]
    seen = []
    model.register_forward_hook(lambda _m, args, _out: seen.append(args[0].shape[0]))

    def objective(weight: float):
        generator = torch.Generator().manual_seed(3)
        cfg = tiny(rotation_weight=weight, rotation_views=where)
        return engine.train._objective(model, batch, cfg, augmentation, generator, alpha=1.0)

    total, l_context, l_content = objective(1.0)
    base = 0.3 * l_context + l_content
    extra_1 = (total - base).item()
    total_2, l_context_2, l_content_2 = objective(2.0)
    extra_2 = (total_2 - (0.3 * l_context_2 + l_content_2)).item()
    assert extra_1 > 0.5  # a cross-entropy over 4 turns starts near log 4 = 1.39
    assert extra_2 == pytest.approx(2 * extra_1, rel=1e-4)
    assert seen[0] == (3 * 8 if where == "extra" else 2 * 8)
    model.zero_grad()
    (total - base).backward()
    assert model.shift_head.weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())


def test_turned_rotates_each_image_by_its_own_quarter_turns(pixels):
    turns = torch.tensor([0, 1, 2, 3, 3, 1])
    out = engine.train.turned(pixels[:6], turns)
    for image, original, k in zip(out, pixels[:6], turns.tolist(), strict=True):
        assert torch.equal(image, torch.rot90(original, k, dims=(-2, -1)))


def test_a_con2_model_carries_a_rotation_head_only_with_the_auxiliary_loss(pixels):
    assert train(pixels, tiny(epochs=1)).model.shift_head is None
    trained = train(pixels, tiny(epochs=1, rotation_weight=0.5))
    assert trained.model.shift_head is not None and trained.model.shift_head.out_features == 4


def test_a_context_temperature_of_its_own_changes_l_context_only(pixels):
    """context_temperature τ_c divides L_context's logits alone; 0 (the default) keeps one τ for both losses."""
    model = Con2Model("resnet_small", 12, 16)
    augmentation = ContentAugmentation.from_config(tiny(), 12)

    def losses(**fields):
        generator = torch.Generator().manual_seed(5)
        return engine.train._objective(model, pixels[:8], tiny(**fields), augmentation, generator, alpha=1.0)

    _, shared_context, shared_content = losses()
    _, same_context, same_content = losses(context_temperature=0.2)  # τ_c = τ: the same losses
    _, own_context, own_content = losses(context_temperature=1.0)
    assert same_context.item() == pytest.approx(shared_context.item(), rel=1e-6)
    assert own_content.item() == pytest.approx(shared_content.item(), rel=1e-6)
    assert abs(own_context.item() - shared_context.item()) > 1e-3


def test_split_batchnorm_standardises_each_context_by_its_own_statistics(pixels):
    """With split_batchnorm the originals' and the context images' views pass batch norm as two batches: each
    half's outputs are those of the model on that half alone, and the rows keep the one-batch layout."""
    torch.manual_seed(0)
    model = Con2Model("resnet_small", 12, 16, shift_classes=4).train()
    views = torch.randn(3 * 8, 3, 12, 12)  # 8 originals' views, 8 context images' views, 8 turned extra views
    joined = engine.train.per_context_forward(model, views, 8)
    alone_originals = model(torch.cat([views[:8], views[16:]]))
    alone_contexts = model(views[8:16])
    one_batch = model(views)
    assert joined.features.shape == one_batch.features.shape and joined.shift_logits.shape == (24, 4)
    torch.testing.assert_close(joined.z_context[:8], alone_originals.z_context[:8])
    torch.testing.assert_close(joined.z_context[16:], alone_originals.z_context[8:])
    torch.testing.assert_close(joined.z_content[8:16], alone_contexts.z_content)
    assert not torch.allclose(joined.features[8:16], one_batch.features[8:16], atol=1e-4)  # statistics differ


def test_split_batchnorm_trains_and_differs_from_one_shared_batch(pixels):
    reports = []
    split = train(pixels, tiny(epochs=1, split_batchnorm=True), on_step=reports.append)
    shared = train(pixels, tiny(epochs=1))
    assert all(math.isfinite(r.loss) for r in reports)
    w_split, w_shared = (next(m.model.encoder.parameters()) for m in (split, shared))
    assert not torch.equal(w_split, w_shared)
