"""DeepCluster (Caron et al., 2018): alternate k-means on the network's features and training
the network to classify each image into its cluster.

Faithful details: once per epoch (``ceil(num_samples / batch_size)`` optimizer steps, and once
before the first step) every training image, unaugmented, is encoded with the encoder in eval
mode; the features are PCA-reduced (``pca_dim``, 256 in the paper for 4096-d features; fewer
components when the feature size or the sample count is smaller), whitened and L2-normalised,
then clustered by k-means (k-means++ seeding from the method's generator, a fixed number of
Lloyd iterations, empty clusters re-seeded from a perturbed copy of a big one). The cluster
indices become the pseudo-labels of the next epoch, looked up by ``Batch.index``; the linear
classifier on top of the encoder is re-initialised after each re-assignment (weights N(0, 0.01),
bias 0, as the paper's code) and trained with cross-entropy on random-resized-crop + flip views.
``k`` is ``num_clusters`` clipped to the number of samples. The PCA-whitening fitted at the
last re-assignment is kept (buffers), and ``embedding`` returns what k-means clusters: the
encoder's features projected with it and L2-normalised (not refitted on the batch).

Deliberate deviations: no Sobel filtering (encoders take RGB), batches are drawn uniformly over
samples rather than over clusters, the optimiser state of the re-initialised classifier is not
reset (the loop owns the optimiser), and AdamW instead of SGD for short CPU runs. Each
re-assignment encodes the whole training set once, which costs about one epoch of forward passes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.distributed
import torch.nn.functional as F
from torch import nn

from ssl4rl.augment import ViewAug, apply_view
from ssl4rl.encoders import Encoder
from ssl4rl.errors import UserError
from ssl4rl.fields import setting
from ssl4rl.methods.base import MAX_CHANNELS, MAX_WIDTH, Batch, Method, MethodConfig, MethodContext, recipe
from ssl4rl.parts.dist import is_distributed
from ssl4rl.parts.kmeans import fit_pca_whitening, kmeans


@dataclass
class DeepClusterConfig(MethodConfig):
    """DeepCluster recipe for 32-84 px: 100 clusters, PCA to 64 whitened dims, 20 k-means iterations."""

    name: str = recipe("name", "deepcluster")
    batch_size: int = recipe("batch_size", 128)
    weight_decay: float = recipe("weight_decay", 1e-5)
    num_clusters: int = setting(100, ge=2, le=MAX_WIDTH)  # clipped to the number of samples
    pca_dim: int = setting(64, ge=1, le=MAX_CHANNELS)
    kmeans_iters: int = setting(20, ge=1, le=1000)
    aug: ViewAug = field(default_factory=lambda: ViewAug(crop_scale=(0.2, 1.0), jitter=0.0, grayscale=0.0))


class DeepCluster(Method):
    """Encoder + linear classifier over k-means pseudo-labels re-assigned each epoch."""

    name = "deepcluster"
    Config = DeepClusterConfig
    family = "clustering"
    indexes_train_set = True

    def __init__(self, encoder: Encoder, cfg: DeepClusterConfig, ctx: MethodContext) -> None:
        super().__init__(encoder, cfg, ctx)
        n = ctx.num_samples
        if n < 1 or ctx.all_batches is None:
            raise UserError("method=deepcluster needs the training set (MethodContext.num_samples and all_batches)")
        self.k = min(cfg.num_clusters, n)
        self.cluster_dim = max(1, min(cfg.pca_dim, encoder.feature_dim, n - 1))
        self.steps_per_epoch = math.ceil(n / ctx.batch_size)
        self.classifier = nn.Linear(encoder.feature_dim, self.k)
        self.register_buffer("labels", torch.zeros(n, dtype=torch.long))
        self.register_buffer("centroids", torch.zeros(self.k, self.cluster_dim))
        # the PCA-whitening of the last re-assignment (``embedding`` applies it)
        self.register_buffer("pca_mean", torch.zeros(encoder.feature_dim))
        self.register_buffer("pca_projection", torch.zeros(encoder.feature_dim, self.cluster_dim))
        self.register_buffer("assignments", torch.zeros((), dtype=torch.long))  # re-assignments so far
        self.reset_classifier()

    @torch.no_grad()
    def reset_classifier(self) -> None:
        """Re-initialise the classifier in place (N(0, 0.01) weights, zero bias), from the generator."""
        w = torch.randn(self.classifier.weight.shape, generator=self.generator) * 0.01
        self.classifier.weight.copy_(w)
        self.classifier.bias.zero_()

    @torch.no_grad()
    def encode_all(self) -> torch.Tensor:
        """Every training sample, unaugmented, through the encoder in eval mode: (num_samples, D) in sample order."""
        was_training = self.training
        self.eval()
        feats = torch.cat([self.embed(b.images.float() / 255).float() for b in self.ctx.all_batches()])  # type: ignore[misc]
        self.train(was_training)
        if feats.shape[0] != self.labels.shape[0]:
            raise UserError(f"method=deepcluster: all_batches gave {feats.shape[0]} samples, expected {self.labels.shape[0]}")
        return feats

    def whiten(self, features: torch.Tensor) -> torch.Tensor:
        """Encoder features -> the space k-means clusters: PCA-whitened with the stored fit, L2-normalised."""
        return F.normalize((features.float() - self.pca_mean) @ self.pca_projection, dim=1)

    @torch.no_grad()
    def reassign(self) -> None:
        """PCA-whitening fitted on the current features, k-means on the whitened, L2-normalised
        features -> new pseudo-labels and centroids; fresh classifier."""
        feats = self.encode_all()
        mean, projection = fit_pca_whitening(feats, self.cluster_dim)
        self.pca_mean.copy_(mean)
        self.pca_projection.copy_(projection)
        centroids, labels = kmeans(self.whiten(feats), self.k, self.cfg.kmeans_iters, self.generator)
        self.labels.copy_(labels)
        self.centroids.copy_(centroids)
        self.reset_classifier()
        if is_distributed():  # every rank clusters the same features; rank 0's draws decide
            for t in (self.labels, self.centroids, self.classifier.weight, self.pca_mean, self.pca_projection):
                torch.distributed.broadcast(t, src=0)
        self.assignments += 1

    def on_train_start(self) -> None:
        """Cluster before the first epoch (a resumed run keeps its checkpointed labels)."""
        if int(self.assignments) == 0:
            self.reassign()

    def after_step(self, step: int) -> None:
        """Re-assign at each epoch boundary."""
        if step % self.steps_per_epoch == 0:
            self.reassign()

    def training_step(self, batch: Batch, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = self.classifier(self.embed(apply_view(batch.images.float() / 255, self.cfg.aug, self.generator)))
        target = self.labels[batch.index]
        loss = F.cross_entropy(logits, target)
        accuracy = (logits.detach().argmax(1) == target).float().mean()
        return loss, {"loss": loss.detach(), "accuracy": accuracy}

    def embedding(self, x01: torch.Tensor) -> torch.Tensor:
        """What k-means clusters: the encoder's features whitened with the last re-assignment's PCA, L2-normalised."""
        return self.whiten(self.embed(x01))
