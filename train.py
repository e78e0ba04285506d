"""Train a PadInv encoder: python train.py --config configs/X.py --workdir DIR.

A thin entry point; see padinv_jax/train_main.py and padinv_jax/trainer.py.
"""

from padinv_jax import train_main

if __name__ == "__main__":
  train_main.run()
