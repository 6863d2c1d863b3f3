"""The encoder a run trains when its config says `auto`: chosen from the training images, as the context is.

The scores compare the grid features of the encoder's second stage (`Con2Model.features`); stages 3 and 4 of
resnet_small only feed the projection heads. `resnet_small_s2` drops them, so the heads read stage 2's pooled map
and a step costs 1.45–1.8× less. At equal wall time on the quality suite (docs/quality.md, finding 27, 3 seeds a
task unless said):
- greyscale images larger than 16 px: BreastMNIST +4.0 S_NND (every seed), PneumoniaMNIST +2.4 (every seed),
  BR35H −0.2 (99.4 → 99.2): the scans' anomalies are in layout and texture that stage 2 holds, and training it
  directly for 1.5× the epochs keeps more of them;
- colour photographs (CIFAR-10, one seed): airplane −4.9, automobile −12.6; the tiny digits (16 px): mean −0.5,
  digit 8 −3.2. There the deeper stages shape stage 2 in a way the two-stage encoder does not replace.
SimCLR on the same two stages at the same time lost 2.3 on BreastMNIST and gained 2.4 on PneumoniaMNIST: by the rule
a default must meet (a better mean and no worse worst case), not a gain, so `auto` keeps resnet_small for every method
but Con2 and its ablations (the peer methods were not measured on it).
So `auto` is resnet_small_s2 for Con2 on greyscale images above 16 px and resnet_small otherwise: for Con2 the same
split of the images as the `auto` context (engine/context_choice.py). The resolved name is what the run records (its
config, its model, its summary), so a saved model is rebuilt with the encoder it trained.

The auxiliary rotation task (TrainConfig.rotation_weight, beyond the paper) is chosen here too, from the same look
at the images: on for Con2 on colour photographs, off on greyscale images (`rotation_for`); and the batch size
(`batch_for`): 16 for Con2 on the scans, 32 otherwise. `resolve_auto` makes every `auto` choice of a run at once,
the precision last (engine/device.py's `precision_for`), since what bfloat16 buys depends on the encoder, the
image size and the batch chosen before it, and on the machine that trains.
"""

from __future__ import annotations

import dataclasses

import torch

from engine.config import AUTO_BATCH, AUTO_CONTEXT, AUTO_ENCODER, AUTO_PRECISION, CON2_METHODS, TrainConfig
from engine.context_choice import context_for, is_greyscale, scan_like, scan_of
from engine.device import precision_for, resolve_device


def encoder_for(method: str, scan: bool) -> str:
    """The encoder `auto` stands for when `method` trains on images that are (or are not) `scan_like`."""
    return "resnet_small_s2" if scan and method in CON2_METHODS else "resnet_small"


def choose_encoder(pixels: torch.Tensor, method: str = "con2") -> str:
    """The encoder `auto` stands for when `method` trains on these images: resnet_small_s2 for Con2 and its
    ablations on greyscale images larger than 16 px, resnet_small otherwise."""
    return encoder_for(method, scan_like(pixels))


def resolve_encoder(config: TrainConfig, pixels: torch.Tensor) -> TrainConfig:
    """`config` with `auto` replaced by the encoder chosen for its method and `pixels`, the training images as they
    train (resized); any other value is kept as it is."""
    if config.encoder != AUTO_ENCODER:
        return config
    return dataclasses.replace(config, encoder=choose_encoder(pixels, config.method))


def rotation_for(method: str, greyscale: bool) -> float:
    """The rotation weight `auto` (a negative TrainConfig.rotation_weight) stands for when `method` trains on
    images that are (or are not) greyscale: 1 for Con2 and its ablations on colour photographs, 0 otherwise.

    Measured at the suite's budget (docs/quality.md, findings 25, 29 and 30): on CIFAR-10 the task lifted the mean
    of the ten classes on two seeds on two CPUs (+3.9, +0.5) and never lowered the worst class; on the
    greyscale scans it lifted BreastMNIST but cost PneumoniaMNIST 2.7 (resnet_small) and 15 (the two-stage
    encoder) points, and it was level on BR35H and the digits. A chest x-ray's orientation is given away by its
    layout, so the head learns what every x-ray shares; a photograph's is not."""
    return 1.0 if not greyscale and method in CON2_METHODS else 0.0


def batch_for(method: str, scan: bool) -> int:
    """The batch size `auto` (TrainConfig.batch_size = 0) stands for when `method` trains on images that are (or are
    not) `scan_like`: 16 for Con2 and its ablations on the scans, 32 otherwise.

    Measured at equal wall time on the quality suite (docs/quality.md finding 34, 3 seeds): against the batch of 64
    or 128 the suite declared before, batch 16 lifted BreastMNIST by 3.2 (71.8 against 68.6 S_NND), PneumoniaMNIST
    by 1.0 and BR35H by 0.1, each task's worst seed too, and put BR35H's trained encoder above its random
    initialisation: a few hundred scans get 4–8 times the optimisation steps in the same time. On CIFAR-10 (one
    seed) it was level on the mean with classes moving both ways by up to 4.4 points, the worst class 2.5 lower, and
    on the 16 px digits 0.06 lower and 15 % slower than 32: there the rule a default must meet (a better mean, no
    worse worst case) does not hold, so they keep 32, the CPU preset's batch since it shipped. SimCLR and the peers
    were not measured for a default: 32."""
    return 16 if scan and method in CON2_METHODS else 32


def resolve_auto(config: TrainConfig, pixels: torch.Tensor) -> TrainConfig:
    """`config` with an `auto` context, encoder, rotation weight, batch size and precision resolved on `pixels`, the
    training images as they train, and on this machine (the precision). Every choice but the precision splits the
    images by whether they are greyscale (and, for the context, the encoder and the batch, larger than 16 px), so
    the images are looked at once (up to 2,048 of them, converted to compare channels), not once per choice."""
    auto_rotation = config.rotation_weight < 0
    auto_batch = config.batch_size == AUTO_BATCH
    if config.context == AUTO_CONTEXT or config.encoder == AUTO_ENCODER or auto_rotation or auto_batch:
        greyscale = is_greyscale(pixels)
        scan = scan_of(greyscale, int(pixels.shape[-1]))
        config = dataclasses.replace(
            config,
            context=context_for(scan) if config.context == AUTO_CONTEXT else config.context,
            encoder=encoder_for(config.method, scan) if config.encoder == AUTO_ENCODER else config.encoder,
            rotation_weight=rotation_for(config.method, greyscale) if auto_rotation else config.rotation_weight,
            batch_size=batch_for(config.method, scan) if auto_batch else config.batch_size,
        )
    if config.precision != AUTO_PRECISION:
        return config
    device = resolve_device(config.device)
    chosen = precision_for(device, config.amp, config.encoder, int(pixels.shape[-1]), config.batch_size)
    return dataclasses.replace(config, precision=chosen)
