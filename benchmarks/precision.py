"""bfloat16 vs float32 synthesis on a generator: PSNR of the images.

  python benchmarks/precision.py --model runs/fashion32/generator [--n 64]

The convolutions run in bfloat16 (functional.synthesize(dtype=bfloat16):
params stay float32, demodulation, noise, the ToRGB skip sum in float32);
PSNR over [-1, 1] images (peak-to-peak 2) of the bf16 image against the
float32 one, z ~ N(0, I), psi 1, const noise.
"""

from __future__ import annotations

import argparse
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np

import padinv_jax
from padinv_jax.models import functional


def psnr(a, b):
  mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2,
                axis=(1, 2, 3))
  return 10 * np.log10(4.0 / np.maximum(mse, 1e-20))


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--model", required=True)
  p.add_argument("--n", type=int, default=64)
  p.add_argument("--json", default=None)
  args = p.parse_args(argv)
  model = padinv_jax.load(args.model)
  g, cfg = model.params["generator"], model.config
  z = jax.random.normal(jax.random.PRNGKey(0), (args.n, cfg.generator.z_dim))
  ws = functional.mapping(g, z, config=cfg)
  run = lambda dt: np.asarray(jax.jit(lambda v, w: functional.synthesize(
      v, w, config=cfg, dtype=dt))(g, ws))
  f32, bf16 = run(jnp.float32), run(jnp.bfloat16)
  per = psnr(bf16, f32)
  out = {"model": args.model, "n": args.n, "psnr_mean_db": float(per.mean()),
         "psnr_min_db": float(per.min()),
         "max_abs_diff": float(np.max(np.abs(bf16 - f32)))}
  print(json.dumps(out, indent=1))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(out, f, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
