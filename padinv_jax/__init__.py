"""padinv_jax: PadInv (GAN inversion with padding space) in JAX/Flax.

Public API (pure functions unless noted):
  mapping, synthesize        generator (padinv_jax.functional)
  init_generator             random generator variables
  model_config, tiny_model_config
"""

from padinv_jax.config import model_config, tiny_model_config
from padinv_jax.functional import init_generator, mapping, synthesize

__all__ = ["mapping", "synthesize", "init_generator", "model_config",
           "tiny_model_config"]
