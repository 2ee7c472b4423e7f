"""The small shared base of every SSL method."""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from ssl4rl.encoders import Encoder


class SSLMethod(nn.Module, abc.ABC):
    """An encoder plus whatever heads/decoders a method trains with it.

    ``training_step`` takes a batch of normalised float images (N,3,S,S) and
    returns the loss and a dict of scalars to log. ``save_figures`` may write
    method-specific figures at each checkpoint.
    """

    name: ClassVar[str]
    needs_arch: ClassVar[str | None] = None

    def __init__(self, encoder: Encoder) -> None:
        super().__init__()
        self.encoder = encoder

    @abc.abstractmethod
    def training_step(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """One batch -> (loss, scalars to log)."""

    def save_figures(self, images: torch.Tensor, folder: Path, step: int) -> list[Path]:
        """Write figures for a checkpoint; returns their paths (none by default)."""
        return []

    def hparams(self) -> dict[str, Any]:
        """Method hyper-parameters recorded with the saved encoder."""
        return {}
