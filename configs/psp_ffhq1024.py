"""The pSp baseline: the same recipe as ffhq1024 with the padding space off.

  python train.py --config configs/psp_ffhq1024.py --workdir runs/psp_ffhq1024 \
    --config.generator_dir=weights/stylegan2-ffhq-1024 \
    --config.loss.lpips_weights=weights/lpips-alex \
    --config.loss.arcface_weights=weights/arcface \
    --config.data.dataset=padinv_images/ffhq --config.data.data_dir=/data/tfds

Expected runtime: as ffhq1024, slightly less.
"""

from configs import ffhq1024


def get_config():
  c = ffhq1024.get_config()
  c.model.encoder.use_padding_space = False
  return c
