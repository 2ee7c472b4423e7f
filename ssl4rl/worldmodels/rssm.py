"""PlaNet's recurrent state-space model (Hafner et al., 2019), with a switch for the representation
objective and one for the encoder. A ``WorldModel`` of kind ``rssm``.

State: a deterministic GRU state ``h`` (``deter``, PlaNet 200) and a diagonal-Gaussian stochastic state
``s`` (``stoch``, PlaNet 30), MLPs of width ``hidden`` (PlaNet 200). Prior ``p(s_t | h_t)`` with
``h_t = GRU(h_{t-1}, [s_{t-1}, a_{t-1}])``; posterior ``q(s_t | h_t, e_t)`` from the frame's embedding
``e_t``. Loss: ``rep_scale * representation + kl_scale * max(mean KL(q || p), free_nats) + reward + continue``
(free nats 3; the KL is summed over latent dimensions and averaged over batch and time before the
free-nats clamp, as in Dreamer). Reward head: Gaussian (squared error) on ``[h, s]``; continue head:
Bernoulli logit of the env's discount. Adam lr 1e-3, eps 1e-4, gradients clipped at 1000 (PlaNet).

``objective`` (the representation term):

- ``recon``: a transposed-conv decoder renders ``[h, s]`` at ``image_size`` px (16-128; 32 by default:
  a 64-px decoder makes an update ~20x slower on a CPU); Gaussian log-likelihood = half the squared error
  summed over pixels, in [-0.5, 0.5] units (PlaNet).
- ``contrastive``: InfoNCE between a projection of ``[h, s]`` and a projection of the encoder's embedding
  of the true frame; all other frames of the batch (B x T) are the negatives.
- ``barlow``: Barlow Twins loss (lambda 5e-4, scale 0.05, as r2dreamer's ``rep_loss``) between an MLP
  projection of ``[h, s]`` and the DETACHED encoder embedding.

``encoder`` (where ``e_t`` comes from):

- ``None`` (``scratch``): a small strided conv net on ``image_size`` px frames (channels ``depth`` x 1, 2,
  4, ...), trained end to end with the model.
- an ``encoder_spec`` of an ssl4rl encoder: FROZEN. Its weights are part of this model's state dict (so
  ``save_world_model`` stores it and ``load_world_model`` rebuilds it); its features are computed once per
  frame by ``prepare`` and cached in the replay, never re-encoded in updates. A LayerNorm scales them.

Sizes: ``RSSM(...)`` defaults are PlaNet's state sizes; measured on a 2-core laptop CPU, one update on a
50 x 50 (batch x length) batch takes ~0.3 s on cached features, ~6.5 s with a 64-px decoder and ~10.5 s
fully on 64-px pixels, so the pixel arms default to 32 px and the agent to smaller batches.
Evaluation, planning and open-loop prediction use the prior and posterior MEANS (deterministic);
training samples the posterior.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ssl4rl.data.datasets import resize_frames
from ssl4rl.errors import UserError
from ssl4rl.losses.barlow import barlow_twins_loss
from ssl4rl.losses.gaussian_kl import free_nats_kl, gaussian_kl
from ssl4rl.losses.infonce import info_nce
from ssl4rl.worldmodels.io import WorldModel, encoder_from_spec, register_world_model

OBJECTIVES = {
    "recon": "pixel reconstruction from [h, s]",
    "contrastive": "InfoNCE between projections of [h, s] and of the frame's embedding",
    "barlow": "Barlow Twins between a projection of [h, s] and the detached embedding",
}
REP_SCALE = {"recon": 1.0, "contrastive": 1.0, "barlow": 0.05}  # default weight of the representation term
STEP_KEYS = ("actions", "rewards", "discounts")  # one row per transition; other buffer keys have one per frame


def check_objective(objective: str) -> str:
    """Return ``objective`` or raise a one-line UserError listing the valid ones."""
    if objective not in OBJECTIVES:
        valid = "; ".join(f"{k} ({v})" for k, v in OBJECTIVES.items())
        raise UserError(f"unknown objective '{objective}'; valid: {valid}")
    return objective


def _stages(image_size: int) -> int:
    """Number of stride-2 stages between ``image_size`` and a 4x4 map."""
    n = round(math.log2(max(image_size, 1) / 4))
    if image_size not in (16, 32, 64, 128) or 4 * 2**n != image_size:
        raise UserError(f"image_size={image_size}: the RSSM's pixel encoder and decoder take 16, 32, 64 or 128 px")
    return n


def _mlp(in_dim: int, hidden: int, out_dim: int, layers: int = 2) -> nn.Sequential:
    mods: list[nn.Module] = []
    for i in range(layers):
        mods += [nn.Linear(in_dim if i == 0 else hidden, hidden), nn.ELU()]
    return nn.Sequential(*mods, nn.Linear(hidden, out_dim))


class PixelEncoder(nn.Module):
    """The ``scratch`` encoder: uint8 frames (..., 3, S, S) -> (..., out_dim); 4x4 stride-2 convs down to 4x4."""

    def __init__(self, image_size: int, depth: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        ch_in = 3
        for i in range(_stages(image_size)):
            layers += [nn.Conv2d(ch_in, depth * 2**i, 4, 2, 1), nn.ELU()]
            ch_in = depth * 2**i
        self.net = nn.Sequential(*layers, nn.Flatten())
        self.out_dim = ch_in * 16

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        lead = frames.shape[:-3]
        x = frames.reshape(-1, *frames.shape[-3:]).float() / 255.0 - 0.5
        return self.net(x).reshape(*lead, self.out_dim)


class PixelDecoder(nn.Module):
    """Features (..., in_dim) -> images (..., 3, S, S) in [-0.5, 0.5] units; mirror of ``PixelEncoder``."""

    def __init__(self, in_dim: int, image_size: int, depth: int) -> None:
        super().__init__()
        n = _stages(image_size)
        self.channels = depth * 2 ** (n - 1)
        self.fc = nn.Linear(in_dim, self.channels * 16)
        layers: list[nn.Module] = []
        ch = self.channels
        for i in reversed(range(n)):
            out = depth * 2 ** (i - 1) if i > 0 else 3
            layers += [nn.ConvTranspose2d(ch, out, 4, 2, 1)] + ([nn.ELU()] if i > 0 else [])
            ch = out
        self.net = nn.Sequential(*layers)
        self.image_size = image_size

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        lead = feat.shape[:-1]
        x = self.fc(feat.reshape(-1, feat.shape[-1])).reshape(-1, self.channels, 4, 4)
        return self.net(x).reshape(*lead, 3, self.image_size, self.image_size)


@register_world_model
class RSSM(WorldModel):
    """PlaNet's RSSM; see the module docstring for the objective and encoder switches."""

    kind = "rssm"

    def __init__(
        self,
        action_dim: int,
        objective: str = "recon",
        encoder: dict[str, Any] | None = None,
        image_size: int = 32,
        deter: int = 200,
        stoch: int = 30,
        hidden: int = 200,
        depth: int = 16,
        free_nats: float = 3.0,
        min_std: float = 0.1,
        kl_scale: float = 1.0,
        rep_scale: float | None = None,
        proj_dim: int = 128,
        temperature: float = 0.1,
        barlow_lambd: float = 5e-4,
    ) -> None:
        super().__init__()
        self.objective = check_objective(objective)
        for name, value in (("action_dim", action_dim), ("deter", deter), ("stoch", stoch), ("hidden", hidden),
                            ("depth", depth), ("proj_dim", proj_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(f"{name}={value!r}: must be a whole number >= 1")
        self.action_dim, self.image_size, self.deter, self.stoch, self.hidden, self.depth = (
            action_dim, image_size, deter, stoch, hidden, depth)
        self.free_nats, self.min_std, self.kl_scale = free_nats, min_std, kl_scale
        self.rep_scale = REP_SCALE[objective] if rep_scale is None else rep_scale
        self.proj_dim, self.temperature, self.barlow_lambd = proj_dim, temperature, barlow_lambd
        self.encoder_spec = encoder
        if encoder is None:  # scratch
            self.encoder: nn.Module | None = None
            self.pixels = PixelEncoder(image_size, depth)
            self.embed_dim = self.pixels.out_dim
            self.embed_norm: nn.Module = nn.Identity()
        else:  # frozen ssl4rl encoder, features cached outside
            self.encoder = encoder_from_spec(encoder).requires_grad_(False).eval()
            self.embed_dim = int(self.encoder.feature_dim)
            self.embed_norm = nn.LayerNorm(self.embed_dim)
        feat = deter + stoch
        self.feat_dim = feat
        self.pre = nn.Sequential(nn.Linear(stoch + action_dim, hidden), nn.ELU())
        self.gru = nn.GRUCell(hidden, deter)
        self.prior_net = nn.Sequential(nn.Linear(deter, hidden), nn.ELU(), nn.Linear(hidden, 2 * stoch))
        self.post_embed = nn.Linear(self.embed_dim, hidden)
        self.post_deter = nn.Linear(deter, hidden, bias=False)
        self.post_out = nn.Linear(hidden, 2 * stoch)
        self.reward_head = _mlp(feat, hidden, 1)
        self.continue_head = _mlp(feat, hidden, 1)
        if objective == "recon":
            _stages(image_size)
            self.decoder = PixelDecoder(feat, image_size, depth)
        elif objective == "contrastive":
            self.proj_feat = nn.Linear(feat, proj_dim)
            self.proj_embed = nn.Linear(self.embed_dim, proj_dim)
        else:
            self.projector = _mlp(feat, hidden, self.embed_dim, layers=1)

    def config(self) -> dict[str, Any]:
        return {"action_dim": self.action_dim, "objective": self.objective, "encoder": self.encoder_spec,
                "image_size": self.image_size, "deter": self.deter, "stoch": self.stoch, "hidden": self.hidden,
                "depth": self.depth, "free_nats": self.free_nats, "min_std": self.min_std, "kl_scale": self.kl_scale,
                "rep_scale": self.rep_scale, "proj_dim": self.proj_dim, "temperature": self.temperature,
                "barlow_lambd": self.barlow_lambd}

    # --- inputs ----------------------------------------------------------------------------------

    @property
    def frozen(self) -> bool:
        """True when the embedding comes from a frozen ssl4rl encoder (cached features)."""
        return self.encoder is not None

    @property
    def has_decoder(self) -> bool:
        return self.objective == "recon"

    def train(self, mode: bool = True) -> RSSM:
        super().train(mode)
        if self.encoder is not None:
            self.encoder.eval()  # frozen: never in training mode (no dropout, no BN statistics)
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Every parameter except the frozen encoder's."""
        return [p for name, p in self.named_parameters() if not name.startswith("encoder.")]

    @torch.no_grad()
    def prepare(self, frames: torch.Tensor | np.ndarray, batch_size: int = 256) -> dict[str, torch.Tensor]:
        """uint8 frames (N, 3, H, W) -> what the model reads per frame, on the CPU: ``features`` (frozen encoder,
        encoded once here) and/or ``frames`` resized to ``image_size`` (scratch encoder, or the recon target)."""
        frames = torch.as_tensor(frames)
        out: dict[str, torch.Tensor] = {}
        if self.encoder is not None:
            out["features"] = self.encoder.encode(frames, batch_size)
        if self.encoder is None or self.objective == "recon":
            out["frames"] = resize_frames(frames, self.image_size)
        return out

    def _raw_embed(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The encoder's embedding of each frame (..., embed_dim): cached features, or the scratch conv net."""
        return obs["features"].float() if self.encoder is not None else self.pixels(obs["frames"])

    def embed(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The posterior's input for each frame (..., embed_dim)."""
        return self.embed_norm(self._raw_embed(obs))

    # --- dynamics --------------------------------------------------------------------------------

    def _gauss(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, std = raw.chunk(2, -1)
        return mean, F.softplus(std) + self.min_std

    def initial(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero (h, s) for ``batch`` sequences."""
        dev = self.prior_net[0].weight.device
        return torch.zeros(batch, self.deter, device=dev), torch.zeros(batch, self.stoch, device=dev)

    def img_step(self, h: torch.Tensor, s: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One prior step: (h', prior mean, prior std) after ``action`` from (h, s)."""
        h = self.gru(self.pre(torch.cat([s, action], -1)), h)
        mean, std = self._gauss(self.prior_net(h))
        return h, mean, std

    def observe(self, embed: torch.Tensor, prev_actions: torch.Tensor, noise: torch.Tensor | None = None,
                state: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Filter a batch of sequences: ``embed`` (B, T, E), ``prev_actions`` (B, T, A) (the action before each
        frame; zeros for the first of an episode). ``noise`` (B, T, stoch) samples the posterior (None: its
        mean). Returns (B, T, .) tensors h, s, post_mean, post_std, prior_mean, prior_std."""
        b, t = embed.shape[:2]
        h, s = state if state is not None else self.initial(b)
        post_e = self.post_embed(embed)  # the embedding's part of the posterior MLP, all steps at once
        keys = ("h", "s", "post_mean", "post_std", "prior_mean", "prior_std")
        out: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
        for i in range(t):
            h, prior_mean, prior_std = self.img_step(h, s, prev_actions[:, i])
            post_mean, post_std = self._gauss(self.post_out(F.elu(post_e[:, i] + self.post_deter(h))))
            s = post_mean if noise is None else post_mean + post_std * noise[:, i]
            for k, v in zip(keys, (h, s, post_mean, post_std, prior_mean, prior_std), strict=True):
                out[k].append(v)
        return {k: torch.stack(v, 1) for k, v in out.items()}

    @staticmethod
    def prev_actions(actions: torch.Tensor) -> torch.Tensor:
        """Actions (B, T-1, A) between T frames -> the action before each frame (B, T, A), zeros first."""
        return torch.cat([torch.zeros_like(actions[:, :1]), actions], 1)

    @torch.no_grad()
    def filter_step(self, state: tuple[torch.Tensor, torch.Tensor] | None, action: torch.Tensor | None,
                    obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior-mean state after ``action`` (B, A) and the next frame ``obs`` (B, ...); ``state`` None
        starts an episode."""
        dev = self.prior_net[0].weight.device
        obs = {k: v.to(dev) for k, v in obs.items()}
        b = next(iter(obs.values())).shape[0]
        if state is None:
            state, action = self.initial(b), torch.zeros(b, self.action_dim, device=dev)
        out = self.observe(self.embed(obs)[:, None], action.to(dev)[:, None].float(), state=state)
        return out["h"][:, 0], out["s"][:, 0]

    def imagine(self, h: torch.Tensor, s: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Prior-mean rollout from (h, s) (N, .) under ``actions`` (N, H, A) -> features [h, s] (N, H, deter+stoch)."""
        feats = []
        for i in range(actions.shape[1]):
            h, s, _ = self.img_step(h, s, actions[:, i])
            feats.append(torch.cat([h, s], -1))
        return torch.stack(feats, 1)

    @torch.no_grad()
    def open_loop(self, obs: dict[str, torch.Tensor], actions: torch.Tensor, context: int) -> torch.Tensor:
        """Filter the first ``context`` frames of ``obs`` (B, T, ...), then imagine the remaining ``T - context``
        with the true ``actions`` (B, T-1, A) -> predicted features (B, T - context, deter+stoch)."""
        dev = self.prior_net[0].weight.device
        obs = {k: v[:, :context].to(dev) for k, v in obs.items()}
        actions = actions.to(dev).float()
        post = self.observe(self.embed(obs), self.prev_actions(actions[:, : context - 1]))
        return self.imagine(post["h"][:, -1], post["s"][:, -1], actions[:, context - 1:])

    # --- scores for planning -------------------------------------------------------------------------

    def reward_score(self, state: tuple[torch.Tensor, torch.Tensor]) -> Any:
        """``score(actions (N, H, A)) -> (N,)``: the sum of predicted rewards from ``state`` (1, .) (planning)."""

        @torch.no_grad()
        def score(actions: torch.Tensor) -> torch.Tensor:
            n = actions.shape[0]
            feats = self.imagine(state[0].expand(n, -1), state[1].expand(n, -1), actions)
            return self.reward_head(feats).squeeze(-1).sum(1)

        return score

    def goal_score(self, state: tuple[torch.Tensor, torch.Tensor], goal: dict[str, torch.Tensor]) -> Any:
        """``score(actions) -> (N,)``: minus the distance between the predicted embedding after the last action
        and the target embedding of the goal frame ``goal`` (a ``prepare`` output of one frame)."""
        dev = self.prior_net[0].weight.device
        with torch.no_grad():
            target = self.target_embedding({k: v.to(dev) for k, v in goal.items()}).reshape(1, -1)

        @torch.no_grad()
        def score(actions: torch.Tensor) -> torch.Tensor:
            n = actions.shape[0]
            feats = self.imagine(state[0].expand(n, -1), state[1].expand(n, -1), actions)
            return -(self.predict_embedding(feats[:, -1]) - target).norm(dim=-1)

        return score

    # --- embeddings and images for evaluation --------------------------------------------------------

    def decode(self, feat: torch.Tensor) -> torch.Tensor:
        """Features (..., deter+stoch) -> images in [0, 1] (recon only)."""
        return (self.decoder(feat) + 0.5).clamp(0, 1)

    def predict_embedding(self, feat: torch.Tensor) -> torch.Tensor:
        """Where the objective puts a latent in the frames' embedding space: the contrastive projection
        (unit norm), the Barlow projector, or (recon) the encoder's embedding of the decoded frame."""
        if self.objective == "contrastive":
            return F.normalize(self.proj_feat(feat), dim=-1)
        if self.objective == "barlow":
            return self.projector(feat)
        frames = (self.decode(feat) * 255).round().to(torch.uint8)
        if self.encoder is not None:
            return self.encoder(frames.reshape(-1, *frames.shape[-3:])).reshape(*frames.shape[:-3], -1)
        return self.pixels(frames)

    def target_embedding(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The frames' side of ``predict_embedding``: the projected (contrastive) or raw embedding."""
        raw = self._raw_embed(obs)
        return F.normalize(self.proj_embed(raw), dim=-1) if self.objective == "contrastive" else raw

    # --- training ------------------------------------------------------------------------------------

    def loss(self, batch: dict[str, torch.Tensor],
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """Batch of sequences (B, T, ...) of ``prepare`` keys with ``actions``/``rewards`` (and optionally
        ``discounts``) (B, T-1, ...) -> (loss, detached terms)."""
        obs = {k: batch[k] for k in ("features", "frames") if k in batch}
        raw = self._raw_embed(obs)
        embed = self.embed_norm(raw)
        b, t = embed.shape[:2]
        noise = torch.randn(b, t, self.stoch, generator=generator,
                            device=generator.device if generator is not None else "cpu").to(embed.device)
        post = self.observe(embed, self.prev_actions(batch["actions"].float()), noise)
        feat = torch.cat([post["h"], post["s"]], -1)
        kl = gaussian_kl(post["post_mean"], post["post_std"], post["prior_mean"], post["prior_std"])
        reward = 0.5 * (self.reward_head(feat[:, 1:]).squeeze(-1) - batch["rewards"].float()).pow(2).mean()
        discounts = batch.get("discounts", torch.ones_like(batch["rewards"])).float()
        cont = F.binary_cross_entropy_with_logits(self.continue_head(feat[:, 1:]).squeeze(-1), discounts)
        if self.objective == "recon":
            target = batch["frames"].float() / 255.0 - 0.5
            rep = 0.5 * (self.decoder(feat) - target).pow(2).sum((-3, -2, -1)).mean()
        elif self.objective == "contrastive":
            q = self.proj_feat(feat).reshape(b * t, -1)
            k = self.proj_embed(raw).reshape(b * t, -1)
            rep = info_nce(q, k, torch.arange(b * t, device=q.device), self.temperature)
        else:
            rep = barlow_twins_loss(self.projector(feat).reshape(b * t, -1), raw.detach().reshape(b * t, -1),
                                    self.barlow_lambd)[0]
        loss = self.rep_scale * rep + self.kl_scale * free_nats_kl(kl, self.free_nats) + reward + cont
        logs = {"loss": loss.item(), "rep": rep.item(), "kl": kl.mean().item(), "reward": reward.item(), "continue": cont.item()}
        return loss, logs

    def make_optimizer(self, lr: float = 1e-3) -> torch.optim.Optimizer:
        """PlaNet's Adam (eps 1e-4) over the trainable parameters."""
        return torch.optim.Adam(self.trainable_parameters(), lr=lr, eps=1e-4)

    def update(self, batch: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer,
               generator: torch.Generator | None = None, grad_clip: float = 1000.0) -> dict[str, float]:
        """One optimiser step on ``batch`` (moved to the model's device); returns the loss terms."""
        dev = self.prior_net[0].weight.device
        self.train()
        loss, logs = self.loss({k: v.to(dev) for k, v in batch.items()}, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        logs["grad_norm"] = float(nn.utils.clip_grad_norm_(self.trainable_parameters(), grad_clip))
        optimizer.step()
        return logs


class EpisodeBuffer:
    """Episodes of model inputs, sampled as sequence batches (the PlaNet replay; also the offline trainer's).

    An episode is a dict of CPU tensors: per-frame keys (``prepare``'s ``features``/``frames``, and
    ``states`` when known) with T+1 rows, and ``actions``, ``rewards``, ``discounts`` with T rows.
    """

    def __init__(self) -> None:
        self.episodes: list[dict[str, torch.Tensor]] = []

    def __len__(self) -> int:
        return len(self.episodes)

    @property
    def steps(self) -> int:
        """Transitions held."""
        return sum(len(e["actions"]) for e in self.episodes)

    def add(self, episode: dict[str, torch.Tensor]) -> None:
        n = len(episode["actions"])
        for key, value in episode.items():
            rows = n if key in STEP_KEYS else n + 1
            if len(value) != rows:
                raise ValueError(f"episode key {key}: {len(value)} rows, expected {rows}")
        self.episodes.append(episode)

    def sample(self, batch_size: int, length: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """``batch_size`` windows of ``length`` frames (and ``length - 1`` transitions): an episode drawn uniformly
        among those long enough, then a start uniformly."""
        eligible = [e for e in self.episodes if len(e["actions"]) + 1 >= length]
        if not eligible:
            longest = max((len(e["actions"]) + 1 for e in self.episodes), default=0)
            raise UserError(f"sequence length {length} is longer than every episode held ({longest} frames); "
                            "use a shorter sequence length")
        picks = []
        for _ in range(batch_size):
            ep = eligible[int(torch.randint(len(eligible), (1,), generator=generator))]
            start = int(torch.randint(len(ep["actions"]) + 2 - length, (1,), generator=generator))
            picks.append({k: v[start: start + (length - 1 if k in STEP_KEYS else length)] for k, v in ep.items()})
        return {k: torch.stack([p[k] for p in picks]) for k in picks[0]}

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Every episode concatenated per key, plus ``lengths`` (transitions per episode): for ``np.savez``."""
        arrays = {k: torch.cat([e[k] for e in self.episodes]).numpy() for k in self.episodes[0]} if self.episodes else {}
        arrays["lengths"] = np.asarray([len(e["actions"]) for e in self.episodes], dtype=np.int64)
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> EpisodeBuffer:
        """Inverse of ``to_arrays``."""
        buf = cls()
        lengths = [int(n) for n in arrays["lengths"]]
        offsets = {k: 0 for k in arrays if k != "lengths"}
        for n in lengths:
            ep = {}
            for key in offsets:
                rows = n if key in STEP_KEYS else n + 1
                ep[key] = torch.from_numpy(np.ascontiguousarray(arrays[key][offsets[key]: offsets[key] + rows]))
                offsets[key] += rows
            buf.add(ep)
        return buf


def buffer_from_episodes(model: RSSM, episodes: Any) -> EpisodeBuffer:
    """An ``EpisodeBuffer`` of ``ssl4rl.data`` episodes as ``model`` reads them (frozen features computed once)."""
    buf = EpisodeBuffer()
    for ep in episodes:
        buf.add({**model.prepare(ep.frames), "states": torch.from_numpy(ep.states).float(),
                 "actions": torch.from_numpy(ep.actions).float(), "rewards": torch.from_numpy(ep.rewards).float(),
                 "discounts": torch.from_numpy(ep.discounts).float()})
    return buf
