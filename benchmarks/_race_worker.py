"""One side of the lightly race (``benchmarks/race_lightly.py``), in its own process.

    python benchmarks/_race_worker.py --lib ssl4rl|lightly SPEC.json RESULT.json

``--lib ssl4rl`` runs in ssl4rl's environment and drives the ``Method`` interface exactly as
``ssl4rl.pretrain.pretrain`` does (in-memory ``MemorySource``, batched augmentation on the
tensor, no DataLoader). ``--lib lightly`` runs in lightly's own environment and follows
lightly's examples (torchvision ImageFolder + lightly transforms per PIL image in DataLoader
workers, lightly heads, losses, momentum and masking utilities) with the sizes, losses and
optimiser settings of ssl4rl's recipe, which the spec carries. Only torch, numpy and the
standard library are imported at the top, so both environments can load this file.

Mode ``speed``: ``warmup`` steps, then ``timed`` whole steps (next batch + forward, backward,
optimiser step, EMA/queue updates) and ``timed`` model steps on one fixed batch of views (no
data pipeline). Mode ``knn``: ``knn_steps`` whole steps, then backbone features of the train
and test images saved as .npy for the parent to evaluate. Peak RSS comes from getrusage.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

StepFn = Callable[[], float]


def peak_rss_mib(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident set size of this process (or its reaped children) in MiB (Linux: KiB units)."""
    return resource.getrusage(who).ru_maxrss / 1024


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """JSON written to a temporary file, then renamed onto ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2)
    os.replace(tmp, path)


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    """A .npy file written under a temporary name, then renamed onto ``path``."""
    tmp = path.with_name(f".{path.name}.tmp.npy")
    np.save(tmp, array, allow_pickle=False)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------ the ssl4rl side


class _AugmentReplay:
    """Records what the augmentation entry points return during one training step, then
    returns those tensors again instead of computing them: the model step without the data
    pipeline. Patches the names that ssl4rl's method and part modules import from
    ``ssl4rl.augment`` (calls inside ``ssl4rl.augment`` itself are left alone)."""

    def __init__(self) -> None:
        import ssl4rl.augment as aug

        originals = {id(getattr(aug, n)): getattr(aug, n) for n in ("apply_view", "multi_crop", "random_shift")}
        self.patched: list[tuple[Any, str, Any]] = []
        for name, module in list(sys.modules.items()):
            if not name.startswith(("ssl4rl.methods", "ssl4rl.parts")) or module is None:
                continue
            for attr, value in list(vars(module).items()):
                if id(value) in originals:
                    self.patched.append((module, attr, value))
        self.recorded: list[Any] = []
        self.replaying, self.calls = False, 0

    def _wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not self.replaying:
                out = fn(*args, **kwargs)
                self.recorded.append(out)
                return out
            out = self.recorded[self.calls % len(self.recorded)]
            self.calls += 1
            return out

        return wrapper

    def __enter__(self) -> _AugmentReplay:
        for module, attr, fn in self.patched:
            setattr(module, attr, self._wrap(fn))
        return self

    def replay(self) -> None:
        """From now on return the recorded views; errors when nothing was recorded."""
        if not self.recorded:
            raise RuntimeError("no augmentation call was recorded: the method augments outside ssl4rl.augment")
        self.replaying = True

    def __exit__(self, *exc: object) -> None:
        for module, attr, fn in self.patched:
            setattr(module, attr, fn)


class Ssl4rlSide:
    """ssl4rl's Method interface over an in-memory source, as ``ssl4rl.pretrain.pretrain`` runs it."""

    def __init__(self, spec: dict[str, Any], total_steps: int) -> None:
        from ssl4rl.data.images import load_image_folder
        from ssl4rl.data.sources import MemorySource
        from ssl4rl.encoders import build_encoder
        from ssl4rl.methods import MethodContext, build_method, default_config
        from ssl4rl.optim import build_optimizer, build_scheduler

        self.spec = spec
        size = spec["image_size"]
        self.train = load_image_folder(spec["train_dir"], size, progress=False)
        self.source = MemorySource(self.train.images, self.train.labels)
        backbone = dict(spec["backbone"])
        encoder = build_encoder(backbone.pop("arch"), image_size=size, **backbone)
        encoder.set_normalization(spec["mean"], spec["std"])
        cfg = default_config(spec["method"], **spec["overrides"])
        self.batch_size = cfg.batch_size
        self.gen = torch.Generator().manual_seed(spec["seed"])
        ctx = MethodContext(
            generator=self.gen, total_steps=total_steps, num_samples=len(self.source), batch_size=cfg.batch_size,
            all_batches=lambda: self.source.in_order(256),
        )
        self.model = build_method(cfg, encoder, ctx)
        self.opt = build_optimizer(self.model.param_groups(), cfg.optimizer, cfg.lr, cfg.momentum)
        self.sched = build_scheduler(self.opt, cfg.warmup, total_steps)
        self.model.on_train_start()
        self.model.train()
        self.steps_done = 0

    def next_batch(self) -> Any:
        return self.source.sample(self.batch_size, self.gen)

    def step(self, batch: Any) -> float:
        loss, _ = self.model.training_step(batch, self.steps_done)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.sched.step()
        self.steps_done += 1
        self.model.after_step(self.steps_done)
        return float(loss)

    @contextlib.contextmanager
    def model_only(self) -> Iterator[StepFn]:
        batch = self.next_batch()
        with _AugmentReplay() as replay:
            self.step(batch)
            replay.replay()
            yield lambda: self.step(batch)

    def features(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        from ssl4rl.data.images import load_image_folder

        encoder = self.model.export_encoder()
        size = self.spec["image_size"]
        test = load_image_folder(self.spec["test_dir"], size, progress=False, classes=self.train.classes)
        return {
            split: (encoder.encode(images.images).numpy(), images.labels.numpy())
            for split, images in (("train", self.train), ("test", test))
        }


# ------------------------------------------------------------------------------ the lightly side


def lightly_backbone(backbone: dict[str, Any], image_size: int) -> tuple[nn.Module, int]:
    """The same timm network ssl4rl builds for ``backbone`` (ResNet with the 3x3 stride-1 stem and
    no max-pool, or a ViT pooled on its CLS token), as lightly's examples use a timm model."""
    import timm
    from timm.models.vision_transformer import VisionTransformer

    if backbone["arch"] == "resnet":
        model = timm.create_model(f"resnet{backbone['depth']}", pretrained=False, num_classes=0)
        if backbone.get("small_stem", True):
            model.conv1 = nn.Conv2d(3, model.conv1.out_channels, 3, stride=1, padding=1, bias=False)
            nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
            model.maxpool = nn.Identity()
        return model, model.num_features
    if backbone["arch"] == "vit":
        if backbone.get("pool") != "cls":
            raise ValueError("the lightly side pools a ViT on its CLS token: give the ssl4rl ViT pool='cls'")
        vit = VisionTransformer(
            img_size=image_size, patch_size=backbone["patch_size"], embed_dim=backbone["embed_dim"],
            depth=backbone["depth"], num_heads=backbone["num_heads"], mlp_ratio=backbone.get("mlp_ratio", 4.0),
            num_classes=0, global_pool="token", dynamic_img_size=True,
        )
        return vit, vit.embed_dim
    raise ValueError(f"no lightly counterpart for backbone arch '{backbone['arch']}'")


def jitter_kwargs(aug: dict[str, Any]) -> dict[str, Any]:
    """The flip, colour jitter and grayscale parts of ssl4rl's ``ViewAug`` as lightly's transform arguments."""
    return {
        "hf_prob": aug["flip"], "cj_prob": aug["jitter"], "cj_strength": 1.0, "cj_bright": aug["brightness"],
        "cj_contrast": aug["contrast"], "cj_sat": aug["saturation"], "cj_hue": aug["hue"],
        "random_gray_scale": aug["grayscale"],
    }


def view_kwargs(aug: dict[str, Any], image_size: int, normalize: dict[str, list[float]]) -> dict[str, Any]:
    """ssl4rl's ``ViewAug`` as the keyword arguments of lightly's SimCLR/MoCo/BYOL view transforms."""
    if aug["shift_pad"] or aug["crop_scale"][1] != 1.0 or (aug["size"] not in (None, image_size)):
        raise ValueError(f"no lightly transform matches this view: {aug}")
    return {
        "input_size": image_size, "min_scale": aug["crop_scale"][0], "gaussian_blur": aug["blur"],
        "normalize": normalize, **jitter_kwargs(aug),
    }


def momentum_copy(module: nn.Module) -> nn.Module:
    """A frozen deep copy, as lightly's examples make their momentum networks."""
    from lightly.models.utils import deactivate_requires_grad

    teacher = copy.deepcopy(module)
    deactivate_requires_grad(teacher)
    return teacher


class LightlyModel(nn.Module):
    """One SSL method written as in lightly's examples: ``transform`` makes the views of a PIL
    image, ``loss(views, step)`` the loss, ``after_step(step)`` the momentum updates,
    ``backbone`` the network whose features are evaluated."""

    def __init__(self, spec: dict[str, Any], total_steps: int) -> None:
        super().__init__()
        self.cfg, self.total = spec["config"], total_steps
        self.size = spec["image_size"]
        self.norm = {"mean": spec["mean"], "std": spec["std"]}
        self.backbone, self.dim = lightly_backbone(spec["backbone"], self.size)
        getattr(self, f"_build_{spec['method']}")()

    # -- SimCLR
    def _build_simclr(self) -> None:
        from lightly.loss import NTXentLoss
        from lightly.models.modules import SimCLRProjectionHead
        from lightly.transforms import SimCLRTransform

        c = self.cfg
        self.head = SimCLRProjectionHead(self.dim, c["proj_hidden"], c["proj_dim"])
        self.criterion = NTXentLoss(temperature=c["temperature"])
        self.transform = SimCLRTransform(**view_kwargs(c["aug"], self.size, self.norm))

    def _loss_simclr(self, views: list[torch.Tensor], step: int) -> torch.Tensor:
        x0, x1 = views
        return self.criterion(self.head(self.backbone(x0)), self.head(self.backbone(x1)))

    # -- MoCo v2
    def _build_moco(self) -> None:
        from lightly.loss import NTXentLoss
        from lightly.models.modules import MoCoProjectionHead
        from lightly.transforms import MoCoV2Transform

        c = self.cfg
        self.head = MoCoProjectionHead(self.dim, c["proj_hidden"], c["proj_dim"])
        self.backbone_m, self.head_m = momentum_copy(self.backbone), momentum_copy(self.head)
        self.criterion = NTXentLoss(temperature=c["temperature"], memory_bank_size=(c["queue_size"], c["proj_dim"]))
        self.transform = MoCoV2Transform(**view_kwargs(c["aug"], self.size, self.norm))

    def _loss_moco(self, views: list[torch.Tensor], step: int) -> torch.Tensor:
        x_q, x_k = views
        query = self.head(self.backbone(x_q))
        key = self.head_m(self.backbone_m(x_k)).detach()
        return self.criterion(query, key)

    def _after_moco(self, step: int) -> None:
        from lightly.models.utils import update_momentum

        update_momentum(self.backbone, self.backbone_m, self.cfg["teacher_momentum"])
        update_momentum(self.head, self.head_m, self.cfg["teacher_momentum"])

    # -- BYOL
    def _build_byol(self) -> None:
        from lightly.loss import NegativeCosineSimilarity
        from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
        from lightly.transforms import BYOLTransform, BYOLView1Transform, BYOLView2Transform

        c = self.cfg
        if c["proj_layers"] != 2:
            raise ValueError("lightly's BYOL heads have 2 layers: use proj_layers=2")
        self.head = BYOLProjectionHead(self.dim, c["proj_hidden"], c["proj_dim"])
        self.predictor = BYOLPredictionHead(c["proj_dim"], c["pred_hidden"], c["proj_dim"])
        self.backbone_m, self.head_m = momentum_copy(self.backbone), momentum_copy(self.head)
        self.criterion = NegativeCosineSimilarity()

        def view(aug: dict[str, Any]) -> dict[str, Any]:
            return {**view_kwargs(aug, self.size, self.norm), "solarization_prob": aug["solarize"]}

        self.transform = BYOLTransform(BYOLView1Transform(**view(c["aug1"])), BYOLView2Transform(**view(c["aug2"])))

    def _loss_byol(self, views: list[torch.Tensor], step: int) -> torch.Tensor:
        x0, x1 = views
        p0, p1 = (self.predictor(self.head(self.backbone(x))) for x in (x0, x1))
        with torch.no_grad():
            z0, z1 = (self.head_m(self.backbone_m(x)) for x in (x0, x1))
        # ssl4rl's objective: (2 - 2 cos(p0, z1)) + (2 - 2 cos(p1, z0))
        return 4 + 2 * (self.criterion(p0, z1) + self.criterion(p1, z0))

    def _after_byol(self, step: int) -> None:
        from lightly.models.utils import update_momentum
        from lightly.utils.scheduler import cosine_schedule

        m = cosine_schedule(step - 1, self.total, self.cfg["teacher_momentum"], 1.0)
        update_momentum(self.backbone, self.backbone_m, m)
        update_momentum(self.head, self.head_m, m)

    # -- DINO
    def _build_dino(self) -> None:
        from lightly.loss import DINOLoss
        from lightly.models.modules import DINOProjectionHead
        from lightly.models.utils import deactivate_requires_grad
        from lightly.transforms import DINOTransform

        c, crops, aug = self.cfg, self.cfg["crops"], self.cfg["aug"]
        sizes = (self.dim, c["hidden_dim"], c["bottleneck_dim"], c["out_dim"])
        self.head = DINOProjectionHead(*sizes, freeze_last_layer=c["freeze_last_layer"])
        # as lightly's example: a weight-normed head cannot be deep-copied, so the teacher's is built anew
        self.head_m = DINOProjectionHead(*sizes)
        self.head_m.load_state_dict(self.head.state_dict())
        deactivate_requires_grad(self.head_m)
        self.backbone_m = momentum_copy(self.backbone)
        self.criterion = DINOLoss(
            output_dim=c["out_dim"], warmup_teacher_temp=c["teacher_temp_start"], teacher_temp=c["teacher_temp"],
            student_temp=c["student_temp"], center_momentum=c["center_momentum"],
        )
        patch = self.backbone.patch_embed.patch_size[0]
        local = max(patch, round(self.size * crops["local_frac"] / patch) * patch)
        self.transform = DINOTransform(
            global_crop_size=self.size, global_crop_scale=tuple(crops["global_scale"]), local_crop_size=local,
            local_crop_scale=tuple(crops["local_scale"]), n_local_views=crops["n_local"],
            gaussian_blur=(aug["blur"],) * 3, solarization_prob=aug["solarize"], normalize=self.norm,
            **jitter_kwargs(aug),
        )

    def _loss_dino(self, views: list[torch.Tensor], step: int) -> torch.Tensor:
        c = self.cfg
        warm = c["teacher_temp_warmup"] * self.total
        start, end = c["teacher_temp_start"], c["teacher_temp"]
        t = end if step >= warm else start + (end - start) * step / warm
        with torch.no_grad():
            teacher = [self.head_m(self.backbone_m(v)) for v in views[:2]]
        student = [self.head(self.backbone(v)) for v in views]
        return self.criterion(teacher, student, teacher_temp=t)

    def _before_opt_dino(self, step: int) -> None:
        self.head.cancel_last_layer_gradients(current_epoch=step)

    def _after_dino(self, step: int) -> None:
        from lightly.models.utils import update_momentum
        from lightly.utils.scheduler import cosine_schedule

        m = cosine_schedule(step - 1, self.total, self.cfg["teacher_momentum"], 1.0)
        update_momentum(self.backbone, self.backbone_m, m)
        update_momentum(self.head, self.head_m, m)

    # -- MAE
    def _build_mae(self) -> None:
        import torchvision.transforms as T
        from lightly.models.modules import MaskedVisionTransformerDecoderTIMM, MaskedVisionTransformerTIMM
        from lightly.models.modules.masked_vision_transformer_timm import init_weights

        c, vit = self.cfg, self.backbone
        self.patch = vit.patch_embed.patch_size[0]
        self.masked = MaskedVisionTransformerTIMM(vit=vit)
        self.decoder_embed = nn.Linear(vit.embed_dim, c["decoder_dim"])
        self.decoder = MaskedVisionTransformerDecoderTIMM(
            num_patches=vit.patch_embed.num_patches, embed_dim=c["decoder_dim"], depth=c["decoder_depth"],
            num_heads=c["decoder_heads"], num_prefix_tokens=vit.num_prefix_tokens, mlp_ratio=4.0,
        )
        self.prediction_head = nn.Linear(c["decoder_dim"], self.patch**2 * 3)
        self.decoder_embed.apply(init_weights)
        self.prediction_head.apply(init_weights)
        # ssl4rl's MAE augmentation is the DrQ shift: edge-pad, then crop back at a random offset
        self.transform = T.Compose([
            T.RandomCrop(self.size, padding=c["shift_pad"], padding_mode="edge"), T.ToTensor(),
            T.Normalize(self.norm["mean"], self.norm["std"]),
        ])

    def _loss_mae(self, images: torch.Tensor, step: int) -> torch.Tensor:
        from lightly.models import utils

        n, length = images.shape[0], self.masked.sequence_length
        idx_keep, idx_mask = utils.random_token_mask(size=(n, length), mask_ratio=self.cfg["mask_ratio"], device=images.device)
        encoded = self.masked.encode(images=images, idx_keep=idx_keep)
        x = self.decoder_embed(encoded)
        full = utils.set_at_index(x.new_zeros(n, length, x.shape[-1]), idx_keep, x)
        pred = self.prediction_head(utils.get_at_index(self.decoder(full, idx_mask=idx_mask), idx_mask))
        target = utils.get_at_index(utils.patchify(images, self.patch), idx_mask - 1)
        if self.cfg["norm_pix_loss"]:
            mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
            target = (target - mean) / (var + 1e-6).sqrt()
        return nn.functional.mse_loss(pred, target)

    # -- dispatch
    def loss(self, views: Any, step: int) -> torch.Tensor:
        return getattr(self, f"_loss_{self.method}")(views, step)

    @property
    def method(self) -> str:
        return self.cfg["name"]

    def before_opt(self, step: int) -> None:
        getattr(self, f"_before_opt_{self.method}", lambda s: None)(step)

    def after_step(self, step: int) -> None:
        getattr(self, f"_after_{self.method}", lambda s: None)(step)


class LightlySide:
    """A lightly training loop: ImageFolder + lightly transform in DataLoader workers."""

    def __init__(self, spec: dict[str, Any], total_steps: int) -> None:
        import torchvision
        from lightly.models.utils import get_weight_decay_parameters

        self.spec = spec
        torch.manual_seed(spec["seed"])
        self.model = LightlyModel(spec, total_steps)
        self.model.train()
        self.batch_size = spec["overrides"]["batch_size"]
        dataset = torchvision.datasets.ImageFolder(spec["train_dir"], transform=self.model.transform)
        sampler = torch.utils.data.RandomSampler(
            dataset, replacement=True, num_samples=self.batch_size * (total_steps + 4),
            generator=torch.Generator().manual_seed(spec["seed"]),
        )
        workers = spec["workers"]
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_size=self.batch_size, sampler=sampler, num_workers=workers, drop_last=True,
            persistent_workers=workers > 0,
        )
        self.it = iter(self.loader)
        opt = spec["optimizer"]
        decay, no_decay = get_weight_decay_parameters([self.model])
        groups = [
            {"params": [p for p in decay if p.requires_grad], "weight_decay": opt["weight_decay"]},
            {"params": [p for p in no_decay if p.requires_grad], "weight_decay": 0.0},
        ]
        if opt["name"] == "adamw":
            self.opt = torch.optim.AdamW(groups, lr=opt["lr"], betas=tuple(opt["betas"]))
        elif opt["name"] == "sgd":
            self.opt = torch.optim.SGD(groups, lr=opt["lr"], momentum=opt["momentum"])
        else:
            from lightly.utils.lars import LARS

            self.opt = LARS(groups, lr=opt["lr"], momentum=opt["momentum"])
        scale = opt["lr_scale"]  # ssl4rl's warm-up + cosine multipliers, one per step
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: scale[min(s, len(scale) - 1)])
        self.steps_done = 0

    def next_batch(self) -> Any:
        views, _ = next(self.it)
        return views

    def step(self, views: Any) -> float:
        loss = self.model.loss(views, self.steps_done)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.model.before_opt(self.steps_done)
        self.opt.step()
        self.sched.step()
        self.steps_done += 1
        self.model.after_step(self.steps_done)
        return float(loss)

    @contextlib.contextmanager
    def model_only(self) -> Iterator[StepFn]:
        batch = self.next_batch()
        yield lambda: self.step(batch)

    def close(self) -> None:
        """Stop the DataLoader workers (so their peak RSS is counted as reaped children)."""
        shutdown = getattr(self.it, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
        del self.it, self.loader

    @torch.no_grad()
    def features(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        import torchvision
        import torchvision.transforms as T

        size = self.spec["image_size"]
        tf = T.Compose([T.Resize(size), T.CenterCrop(size), T.ToTensor(), T.Normalize(self.spec["mean"], self.spec["std"])])
        self.model.eval()
        out = {}
        train_classes = None
        for split in ("train", "test"):
            ds = torchvision.datasets.ImageFolder(self.spec[f"{split}_dir"], transform=tf)
            train_classes = train_classes or ds.classes
            remap = torch.tensor([train_classes.index(c) for c in ds.classes])
            feats, labels = [], []
            for x, y in torch.utils.data.DataLoader(ds, batch_size=256, num_workers=0):
                feats.append(self.model.backbone(x))
                labels.append(remap[y])
            out[split] = (torch.cat(feats).numpy(), torch.cat(labels).numpy())
        return out


# ------------------------------------------------------------------------------ the shared protocol


def run_steps(step: StepFn, n: int) -> list[float]:
    """Seconds of each of ``n`` calls of ``step``."""
    times = []
    for _ in range(n):
        t = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t)
        if not math.isfinite(loss):
            raise RuntimeError(f"loss became {loss}")
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lib", choices=("ssl4rl", "lightly"), required=True)
    p.add_argument("spec")
    p.add_argument("result")
    a = p.parse_args()
    spec = json.loads(Path(a.spec).read_text())
    torch.set_num_threads(spec["threads"])
    speed = spec["mode"] == "speed"
    total = spec["total_steps"]
    t0 = time.perf_counter()
    side = Ssl4rlSide(spec, total) if a.lib == "ssl4rl" else LightlySide(spec, total)
    result: dict[str, Any] = {"lib": a.lib, "method": spec["method"], "mode": spec["mode"], "setup_s": time.perf_counter() - t0}
    whole = lambda: side.step(side.next_batch())
    if speed:
        run_steps(whole, spec["warmup"])
        result["whole_step_s"] = run_steps(whole, spec["timed"])
        with side.model_only() as model_step:
            result["model_step_s"] = run_steps(model_step, spec["timed"])
    else:
        t = time.perf_counter()
        losses = [side.step(side.next_batch()) for _ in range(spec["knn_steps"])]
        result["train_s"], result["final_loss"] = time.perf_counter() - t, losses[-1]
        out = Path(spec["features_dir"])
        for split, (feats, labels) in side.features().items():
            save_npy_atomic(out / f"{split}_x.npy", feats.astype(np.float32))
            save_npy_atomic(out / f"{split}_y.npy", labels.astype(np.int64))
    result["peak_rss_mib"] = peak_rss_mib()
    if isinstance(side, LightlySide):
        side.close()
    result["workers_peak_rss_mib"] = peak_rss_mib(resource.RUSAGE_CHILDREN)
    write_json_atomic(a.result, result)


if __name__ == "__main__":
    main()
