"""StyleGAN2 on Fashion-MNIST at 32 px: the generator embedded in the package.

  apt-get install dataset-fashion-mnist      # the original IDX files (MIT)
  padinv-train-gan --config configs/gan/fashion32.py --workdir runs/fashion32

Resumes where it stopped when run again with the same workdir. A small
config-F-shaped network (128 channels up to 16 px, 64 at 32 px, w_dim 128,
8 mapping layers) so it trains on a 2-core CPU; NVIDIA's lr for small
resolutions, 'auto'-like EMA, path length on. R1 gamma 1: NVIDIA's 'cifar'
and 'auto' values (0.01 / 0.0064 here) assume ADA; without it D won at once
(D loss 0.01, G loss 6.7 after 13 kimg with gamma 0.01).
Expected time: about 1 s an iteration of 32 images on a 2-core CPU; a
recognisable sample grid after ~100 kimg.
"""

from padinv_jax.training import gan_config


def get_config():
  c = gan_config.gan_config(resolution=32)
  c.model.generator.z_dim = 128
  c.model.generator.w_dim = 128
  c.model.generator.mapping_layers = 8
  c.model.generator.channel_base = 2048
  c.model.generator.channel_max = 128
  c.discriminator.channel_base = 2048
  c.discriminator.channel_max = 128
  c.discriminator.mbstd_group_size = 4
  c.loss.r1_gamma = 1.0
  c.optim.g_lr = 0.0025
  c.optim.d_lr = 0.0025
  c.ema_kimg = 10.0
  c.ema_rampup = 0.05
  c.data.source = "fashion_mnist"
  c.batch_size = 32
  c.num_steps = 100_000
  c.log_every = 50
  c.sample_every = 500
  c.ckpt_every = 1000
  c.ckpt_minutes = 5.0
  return c
