"""World models: C-SWM, the recurrent world model (VAE + MDN-RNN), the RSSM latent world model.

Every kind is saved and loaded through ``ssl4rl.worldmodels.io`` (safetensors + JSON).
"""

from ssl4rl.worldmodels import controller, cswm, mdnrnn, rssm, vae  # noqa: F401  (register every kind)
from ssl4rl.worldmodels.io import (
    WORLD_MODELS,
    WorldModel,
    encoder_from_spec,
    encoder_spec,
    load_world_model,
    register_world_model,
    save_world_model,
)

__all__ = [
    "WORLD_MODELS", "WorldModel", "encoder_from_spec", "encoder_spec", "load_world_model",
    "register_world_model", "save_world_model",
]
