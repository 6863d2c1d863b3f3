"""The training loop: Con2 (Eq. 8), its ablations, the SimCLR baseline and the peer methods CSI, self-OECL, FIRM
and masked contrastive learning.

The loop does no I/O of its own beyond optional checkpoints: it reports every step through one
callback, which may also cancel the run by returning False. The whole uint8 training set moves to
the device once when it fits (else batches stream from pinned memory); batches are augmented on the
device (engine.augment), so a GPU is never waiting on a CPU data loader. Device, precision and
determinism follow engine.device: views are built in float32, the forward pass runs under its
autocast, the losses in float32 after it.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from engine import csi, firm, masked, oecl
from engine.augment import ContentAugmentation, con2_views, normalize, simclr_views, to_float
from engine.checkpoint import CheckpointStore
from engine.config import TrainConfig
from engine.device import BatchFeed, autocast, deterministic, resolve_device, runs_in_bfloat16
from engine.encoder_choice import resolve_auto
from engine.losses import alpha_at, content_alignment_loss, context_contrasting_loss, simclr_loss
from engine.model import Con2Model, Con2Output, shift_classes
from engine.rotations import ROTATIONS, rotate

# Keep the training set on the GPU when it takes at most this share of free memory; else stream it.
DEVICE_RESIDENT_SHARE = 0.3


class TrainingCancelled(Exception):
    """The progress callback asked the run to stop."""


class CheckpointMismatch(ValueError):
    """The output's saved checkpoint belongs to another config or dataset; resuming would mix two runs."""


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; training stops instead of writing garbage."""


@dataclass(frozen=True)
class StepReport:
    """What the progress callback receives after every optimisation step."""

    step: int  # steps done so far, 1-based
    total_steps: int
    epoch: int  # current epoch, 1-based
    epochs: int
    loss: float  # the optimised objective
    loss_context: float | None  # L_context (None for SimCLR)
    loss_content: float | None  # L_content (the NT-Xent loss for SimCLR)
    alpha: float  # weight of L_content in Eq. 8 at this step
    lr: float
    images_per_s: float  # original training images per second since the start (4 views each for Con2)
    elapsed_s: float
    epoch_end: bool  # True on the last step of an epoch
    eta_s: float  # seconds left at this session's pace


StepCallback = Callable[[StepReport], "bool | None"]


@dataclass
class TrainedModel:
    """A trained encoder with everything needed to score with it later."""

    model: Con2Model
    config: TrainConfig
    image_size: int
    device: torch.device
    history: list[dict[str, float]] = field(default_factory=list)  # per-epoch mean losses, α, lr
    wall_s: float = 0.0
    images_per_s: float = 0.0


def epoch_batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Shuffled index batches of one epoch; a final batch of one image (no positive pair) is dropped."""
    order = torch.randperm(n, generator=generator)
    batches = list(order.split(batch_size))
    if len(batches) > 1 and len(batches[-1]) < 2:
        batches.pop()
    return batches


def steps_per_epoch(n: int, batch_size: int) -> int:
    full, rest = divmod(n, batch_size)
    return full + (1 if rest >= 2 or full == 0 else 0)


def _resume_key(config: TrainConfig, image_size: int, n: int) -> dict[str, Any]:
    """What must match for a checkpoint to continue this run (the device, and so the precision, may differ)."""
    key = dataclasses.asdict(config)
    key.pop("device"), key.pop("amp"), key.pop("precision"), key.pop("checkpoint_every")
    return {"config": key, "image_size": image_size, "n_train": n}


