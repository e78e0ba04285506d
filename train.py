"""Train a PadInv encoder: python train.py --config configs/X.py --workdir DIR.

A thin entry point; see padinv_jax/training/main.py and padinv_jax/training/trainer.py.
"""

from padinv_jax.training import main as train_main

if __name__ == "__main__":
  train_main.run()
