"""PadInv on LSUN bedroom with a 256 px StyleGAN2 (adversarial loss 0.05).

  python train.py --config configs/bedroom256.py --workdir runs/bedroom256 \
    --config.generator_dir=weights/stylegan2-bedroom-256 \
    --config.loss.discriminator_dir=weights/stylegan2-bedroom-256-D \
    --config.loss.lpips_weights=weights/lpips-alex \
    --config.data.dataset=padinv_images/lsun_bedroom --config.data.data_dir=/data/tfds

Expected runtime: about a day on 8 GPUs.
"""

from configs import church256


def get_config():
  c = church256.get_config()
  c.data.dataset = "padinv_images/lsun_bedroom"
  c.loss.adv = 0.05
  return c
