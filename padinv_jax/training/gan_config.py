"""The GAN trainer's base config (stylegan2-ada-pytorch defaults); configs/gan/ vary it.

Defaults are NVIDIA's StyleGAN2Loss / training_loop values (DESIGN.md
section 11): style mixing 0.9, R1 every 16 steps, path length every 4 with
batch shrink 2, decay 0.01, weight 2, Adam (0, 0.99) eps 1e-8 with the lazy
correction, w_avg beta 0.995, G_ema half-life ema_kimg with ramp-up.
"""

from __future__ import annotations

import ml_collections

from padinv_jax.models import config as model_lib
from padinv_jax.models import discriminator as d_lib


def gan_config(resolution: int = 32) -> ml_collections.ConfigDict:
  """A StyleGAN2 GAN-training config at ``resolution`` (override the rest)."""
  c = ml_collections.ConfigDict()
  c.model = model_lib.model_config(dict(resolution=resolution),
                                   with_encoder=False)
  c.discriminator = d_lib.discriminator_config(resolution=resolution)

  c.loss = ml_collections.ConfigDict()
  c.loss.r1_gamma = 10.0
  c.loss.d_reg_interval = 16
  c.loss.pl_weight = 2.0        # 0 switches path-length regularisation off
  c.loss.g_reg_interval = 4
  c.loss.pl_batch_shrink = 2
  c.loss.pl_decay = 0.01
  c.loss.style_mixing_prob = 0.9
  c.loss.w_avg_beta = 0.995

  c.optim = ml_collections.ConfigDict()
  c.optim.g_lr = 0.002
  c.optim.d_lr = 0.002
  c.optim.betas = (0.0, 0.99)
  c.optim.eps = 1e-8

  c.ema_kimg = 10.0
  c.ema_rampup = ml_collections.FieldReference(0.05, field_type=float)

  c.data = ml_collections.ConfigDict()
  # "fashion_mnist" (IDX files in data.path, default Debian's folder),
  # "npz" (data.path: an .npz with "images" [N, R, R, 3] uint8) or "toy"
  # (made on the fly: tests).
  c.data.source = "fashion_mnist"
  c.data.path = ""
  c.data.mirror = False         # x-flips as extra images (NVIDIA --mirror)
  c.data.num_toy_images = 256

  c.batch_size = 32
  c.num_steps = 10_000
  c.seed = 0
  c.parallel = "jit"
  c.num_devices = 0             # 0: all devices
  c.log_every = 50
  c.sample_every = 500          # fixed-z sample grid (PNG + TensorBoard)
  c.num_samples = 64
  c.ckpt_every = 500            # steps ...
  c.ckpt_minutes = 10.0         # ... or minutes, whichever comes first
  c.keep_checkpoints = 3
  c.progress = True
  return c
