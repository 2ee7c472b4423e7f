"""Evaluation of representations: the state-regression probe."""

from ssl4rl.eval.probe import Ridge, encoder_featurizer, pixel_featurizer, probe_features, r2_per_dim, ridge_probe

__all__ = ["Ridge", "encoder_featurizer", "pixel_featurizer", "probe_features", "r2_per_dim", "ridge_probe"]
