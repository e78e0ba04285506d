"""A tiny GAN on toy discs (16 px): the GAN trainer end to end in seconds.

  padinv-train-gan --config configs/gan/tiny.py --workdir /tmp/gan_tiny
"""

from padinv_jax.training import gan_config


def get_config():
  c = gan_config.gan_config(resolution=16)
  c.model.generator.update(z_dim=16, w_dim=16, mapping_layers=2,
                           channel_base=256, channel_max=16)
  c.discriminator.update(channel_base=256, channel_max=16)
  c.loss.r1_gamma = 0.05
  c.optim.g_lr = 0.0025
  c.optim.d_lr = 0.0025
  c.ema_kimg = 0.5
  c.data.source = "toy"
  c.data.num_toy_images = 128
  c.batch_size = 8
  c.num_steps = 40
  c.log_every = 10
  c.sample_every = 20
  c.num_samples = 16
  c.ckpt_every = 20
  c.keep_checkpoints = 2
  c.progress = False
  return c
