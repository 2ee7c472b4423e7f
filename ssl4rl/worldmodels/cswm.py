"""C-SWM, contrastively-trained structured world models (Kipf et al., ICLR 2020): the model parts.

- ``CSWMEncoder`` (encoder architecture ``cswm``): a CNN object extractor turns the image into K
  object masks (sigmoid), an MLP shared by the slots turns each flattened mask into a D-dim
  object state. ``forward_map`` gives the K masks, ``forward_features`` the K*D slot states
  flattened, so the encoder works everywhere an ssl4rl encoder does. Extractors, as in the paper:
  ``small`` (one 10x10 stride-10 conv: one map pixel per cell of the 5x5 grid, 2-D shapes),
  ``medium`` (9x9 at full resolution, then 5x5 stride 5) and ``large`` (four 3x3 convs at full
  resolution, 3-D cubes); ``backbone`` replaces the CNN by an ssl4rl encoder's ``forward_map``
  followed by a 1x1 conv to the K masks. The CNN width is ``hidden_dim // 16`` as in the paper.
- ``Transition``: a GNN over the K slots; an edge MLP on every ordered pair (z_i, z_j), i != j,
  summed per source node; a node MLP on (z_i, a_i, summed edges) predicts the change of z_i, so
  the next state is z + T(z, a). ``action_map='object'`` splits an action vector into K equal
  per-object parts (the 20 one-hot block-pushing actions become a (K, 4) one-hot per object);
  ``'copy'`` gives every slot the whole action (continuous actions; the paper's ``copy_action``).
  ``gnn=False`` drops the edges (a per-slot MLP, the paper's ablation).
- ``SlotDecoder``: slots -> image logits, mirroring the extractor (per-slot MLP to a map of the
  extractor's size, the K maps as channels, transposed convs up to the image): the decoder of the
  paper's "World Model (AE)" baseline.
- ``CSWM`` (world-model kind ``cswm``): encoder + transition, saved with ``save_world_model``.

Weights start as in the reference code: Xavier-uniform, zero biases.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ssl4rl.encoders import Encoder, register_arch
from ssl4rl.errors import UserError
from ssl4rl.worldmodels.io import WorldModel, encoder_from_spec, encoder_spec, register_world_model

EXTRACTORS = ("small", "medium", "large", "backbone")
ACTION_MAPS = ("object", "copy")


def xavier_init(module: nn.Module) -> None:
    """Xavier-uniform weights and zero biases for every linear and (transposed) conv layer of ``module``."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def slot_mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """The MLP C-SWM uses everywhere: in -> hidden (ReLU) -> hidden (LayerNorm, ReLU) -> out."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim), nn.ReLU(),
        nn.Linear(hidden_dim, hidden_dim), nn.LayerNorm(hidden_dim), nn.ReLU(),
        nn.Linear(hidden_dim, out_dim),
    )