def _with_defaults(key: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint saved before a config field existed was made with that field's default."""
    defaults = _resume_key(TrainConfig(), key.get("image_size", 0), key.get("n_train", 0))["config"]
    return {**key, "config": {**defaults, **key.get("config", {})}}


@deterministic()
def train(
    pixels: torch.Tensor,
    config: TrainConfig,
    *,
    on_step: StepCallback | None = None,
    checkpoints: CheckpointStore | None = None,
) -> TrainedModel:
    """Train an encoder on normal images.

    pixels: (N, C, S, S) uint8 training images (C = 1 or 3), N ≥ 2. Returns the trained model in
    eval mode. With a checkpoint store, a checkpoint is written every `config.checkpoint_every`
    epochs and at the end, and a run whose store already holds one resumes after its last
    completed epoch. Raises TrainingCancelled when `on_step` returns False, NonFiniteLoss when the
    loss is NaN or infinite.
    """
    n, _, image_size, _ = pixels.shape
    if n < 2:
        raise ValueError(f"training needs at least 2 images, got {n}")
    # `auto` → the context and encoder the model records, scores with and is rebuilt with
    config = resolve_auto(config, pixels)
    device = resolve_device(config.device)
    bf16 = runs_in_bfloat16(device, config)  # the precision the run records: every forward pass of its model
    torch.manual_seed(config.seed)
    model = Con2Model(
        config.encoder, image_size, config.projection_dim, shift_classes(config.method, config.rotation_weight)
    )
    model = model.to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, betas=(0.9, 0.999), weight_decay=config.weight_decay
    )
    per_epoch = steps_per_epoch(n, config.batch_size)
    total_steps = config.epochs * per_epoch
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    augmentation = ContentAugmentation.from_config(config, image_size)

    average = WeightAverage(model, config.ema_decay) if config.ema_decay > 0 else None
    start_epoch, history, earlier_s, earlier_images = 0, [], 0.0, 0
    key = _resume_key(config, image_size, n)
    saved = checkpoints.load() if checkpoints is not None else None
    if saved is not None:
        if _with_defaults(saved["key"]) != key:
            raise CheckpointMismatch(
                "the saved checkpoint was made with a different config or dataset: resuming would mix two runs; "
                "train into a new output directory"
            )
        model.load_state_dict(saved["model"])
        if average is not None:
            average.load_state_dict(saved["average"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        start_epoch, history = saved["epoch"], saved["history"]
        earlier_s, earlier_images = saved.get("elapsed_s", 0.0), saved.get("images_seen", 0)

    data = BatchFeed(pixels, device, resident_share=DEVICE_RESIDENT_SHARE)
    model.train()
    step = first_step = start_epoch * per_epoch
    started = time.perf_counter()
    images_seen = 0
    for epoch in range(start_epoch, config.epochs):
        # a per-epoch seed makes every epoch reproducible, also after resuming mid-run
        cpu_gen = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
        aug_gen = torch.Generator(device=device).manual_seed(config.seed * 100_003 + epoch)
        sums = {"loss": 0.0, "loss_context": 0.0, "loss_content": 0.0}
        batches = epoch_batches(n, config.batch_size, cpu_gen)
        for i, index in enumerate(batches):
            batch = data.take(index)
            alpha = alpha_at(step, total_steps, config.alpha_schedule)
            loss, l_context, l_content = _objective(
                model, batch, config, augmentation, aug_gen, alpha, progress=step / total_steps, bf16=bf16
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if average is not None:
                average.update(model, step)
            lr = scheduler.get_last_lr()[0]
            scheduler.step()
            step += 1
            images_seen += len(index)
            values = torch.stack([loss.detach(), l_context.detach(), l_content.detach()]).float().tolist()
            if not math.isfinite(values[0]):
                raise NonFiniteLoss(
                    f"loss became {values[0]} at step {step} (epoch {epoch + 1}); "
                    "lower the learning rate or raise the temperature"
                )
            for name, v in zip(sums, values, strict=True):
                sums[name] += v
            elapsed = time.perf_counter() - started
            report = StepReport(
                step=step,
                total_steps=total_steps,
                epoch=epoch + 1,
                epochs=config.epochs,
                loss=values[0],
                loss_context=None if config.method == "simclr" else values[1],
                loss_content=values[2],
                alpha=alpha,
                lr=lr,
                images_per_s=images_seen / max(elapsed, 1e-9),
                elapsed_s=elapsed,
                epoch_end=i == len(batches) - 1,
                eta_s=elapsed / (step - first_step) * (total_steps - step),
            )
            cancelled = on_step is not None and on_step(report) is False
            if report.epoch_end:
                history.append(
                    {"epoch": epoch + 1, "alpha": alpha, "lr": lr} | {k: v / len(batches) for k, v in sums.items()}
                )
                done = epoch + 1
                # a cancel at an epoch's end keeps that epoch: the next session resumes after it
                if checkpoints is not None and (
                    cancelled or done % config.checkpoint_every == 0 or done == config.epochs
                ):
                    checkpoints.save(
                        {
                            "key": key,
                            "epoch": done,
                            "history": history,
                            "model": model.state_dict(),
                            **({"average": average.state_dict()} if average is not None else {}),
                            "optimizer": optimizer.state_dict(),
                            "scheduler": scheduler.state_dict(),
                            "elapsed_s": earlier_s + elapsed,  # so times cover every session of a resumed run
                            "images_seen": earlier_images + images_seen,
                        },
                    )
            if cancelled:
                raise TrainingCancelled(f"cancelled at step {step} of {total_steps}")
    wall = earlier_s + time.perf_counter() - started
    if average is not None:
        average.copy_to(model)
    model.eval()
    return TrainedModel(
        model, config, image_size, device, history, wall, (earlier_images + images_seen) / max(wall, 1e-9)
    )


class WeightAverage:
    """An exponential moving average of a model's weights and batch-norm statistics over training steps.

    The decay ramps up as min(decay, (1 + t) / (10 + t)) at step t, so the average does not hold on to the random
    initialisation for the first hundreds of steps of a short run (at 0.99 it reaches full decay after ~900).
    Integer buffers (batch norm's step counters) are copied, not averaged.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.state = {name: value.detach().clone() for name, value in model.state_dict().items()}

    def update(self, model: torch.nn.Module, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for name, value in model.state_dict().items():
                kept = self.state[name]
                if kept.is_floating_point():
                    kept.lerp_(value.detach(), 1.0 - decay)
                else:
                    kept.copy_(value)

    def copy_to(self, model: torch.nn.Module) -> None:
        model.load_state_dict(self.state)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for name, value in state.items():
            self.state[name].copy_(value)


def _objective(
    model: Con2Model,
    batch: torch.Tensor,
    config: TrainConfig,
    augmentation: ContentAugmentation,
    generator: torch.Generator,
    alpha: float,
    *,
    progress: float = 0.0,
    bf16: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(optimised loss, L_context, L_content) for one batch of N uint8 originals; `progress`: steps done / total.

    The views are built before autocast and the losses computed after it: only the forward pass runs in
    bfloat16 (when `bf16`: the run's precision, engine.device).
    """
    tau = config.temperature
    if config.method == "simclr":
        views = simclr_views(batch, augmentation, generator).contiguous(memory_format=torch.channels_last)
        with autocast(batch.device, bf16):
            out = model(views)
        l_content = simclr_loss(out.z_content, tau)
        return l_content, torch.zeros_like(l_content), l_content
    # CSI and self-OECL: the method's contrastive loss is reported as L_content, its auxiliary term (CSI's
    # rotation cross-entropy, self-OECL's norm penalty) as L_context, so the loss history keeps its columns
    if config.method == "csi":
        views, labels = csi.csi_views(batch, augmentation, generator)
        with autocast(batch.device, bf16):
            out = model(views.contiguous(memory_format=torch.channels_last))  # 8N views
        total, l_con, l_cls = csi.csi_loss(out.z_content, out.shift_logits, labels, tau)
        return total, l_cls, l_con
    if config.method == "self_oecl":
        views = oecl.oecl_views(batch, augmentation, generator).contiguous(memory_format=torch.channels_last)
        with autocast(batch.device, bf16):
            out = model(views)  # 8N views: 4N normal instances, 4N rotated outliers
        total, l_con, l_norm = oecl.oecl_loss(out.z_content, out.content_raw, tau, oecl.norm_weight(progress))
        return total, l_norm, l_con
    # FIRM: its normal anchors' loss as L_content, its outlier anchors' as L_context (L is their mean)
    if config.method == "firm":
        views, groups = firm.firm_views(batch, augmentation, generator)
        with autocast(batch.device, bf16):
            out = model(views.contiguous(memory_format=torch.channels_last))  # 4N views: 2N normal, 2N outlier
        total, l_normal, l_outlier = firm.firm_loss(out.z_content, groups, tau)
        return total, l_outlier, l_normal
    if config.method == "masked_contrastive":
        views, labels = csi.csi_views(batch, augmentation, generator)  # CSI's 8N views: the rotations are classes
        with autocast(batch.device, bf16):
            out = model(views.contiguous(memory_format=torch.channels_last))
        total, l_con, l_cls = masked.masked_loss(out.z_content, out.shift_logits, labels, tau)
        return total, l_cls, l_con
    k, n = config.views_per_context, batch.shape[0]
    rotating = config.rotation_weight > 0
    turns = torch.randint(0, ROTATIONS, (n,), generator=generator, device=batch.device) if rotating else None
    if rotating and config.rotation_views == "shared":
        batch = turned(batch, turns)  # each original, and so its context image, by its own quarter turn
    views = con2_views(batch, config.context, augmentation, generator, k)
    if rotating and config.rotation_views == "extra":
        views = torch.cat([views, rotation_views(batch, turns, augmentation, generator)])
    views = views.contiguous(memory_format=torch.channels_last)
    with autocast(batch.device, bf16):
        out = per_context_forward(model, views, k * n) if config.split_batchnorm else model(views)  # 2kN (+ N)
    m = 2 * k * n
    l_context = context_contrasting_loss(out.z_context[:m], config.context_temperature or tau, k)
    l_content = content_alignment_loss(out.z_content[:m], tau, k)
    if config.method == "context_only":
        total = l_context
    elif config.method == "content_only":
        total = l_content
    else:
        total = config.context_weight * l_context + alpha * l_content
    if rotating:
        # shared: the head reads the kN views of the originals (rows before the context images'); a context
        # such as a flip would make the turn of a context image ambiguous
        logits = out.shift_logits[m:] if config.rotation_views == "extra" else out.shift_logits[: k * n]
        total = total + config.rotation_weight * csi.rotation_loss(logits.float(), turns.repeat(len(logits) // n))
    return total, l_context, l_content


def per_context_forward(model: Con2Model, views: torch.Tensor, originals: int) -> Con2Output:
    """The model on two batches: the first `originals` rows (the originals' views, with any turned extra views
    after the context images' rows), then the context images' views, so that in training mode each batch-norm
    layer standardises a context by its own statistics. One shared batch would let the first layer tell the
    contexts apart by their means alone (an inverted image is 1 − x), which the context loss then rewards.
    """
    m = 2 * originals
    first = torch.cat([views[:originals], views[m:]])
    a, b = model(first), model(views[originals:m])

    def joined(x: torch.Tensor | None, y: torch.Tensor | None) -> torch.Tensor | None:
        # rows back in the one-batch layout: originals', context images', then the extra views
        return None if x is None else torch.cat([x[:originals], y, x[originals:]])

    return Con2Output(*(joined(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(Con2Output)))


def turned(images: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """images: (N, C, S, S), each rotated counter-clockwise by its own quarter turns (N,) (0–3)."""
    out = images.clone()
    for k in range(1, ROTATIONS):
        chosen = turns == k
        if chosen.any():
            out[chosen] = rotate(images[chosen], k)
    return out


def rotation_views(
    pixels: torch.Tensor, turns: torch.Tensor, augmentation: ContentAugmentation, generator: torch.Generator
) -> torch.Tensor:
    """One draw of T of each of N uint8 originals, then turned by its quarter turns: (N, 3, S', S') normalised.

    Turned after T so that T's horizontal flip cannot make a 90° turn look like a 270° one.
    """
    return normalize(turned(augmentation(to_float(pixels), generator), turns))
