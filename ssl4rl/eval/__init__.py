"""Evaluation of representations: state-regression probe, kNN, linear probe, fine-tuning, and the harness."""

from ssl4rl.eval.finetune import finetune
from ssl4rl.eval.harness import evaluate
from ssl4rl.eval.knn import knn_accuracy, knn_predict, knn_votes
from ssl4rl.eval.linear import linear_probe, stratified_split
from ssl4rl.eval.probe import (
    Ridge,
    encoder_featurizer,
    frame_windows,
    pixel_featurizer,
    probe_features,
    quantile_bin_labels,
    r2_per_dim,
    ridge_probe,
    state_probe,
    velocity_dims,
)

__all__ = [
    "Ridge",
    "encoder_featurizer",
    "evaluate",
    "finetune",
    "frame_windows",
    "knn_accuracy",
    "knn_predict",
    "knn_votes",
    "linear_probe",
    "pixel_featurizer",
    "probe_features",
    "quantile_bin_labels",
    "r2_per_dim",
    "ridge_probe",
    "state_probe",
    "stratified_split",
    "velocity_dims",
]
