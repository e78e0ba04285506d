"""The pSp baseline of configs/fashion32_padinv.py: padding space off.

  python train.py --config configs/fashion32_psp.py --workdir runs/psp32

Everything else (encoder, steps, seed, losses, data) is the PadInv config's.
"""

from configs import fashion32_padinv


def get_config():
  c = fashion32_padinv.get_config()
  c.model.encoder.use_padding_space = False
  return c
