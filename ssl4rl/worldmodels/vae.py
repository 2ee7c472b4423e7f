"""V of the recurrent world model (Ha & Schmidhuber, "World Models", 2018): frames -> a small latent z.

Two kinds, one interface (``z_dim``, ``latent(frames) -> (mu, logvar | None)``, ``decodes``):

- ``ConvVAE`` (kind ``vae``): the paper's convolutional VAE. Encoder: four 4x4 stride-2 convolutions with
  32, 64, 128, 256 channels (ReLU), then linear layers to the mean and log-variance of z (32 by default);
  decoder: a linear layer and four 4x4 stride-2 transposed convolutions back to RGB (sigmoid). Loss as the
  paper's code: the squared error summed over pixels plus the KL to N(0, I), the KL clipped from below at
  ``kl_tolerance * z_dim`` nats (free bits). Deviation: the convolutions are padded (1 pixel) and the transposed
  ones mirror them, so any image size divisible by 16 works (the paper's unpadded layers fit 64 px only); at
  64 px the maps are 32, 16, 8, 4 px (the paper's 31, 14, 6, 2), a 4096- instead of 1024-value code.
- ``ProjectedEncoder`` (kind ``projected_encoder``): any saved ssl4rl encoder, frozen, followed by a fixed
  linear map fitted once on the training frames: PCA to ``z_dim`` components scaled to unit variance, or
  (``project="none"``) every feature standardised. It has no decoder.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ssl4rl.encoders import Encoder
from ssl4rl.errors import UserError
from ssl4rl.worldmodels.io import WorldModel, encoder_from_spec, encoder_spec, register_world_model

CHANNELS = (32, 64, 128, 256)


def _frames01(frames: torch.Tensor | np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 (N,3,H,W) frames -> float in [0, 1] on ``device``."""
    return torch.as_tensor(frames).to(device, torch.float32) / 255.0


