"""Fine-tuning: the encoder plus a linear head trained end to end on labelled uint8 images.

A copy of the encoder is trained (the caller's encoder is left untouched) with AdamW,
a smaller learning rate for the encoder than for the head, and augmentation in [0, 1]
before the encoder's ``normalize``: DrQ random shift (``ssl4rl.augment.random_shift``)
and, for natural images, a random horizontal flip (``random_hflip``). Top-1 is measured on the test images
in eval mode. Sized for a CPU: a few epochs by default.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F

from ssl4rl.augment import random_hflip, random_shift
from ssl4rl.encoders import Encoder
from ssl4rl.eval.linear import top1
from ssl4rl.utils import progress_bar


def _unit_images(frames: torch.Tensor, size: int, device: torch.device) -> torch.Tensor:
    """uint8 (N,3,H,W) -> float in [0, 1] at ``size`` x ``size`` on ``device``."""
    x = frames.to(device, torch.float32) / 255.0
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
    return x


def finetune(
    encoder: Encoder,
    train_images: torch.Tensor,
    train_labels: torch.Tensor,
    test_images: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: int | None = None,
    epochs: int = 3,
    batch_size: int = 64,
    lr: float = 1e-4,
    head_lr: float = 1e-3,
    weight_decay: float = 0.05,
    shift_pad: int = 4,
    flip: bool = True,
    generator: torch.Generator | None = None,
    progress: bool = True,
    desc: str = "fine-tune",
) -> dict[str, Any]:
    """Train a copy of ``encoder`` + a linear head on uint8 images (N,3,H,W); top-1 on test.

    Returns ``{'top1', 'epochs', 'train_loss' (mean over the last epoch), 'lr', 'head_lr'}``.
    """
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    device = encoder.mean.device
    model = copy.deepcopy(encoder).train()
    train_labels, test_labels = train_labels.long(), test_labels.long()
    if num_classes is None:
        num_classes = int(max(train_labels.max().item(), test_labels.max().item() if len(test_labels) else 0)) + 1
    head = torch.nn.Linear(model.feature_dim, num_classes).to(device)
    torch.nn.init.zeros_(head.weight)  # a zero head (no global RNG): seeded runs repeat
    torch.nn.init.zeros_(head.bias)
    opt = torch.optim.AdamW(
        [{"params": model.parameters(), "lr": lr}, {"params": head.parameters(), "lr": head_lr}],
        weight_decay=weight_decay,
    )
    steps_per_epoch = -(-len(train_images) // batch_size)
    losses: list[float] = []
    with progress_bar(total=epochs * steps_per_epoch, desc=desc, disable=not progress, leave=False) as bar:
        for _ in range(epochs):
            losses = []
            for idx in torch.randperm(len(train_images), generator=generator).split(batch_size):
                x = random_shift(_unit_images(train_images[idx], model.image_size, device), shift_pad, generator)
                if flip:
                    x = random_hflip(x, 0.5, generator)
                loss = F.cross_entropy(head(model.forward_features(model.normalize(x))), train_labels[idx].to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(loss.item())
                bar.update(1)
    model.eval()
    with torch.no_grad():
        logits = torch.cat([head(model(chunk)).cpu() for chunk in test_images.split(256)])
    return {
        "top1": top1(logits, test_labels),
        "epochs": epochs,
        "train_loss": float(sum(losses) / max(1, len(losses))),
        "lr": lr,
        "head_lr": head_lr,
    }
