"""C-SWM (Kipf, van der Pol and Welling, "Contrastive Learning of Structured World Models", ICLR 2020).

Learns object-factored states and their dynamics from transitions (o_t, a_t, o_{t+1}) with a
contrastive hinge loss and no pixel reconstruction: a CNN extracts K object masks, an MLP encodes
each into a D-dim slot state, a GNN predicts the slots' change under the action, and
``ssl4rl.losses.hinge`` pulls z_t + T(z_t, a_t) onto z_{t+1} while pushing the encodings of other
samples of the batch (a random permutation) at least ``margin`` away. The model parts live in
``ssl4rl.worldmodels.cswm``; the run exports the encoder (features = K*D slot states) and the whole
world model (``out/worldmodel``, kind ``cswm``), which ``pretrain/eval.py`` ranks (Hits@1, MRR).

The method builds its own encoder (``backbone=`` is not used) and its batches are transitions: the
loop draws consecutive frames (``data.positive=temporal``, ``data.k=1``) with the action between them.
One-hot actions over K*4 (block pushing: object x direction) are split into a (K, 4) one-hot per
object; continuous actions (DMC) are given to every slot (as is everything with ``copy_action=true``).

Paper settings (2-D shapes): K=5 slots, D=2, hidden 512, small extractor, margin 1, sigma 0.5, Adam
lr 5e-4 at a constant rate, batch 1024, 100 epochs of 1000 episodes x 100 steps (about 10k steps):
``method.hidden_dim=512 method.batch_size=1024``. The default here is sized for a CPU (hidden 128,
batch 512: about 0.1 s per step on one core; 1000 steps on 300 episodes of 2-D shapes ranked
100 / 99.9 / 94.9 Hits@1 at 1 / 5 / 10 steps among 1000 evaluation episodes).

Ablations: ``method.gnn=false`` (a per-slot MLP transition), ``method.num_slots=1`` (one slot; the
20 one-hot actions all go to it), ``method.objective=decoder`` (the paper's "World
Model (AE)" baseline: a decoder reconstructs o_t from z_t and o_{t+1} from z_t + T(z_t, a_t), binary
cross-entropy on pixels in [0, 1], no contrastive term) and ``method.init_encoder=<encoder folder>``
(the CNN replaced by a saved ssl4rl encoder's ``forward_map``, then a 1x1 conv to the K masks,
trained on together).

Deviations: the negative term compares z~ with z_{t+1} (the paper's Eq. 5; the reference code
compares z~ with z_t); inputs are normalised by the data's per-channel statistics; the optimiser is
ssl4rl's AdamW with betas (0.9, 0.95) and no weight decay (the paper: Adam, betas (0.9, 0.999)).
Under DDP each process shuffles its own negatives.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ssl4rl.encoders import load_encoder
from ssl4rl.errors import UserError
from ssl4rl.fields import setting, validate
from ssl4rl.losses.hinge import hinge_loss
from ssl4rl.methods.base import MAX_CHANNELS, Batch, Method, MethodConfig, MethodContext, recipe
from ssl4rl.worldmodels.cswm import CSWM, CSWMEncoder, SlotDecoder, Transition
from ssl4rl.worldmodels.io import encoder_spec

OBJECTIVES = ("contrastive", "decoder")
EXTRACTORS = ("small", "medium", "large")


def _saved_folder(path: str) -> str | None:
    return None if not path or Path(path).exists() else "folder not found; give a saved encoder folder"


@dataclass
class CSWMConfig(MethodConfig):
    """C-SWM recipe (paper: hidden_dim 512, batch 1024; here sized for a 2-core CPU)."""

    name: str = recipe("name", "cswm")
    batch_size: int = recipe("batch_size", 512)
    lr: float = recipe("lr", 5e-4)
    weight_decay: float = recipe("weight_decay", 0.0)
    warmup: int = recipe("warmup", 0)
    image_size: int = setting(50, ge=8, le=256)  # frames are resized to this (the block-pushing envs render 50 px)
    num_slots: int = setting(5, ge=1, le=64)  # K object slots (1: the unstructured ablation)
    embedding_dim: int = setting(2, ge=1, le=MAX_CHANNELS)  # D numbers per slot
    # MLP width of the object encoder, transition and decoder (paper 512); CNN width hidden/16
    hidden_dim: int = setting(128, ge=1, le=MAX_CHANNELS)
    extractor: str = setting("small", choices=EXTRACTORS)  # small (2-D shapes) | medium (Atari) | large (3-D cubes)
    gnn: bool = True  # false: the transition is a per-slot MLP without edges (ablation)
    copy_action: bool = False  # true: every slot sees the whole action (one-hot actions are split per object otherwise)
    margin: float = setting(1.0, ge=0)  # hinge margin gamma
    sigma: float = setting(0.5, gt=0)  # energy scale: d = 0.5 / sigma^2 * squared distance
    objective: str = setting("contrastive", choices=OBJECTIVES)  # contrastive (C-SWM) | decoder (the "World Model (AE)" baseline)
    # a saved ssl4rl encoder folder whose forward_map replaces the CNN extractor
    init_encoder: str = setting("", check=_saved_folder)
    cosine_lr: bool = False  # false: constant lr (the paper); true: ssl4rl's warm-up + cosine decay


class CSWMMethod(Method):
    """Contrastively-trained structured world model over a ``CSWMEncoder``."""

    name = "cswm"
    Config = CSWMConfig
    needs_arch = ("cswm",)
    family = "contrastive"
    needs_transitions = True

    @classmethod
    def own_encoder(cls, cfg: CSWMConfig) -> CSWMEncoder:  # type: ignore[override]
        """The object extractor + object encoder described by the method's config."""
        validate(cfg, "method.")
        kwargs = dict(image_size=cfg.image_size, num_slots=cfg.num_slots, embedding_dim=cfg.embedding_dim,
                      hidden_dim=cfg.hidden_dim)
        if not cfg.init_encoder:
            return CSWMEncoder(extractor=cfg.extractor, **kwargs)
        init = load_encoder(cfg.init_encoder)
        encoder = CSWMEncoder(extractor="backbone", backbone=encoder_spec(init), **kwargs)
        assert encoder.backbone is not None
        encoder.backbone.load_state_dict(init.state_dict())
        return encoder

    def __init__(self, encoder: CSWMEncoder, cfg: CSWMConfig, ctx: MethodContext) -> None:
        super().__init__(encoder, cfg, ctx)
        if ctx.action_dim < 1:
            raise UserError("method=cswm needs actions between frames (transitions); its data records none")
        split = ctx.discrete_actions and not cfg.copy_action
        self.transition = Transition(cfg.num_slots, cfg.embedding_dim, cfg.hidden_dim, ctx.action_dim,
                                     "object" if split else "copy", cfg.gnn)
        self.decoder = (SlotDecoder(cfg.num_slots, cfg.embedding_dim, cfg.hidden_dim, encoder.map_size, encoder.image_size)
                        if cfg.objective == "decoder" else None)

    def _inputs(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(o_t, o_{t+1}) as float [0, 1] at the encoder's size, and the actions."""
        if batch.positive is None or batch.actions is None:
            raise UserError("method=cswm needs transition batches (frame, action, next frame) from env episodes")
        x, y = self.pair(batch)
        return self.fit_size(x), self.fit_size(y), batch.actions

    def training_step(self, batch: Batch, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x, y, actions = self._inputs(batch)
        enc: CSWMEncoder = self.encoder  # type: ignore[assignment]
        z, z_next = enc.slots(enc.normalize(x)), enc.slots(enc.normalize(y))
        pred = z + self.transition(z, actions)
        if self.decoder is not None:
            recon = F.binary_cross_entropy_with_logits(self.decoder(z), x, reduction="sum") / len(x)
            predicted = F.binary_cross_entropy_with_logits(self.decoder(pred), y, reduction="sum") / len(x)
            loss, logs = recon + predicted, {"reconstruction": recon.detach(), "prediction": predicted.detach()}
        else:
            perm = torch.randperm(len(z), generator=self.generator).to(z.device)
            loss, positive, negative = hinge_loss(pred, z_next, z[perm], self.cfg.margin, self.cfg.sigma)
            logs = {"positive": positive.detach(), "negative": negative.detach()}
        if not self.training:  # held-out metrics: 1-step ranking within the batch (no same-state correction)
            from ssl4rl.eval.ranking import ranking_metrics

            metrics = ranking_metrics(pred.detach(), z_next.detach())
            logs.update(batch_hits_at_1=torch.tensor(metrics["hits_at_1"]), batch_mrr=torch.tensor(metrics["mrr"]))
        return loss, {"loss": loss.detach(), **logs}

    def param_groups(self) -> list[dict[str, Any]]:
        """One group, plain Adam as in the paper: no weight decay by default; a constant lr unless ``cosine_lr``."""
        params = [p for p in self.parameters() if p.requires_grad]
        return [{"params": params, "weight_decay": self.cfg.weight_decay, "fixed_lr": not self.cfg.cosine_lr}]

    def export_world_model(self) -> CSWM:
        """Encoder + transition as a stand-alone world model (CPU copies)."""
        return CSWM.from_parts(self.encoder, self.transition)  # type: ignore[arg-type]

    @torch.no_grad()
    def save_figures(self, batch: Batch, folder: Path, step: int) -> list[Path]:
        """``cswm_masks_step*.png`` (frames and each slot's object mask) and ``cswm_latents_step*.png``
        (each slot's states on the held-out batch, with the true transitions as segments)."""
        from ssl4rl.viz import _save_fig, plt, save_image_rows

        was_training = self.training
        self.eval()
        x, y, actions = self._inputs(batch)
        enc: CSWMEncoder = self.encoder  # type: ignore[assignment]
        masks = enc.forward_map(enc.normalize(x[:8]))
        z, z_next = enc.slots(enc.normalize(x)).cpu(), enc.slots(enc.normalize(y)).cpu()
        self.train(was_training)
        up = F.interpolate(masks, size=x.shape[-2:], mode="nearest").cpu()
        rows = {"frame": x[:8].cpu(), **{f"slot {k}": up[:, k : k + 1].expand(-1, 3, -1, -1) for k in range(masks.shape[1])}}
        mask_path = folder / f"cswm_masks_step{step:07d}.png"
        save_image_rows(mask_path, rows, title=f"C-SWM object masks, step {step}")
        k = z.shape[1]
        fig, axes = plt.subplots(1, k, figsize=(2.6 * k, 2.6), squeeze=False)
        for s in range(k):
            ax, a, b = axes[0][s], z[:, s].numpy(), z_next[:, s].numpy()
            if a.shape[1] > 1:
                ax.plot([a[:, 0], b[:, 0]], [a[:, 1], b[:, 1]], color="grey", linewidth=0.4, alpha=0.5)
                ax.scatter(a[:, 0], a[:, 1], s=3)
            else:  # one number per slot: each state against the next one
                ax.scatter(a[:, 0], b[:, 0], s=3)
            ax.set_title(f"slot {s}", fontsize=8)
            ax.tick_params(labelsize=6)
        fig.suptitle(f"C-SWM slot states of held-out frames (dims 0, 1), transitions as segments, step {step}",
                     fontsize=8, y=1.04)
        latent_path = folder / f"cswm_latents_step{step:07d}.png"
        _save_fig(fig, latent_path)
        return [mask_path, latent_path]