@register_world_model
class ConvVAE(WorldModel):
    """The world-models convolutional VAE on square RGB frames (size divisible by 16)."""

    kind = "vae"
    decodes = True

    def __init__(self, image_size: int = 64, z_dim: int = 32, kl_tolerance: float = 0.5) -> None:
        super().__init__()
        if not isinstance(image_size, int) or image_size % 16 or not 16 <= image_size <= 256:
            raise UserError(f"image_size={image_size}: the VAE needs a multiple of 16 from 16 to 256 (e.g. 64)")
        if not isinstance(z_dim, int) or not 1 <= z_dim <= 4096:
            raise UserError(f"z_dim={z_dim}: must be a whole number from 1 to 4096")
        self.image_size, self.z_dim, self.kl_tolerance = image_size, z_dim, float(kl_tolerance)
        self.grid = image_size // 16
        flat = CHANNELS[-1] * self.grid ** 2
        layers: list[nn.Module] = []
        for c_in, c_out in zip((3, *CHANNELS[:-1]), CHANNELS, strict=True):
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.ReLU()]
        self.encoder = nn.Sequential(*layers, nn.Flatten())
        self.to_mu, self.to_logvar = nn.Linear(flat, z_dim), nn.Linear(flat, z_dim)
        self.from_z = nn.Linear(z_dim, flat)
        layers = []
        for c_in, c_out in zip(CHANNELS[::-1], (*CHANNELS[::-1][1:], 3), strict=True):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), nn.ReLU() if c_out != 3 else nn.Sigmoid()]
        self.decoder = nn.Sequential(*layers)

    def config(self) -> dict[str, Any]:
        return {"image_size": self.image_size, "z_dim": self.z_dim, "kl_tolerance": self.kl_tolerance}

    def encode(self, x01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images in [0, 1] (N,3,S,S) -> posterior mean and log-variance (N, z_dim) each."""
        h = self.encoder(x01)
        return self.to_mu(h), self.to_logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (N, z_dim) -> images in [0, 1] (N,3,S,S)."""
        h = F.relu(self.from_z(z)).view(-1, CHANNELS[-1], self.grid, self.grid)
        return self.decoder(h)

    def loss(self, frames: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """The VAE loss on uint8 frames (N,3,S,S): summed squared error + clipped KL, both averaged over the batch."""
        x = _frames01(frames, self.to_mu.weight.device)
        mu, logvar = self.encode(x)
        eps = torch.randn(mu.shape, generator=generator).to(mu.device)  # a CPU generator, so runs resume anywhere
        recon = self.decode(mu + torch.exp(0.5 * logvar) * eps)
        rec = (recon - x).pow(2).sum(dim=(1, 2, 3)).mean()
        kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)).mean()
        total = rec + kl.clamp(min=self.kl_tolerance * self.z_dim)
        return total, {"loss": total.item(), "recon": rec.item(), "kl": kl.item()}

    @torch.no_grad()
    def latent(self, frames: torch.Tensor | np.ndarray, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 frames (N,3,S,S) -> (mu, logvar), each (N, z_dim) on the model's device."""
        dev = self.to_mu.weight.device
        frames = torch.as_tensor(frames)
        if frames.shape[-1] != self.image_size or frames.shape[-2] != self.image_size:
            raise UserError(f"frames of {tuple(frames.shape[-2:])} px; this VAE takes {self.image_size} px")
        out = [self.encode(_frames01(chunk, dev)) for chunk in frames.split(batch_size)]
        return torch.cat([o[0] for o in out]), torch.cat([o[1] for o in out])


@register_world_model
class ProjectedEncoder(WorldModel):
    """A frozen ssl4rl encoder followed by a fixed linear map to z: ``z = (features - mean) @ components.T / scale``."""

    kind = "projected_encoder"
    decodes = False

    def __init__(self, encoder: dict[str, Any], feature_dim: int, z_dim: int) -> None:
        super().__init__()
        if not isinstance(feature_dim, int) or not isinstance(z_dim, int) or not 1 <= z_dim <= feature_dim:
            raise UserError(f"z_dim={z_dim}: must be a whole number from 1 to the encoder's feature size {feature_dim}")
        self.encoder: Encoder = encoder_from_spec(encoder)
        self.encoder.requires_grad_(False)
        self.feature_dim, self.z_dim = feature_dim, z_dim
        self.register_buffer("mean", torch.zeros(feature_dim))
        self.register_buffer("components", torch.eye(z_dim, feature_dim))
        self.register_buffer("scale", torch.ones(z_dim))

    def config(self) -> dict[str, Any]:
        return {"encoder": encoder_spec(self.encoder), "feature_dim": self.feature_dim, "z_dim": self.z_dim}

    @classmethod
    def fit(cls, encoder: Encoder, frames: torch.Tensor | np.ndarray, z_dim: int | None) -> ProjectedEncoder:
        """Wrap ``encoder`` and fit the map on ``frames``: PCA to ``z_dim`` components (unit variance), or with
        ``z_dim=None`` every feature standardised."""
        feats = encoder.encode(frames).double()
        mean = feats.mean(0)
        centred = feats - mean
        model = cls(encoder_spec(encoder), encoder.feature_dim, z_dim or encoder.feature_dim)
        model.encoder.load_state_dict(encoder.state_dict())
        if z_dim is None:
            comps = torch.eye(encoder.feature_dim, dtype=torch.float64)
        else:
            _, _, vh = torch.linalg.svd(centred, full_matrices=False)
            comps = vh[:z_dim]
            comps = comps * torch.sign(comps.gather(1, comps.abs().argmax(1, keepdim=True)))  # a fixed sign per component
        scale = (centred @ comps.T).std(0).clamp(min=1e-6)
        model.mean.copy_(mean.float())
        model.components.copy_(comps.float())
        model.scale.copy_(scale.float())
        return model.to(next(encoder.parameters()).device).eval()

    @torch.no_grad()
    def latent(self, frames: torch.Tensor | np.ndarray, batch_size: int = 256) -> tuple[torch.Tensor, None]:
        """uint8 frames (N,3,H,W) -> (z (N, z_dim) on the model's device, None): the map is deterministic."""
        dev = self.mean.device
        feats = torch.cat([self.encoder(chunk.to(dev)) for chunk in torch.as_tensor(frames).split(batch_size)])
        return (feats - self.mean) @ self.components.T / self.scale, None
