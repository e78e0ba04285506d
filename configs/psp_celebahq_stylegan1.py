"""The pSp baseline of Fig. S7: celebahq_stylegan1 with the padding space off.

  python train.py --config configs/psp_celebahq_stylegan1.py --workdir runs/s7_psp \
    --config.generator_dir=weights/sg1-celebahq ... (as celebahq_stylegan1)
"""

from configs import celebahq_stylegan1


def get_config():
  c = celebahq_stylegan1.get_config()
  c.model.encoder.use_padding_space = False
  return c
