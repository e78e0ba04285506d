"""padinv_jax: PadInv (GAN inversion with padding space) in JAX/Flax.

Public API (pure functions unless noted):
  mapping, synthesize            the generator (padinv_jax.models.functional)
  invert, reconstruct            the encoder, then the generator
  refine                         Adam on (ws, paddings) from the encoder's codes
  load, save_model               model directories (load returns PadInvModel)
  apps, save_codes, load_codes   blending, interpolation, editing; codes .npz
  init_generator, init_encoder   random variables for a config
  model_config, tiny_model_config
"""

from padinv_jax.inversion import apps
from padinv_jax.inversion.apps import load_codes, save_codes
from padinv_jax.models.config import model_config, tiny_model_config
from padinv_jax.models.encoder import init_encoder
from padinv_jax.models.functional import init_generator, mapping, synthesize
from padinv_jax.inversion.core import invert, prepare_images, reconstruct
from padinv_jax.storage.model_dir import PadInvModel, load, save_model
from padinv_jax.inversion.refinement import refine

__all__ = ["mapping", "synthesize", "invert", "reconstruct", "prepare_images",
           "refine", "apps", "save_codes", "load_codes",
           "load", "save_model", "PadInvModel", "init_generator",
           "init_encoder", "model_config", "tiny_model_config"]
