"""The momentum teacher of BYOL and MoCo: frozen copies of the student's encoder and head,
moved towards the student by EMA in the method's ``after_step`` only."""

from __future__ import annotations

import torch
from torch import nn

from ssl4rl.encoders import Encoder
from ssl4rl.parts.momentum import ema_update, frozen_copy


class MomentumTeacher(nn.Module):
    """``encoder`` and ``head``: ``frozen_copy`` of the student's encoder and projection head."""

    def __init__(self, encoder: Encoder, head: nn.Module) -> None:
        super().__init__()
        self.encoder = frozen_copy(encoder)
        self.head = frozen_copy(head)

    @torch.no_grad()
    def update(self, encoder: Encoder, head: nn.Module, momentum: float) -> None:
        """teacher <- momentum * teacher + (1 - momentum) * student, for the encoder and the head."""
        ema_update(self.encoder, encoder, momentum)
        ema_update(self.head, head, momentum)
