"""PadInv on LSUN church with a 256 px StyleGAN2 (adversarial loss 0.03).

LSUN recipe (DESIGN.md section 3): no ID loss, no mirroring, the GAN's own
discriminator trained alongside (softplus losses, R1 gamma 10).

  python train.py --config configs/church256.py --workdir runs/church256 \
    --config.generator_dir=weights/stylegan2-church-256 \
    --config.loss.discriminator_dir=weights/stylegan2-church-256-D \
    --config.loss.lpips_weights=weights/lpips-alex \
    --config.data.dataset=padinv_images/lsun_church --config.data.data_dir=/data/tfds

Expected runtime: about a day on 8 GPUs.
"""

from configs import ffhq1024


def get_config():
  c = ffhq1024.get_config()
  c.model.generator.resolution = 256
  c.model.encoder.codes_per_level = (3, 4, 11)
  c.data.dataset = "padinv_images/lsun_church"
  c.data.mirror = False
  c.loss.id = 0.0
  c.loss.adv = 0.03
  return c
