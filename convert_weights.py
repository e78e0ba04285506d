"""Convert official PyTorch weights into a padinv_jax directory.

    python convert_weights.py SRC DST [--format auto|nvidia|rosinality|hammer|
        padinv|psp|e4e|arcface|lpips] [--entry G_ema] [--overwrite]

Thin entry point; the work is in padinv_jax/convert/ (also installed as the
``padinv-convert`` command).
"""

import sys

from padinv_jax.convert.main import run

if __name__ == "__main__":
  sys.exit(run())