def cnn_extractor(kind: str, channels: int, num_slots: int) -> tuple[nn.Sequential, int]:
    """(the CNN object extractor ``kind``, its downsampling factor): images -> K sigmoid masks."""
    c, k = channels, num_slots
    if kind == "small":
        layers: list[nn.Module] = [nn.Conv2d(3, c, 10, stride=10), nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, k, 1)]
        return nn.Sequential(*layers, nn.Sigmoid()), 10
    if kind == "medium":
        layers = [nn.Conv2d(3, c, 9, padding=4), nn.BatchNorm2d(c), nn.LeakyReLU(), nn.Conv2d(c, k, 5, stride=5)]
        return nn.Sequential(*layers, nn.Sigmoid()), 5
    layers = []
    for i in range(3):
        layers += [nn.Conv2d(3 if i == 0 else c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU()]
    return nn.Sequential(*layers, nn.Conv2d(c, k, 3, padding=1), nn.Sigmoid()), 1


@register_arch
class CSWMEncoder(Encoder):
    """Object extractor + object encoder: images (N,3,S,S) -> K object states of D numbers (see module doc)."""

    arch = "cswm"

    def __init__(
        self,
        image_size: int = 50,
        num_slots: int = 5,
        embedding_dim: int = 2,
        hidden_dim: int = 512,
        extractor: str = "small",
        backbone: dict[str, Any] | None = None,
        **norm: Any,
    ) -> None:
        super().__init__(image_size, **norm)
        if extractor not in EXTRACTORS:
            raise UserError(f"unknown C-SWM extractor '{extractor}'; valid: {', '.join(EXTRACTORS)}")
        if (backbone is not None) != (extractor == "backbone"):
            raise UserError("a C-SWM encoder takes a backbone spec exactly when extractor='backbone'")
        for name, value in (("num_slots", num_slots), ("embedding_dim", embedding_dim), ("hidden_dim", hidden_dim)):
            if value < 1:
                raise UserError(f"method.{name}={value}: must be at least 1")
        self.num_slots, self.embedding_dim, self.hidden_dim = num_slots, embedding_dim, hidden_dim
        self.extractor_kind, self.backbone_spec = extractor, backbone
        self.feature_dim, self.map_dim = num_slots * embedding_dim, num_slots
        self.backbone: Encoder | None = None
        if extractor == "backbone":
            self.backbone = encoder_from_spec(backbone)  # type: ignore[arg-type]
            size = self.backbone.image_size
            with torch.no_grad():  # the backbone's map grid (shape only; works on the meta device)
                grid = self.backbone.eval().forward_map(torch.zeros(1, 3, size, size)).shape
            self.backbone.train()
            self.extractor = nn.Sequential(nn.BatchNorm2d(grid[1]), nn.Conv2d(grid[1], num_slots, 1), nn.Sigmoid())
            self.map_size = (grid[2], grid[3])
        else:
            self.extractor, factor = cnn_extractor(extractor, max(1, hidden_dim // 16), num_slots)
            if image_size < factor:
                raise UserError(f"image_size={image_size} is smaller than the '{extractor}' extractor's {factor} px cells")
            side = image_size // factor
            self.map_size = (side, side)
        self.object_encoder = slot_mlp(self.map_size[0] * self.map_size[1], hidden_dim, embedding_dim)
        xavier_init(self.extractor)
        xavier_init(self.object_encoder)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "num_slots": self.num_slots, "embedding_dim": self.embedding_dim,
                "hidden_dim": self.hidden_dim, "extractor": self.extractor_kind, "backbone": self.backbone_spec}

    def forward_map(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images -> K object masks in [0, 1], (N, K, h, w)."""
        if self.backbone is None:
            return self.extractor(x)
        x01 = x * self.std + self.mean  # the backbone normalises in its own way, at its own size
        size = self.backbone.image_size
        if x01.shape[-1] != size or x01.shape[-2] != size:
            x01 = F.interpolate(x01, size=(size, size), mode="bilinear", align_corners=False)
        return self.extractor(self.backbone.forward_map(self.backbone.normalize(x01)))

    def slots(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images -> object states (N, K, D)."""
        return self.object_encoder(self.forward_map(x).flatten(2))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.slots(x).flatten(1)


class Transition(nn.Module):
    """T(z, a): the change of each object state, (B, K, D) and actions (B, A) -> (B, K, D)."""

    def __init__(
        self, num_slots: int = 5, embedding_dim: int = 2, hidden_dim: int = 512, action_dim: int = 20,
        action_map: str = "object", gnn: bool = True,
    ) -> None:
        super().__init__()
        if action_map not in ACTION_MAPS:
            raise UserError(f"unknown action_map '{action_map}'; valid: {', '.join(ACTION_MAPS)}")
        if action_dim < 1:
            raise UserError(f"action_dim={action_dim}: a transition model needs actions (at least 1 number per step)")
        if action_map == "object" and action_dim % num_slots:
            raise UserError(
                f"{action_dim} one-hot actions cannot be split over method.num_slots={num_slots} objects; "
                f"use a num_slots that divides {action_dim} or method.copy_action=true"
            )
        self.num_slots, self.embedding_dim, self.hidden_dim = num_slots, embedding_dim, hidden_dim
        self.action_dim, self.action_map, self.gnn = action_dim, action_map, gnn
        self.slot_action_dim = action_dim // num_slots if action_map == "object" else action_dim
        edges = gnn and num_slots > 1
        self.edge_mlp = slot_mlp(2 * embedding_dim, hidden_dim, hidden_dim) if edges else None
        self.node_mlp = slot_mlp(embedding_dim + self.slot_action_dim + (hidden_dim if edges else 0), hidden_dim,
                                 embedding_dim)
        xavier_init(self)

    def config(self) -> dict[str, Any]:
        """Constructor kwargs that rebuild this module."""
        return {"num_slots": self.num_slots, "embedding_dim": self.embedding_dim, "hidden_dim": self.hidden_dim,
                "action_dim": self.action_dim, "action_map": self.action_map, "gnn": self.gnn}

    def slot_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """Actions (B, A) -> the action each slot sees, (B, K, A/K) ('object') or (B, K, A) ('copy')."""
        b = actions.shape[0]
        if self.action_map == "object":
            return actions.reshape(b, self.num_slots, self.slot_action_dim)
        return actions.unsqueeze(1).expand(b, self.num_slots, self.action_dim)

    def forward(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        b, k, _ = z.shape
        parts = [z, self.slot_actions(actions.to(z.dtype))]
        if self.edge_mlp is not None:
            src, dst = (~torch.eye(k, dtype=torch.bool, device=z.device)).nonzero(as_tuple=True)  # grouped by src
            edges = self.edge_mlp(torch.cat([z[:, src], z[:, dst]], dim=-1))  # (B, K(K-1), H)
            parts.append(edges.view(b, k, k - 1, -1).sum(2))
        return self.node_mlp(torch.cat(parts, dim=-1))


class SlotDecoder(nn.Module):
    """Object states (B, K, D) -> image logits (B, 3, S, S), mirroring the object extractor."""

    def __init__(self, num_slots: int, embedding_dim: int, hidden_dim: int, map_size: tuple[int, int], image_size: int) -> None:
        super().__init__()
        c = max(1, hidden_dim // 16)
        self.map_size, self.image_size = tuple(map_size), image_size
        self.mlp = slot_mlp(embedding_dim, hidden_dim, map_size[0] * map_size[1])
        factor = max(1, image_size // max(map_size))
        self.up = nn.Sequential(
            nn.ConvTranspose2d(num_slots, c, 1), nn.ReLU(),
            nn.ConvTranspose2d(c, c, factor, stride=factor), nn.ReLU(),
            nn.Conv2d(c, 3, 3, padding=1),
        )
        xavier_init(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        maps = self.mlp(z).view(z.shape[0], z.shape[1], *self.map_size)
        x = self.up(maps)
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return x


@register_world_model
class CSWM(WorldModel):
    """The C-SWM world model: ``encode`` frames to object states, ``step`` them with an action."""

    kind = "cswm"

    def __init__(self, encoder: dict[str, Any], transition: dict[str, Any]) -> None:
        super().__init__()
        enc = encoder_from_spec(encoder)
        if not isinstance(enc, CSWMEncoder):
            raise UserError(f"a C-SWM world model needs a '{CSWMEncoder.arch}' encoder, got '{enc.arch}'")
        if not isinstance(transition, dict):
            raise UserError(f"C-SWM transition kwargs must be a dict, got {transition!r}")
        self.encoder: CSWMEncoder = enc
        self.transition = Transition(**transition)

    @classmethod
    def from_parts(cls, encoder: CSWMEncoder, transition: Transition) -> CSWM:
        """A stand-alone world model holding CPU copies of a trained encoder and transition."""
        model = cls(encoder_spec(encoder), transition.config())
        model.encoder.load_state_dict(copy.deepcopy(encoder.state_dict()))
        model.transition.load_state_dict(copy.deepcopy(transition.state_dict()))
        return model.cpu()

    def config(self) -> dict[str, Any]:
        return {"encoder": encoder_spec(self.encoder), "transition": self.transition.config()}

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames (N, 3, H, W) -> object states (N, K, D)."""
        return self.encoder.slots(self.encoder.preprocess(frames))

    def step(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """One predicted step: z + T(z, a)."""
        return z + self.transition(z, actions)
