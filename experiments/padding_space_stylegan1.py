"""The padding-space claim's optimisation part on a tiny random StyleGAN1.

Part (a) of experiments/padding_space.py for the other generator family
(the paper's supplementary E.1 validates the padding space on StyleGAN1
too): Adam on the codes for K steps from the generator's w_avg and its own
constants, moving W+ only or W+ and the padding maps, at equal steps, on
plain / shifted / cropped samples of a tiny random 32 px StyleGAN1
(configs/tiny.py with family stylegan1, ToRGB scaled so 8-bit targets are
reachable). No encoders (those are part (b), shown for StyleGAN2).

  python experiments/padding_space_stylegan1.py --out docs

Writes OUT/padding_space_stylegan1.md and .json. About a minute on a 2-core
CPU.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time

import jax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from configs import tiny  # pylint: disable=wrong-import-position
from experiments import padding_space as base  # pylint: disable=wrong-import-position
from padinv_jax.data import demo_data  # pylint: disable=wrong-import-position
from padinv_jax.inversion import apps  # pylint: disable=wrong-import-position
from padinv_jax.inversion import refinement  # pylint: disable=wrong-import-position
from padinv_jax.models import functional  # pylint: disable=wrong-import-position


def generator(rgb_scale: float, seed: int = 1):
  cfg = tiny.get_config().model
  cfg.generator.family = "stylegan1"
  g = functional.init_generator(jax.random.PRNGKey(seed), cfg)
  syn = dict(g["params"]["synthesis"])
  rgb = dict(syn["ToRGB_lod0"])
  syn["ToRGB_lod0"] = {k: v * rgb_scale for k, v in rgb.items()}
  g = {"params": dict(g["params"], synthesis=syn), "buffers": g["buffers"]}
  z = jax.random.normal(jax.random.PRNGKey(seed + 1), (4096, 32))
  w = functional.mapping(g, z, config=cfg)[:, 0]
  g["buffers"] = dict(g["buffers"], mapping={"w_avg": w.mean(0)})
  return cfg, g


def run(args):
  t0 = time.time()
  jax.config.update("jax_default_matmul_precision", "highest")
  cfg, g = generator(args.rgb_scale)
  gen_cfg = cfg.generator
  n = args.num_images
  images = {k: demo_data.make_demo_dataset(
      g, cfg, n, seed=args.seed, resolution=gen_cfg.resolution,
      fractions=((k, 1.0),)) for k in base.KINDS}
  const_pads = apps.generator_paddings(g, n, config=gen_cfg)
  ws0 = apps.average_ws(g, n, config=gen_cfg)
  rows = []
  for kind in base.KINDS:
    for space, opt in base.SPACES.items():
      refine = jax.jit(functools.partial(
          refinement.refine, config=gen_cfg, steps=args.opt_steps,
          optimize=opt))
      ws, pads, _ = refine(g, images[kind], ws0, const_pads, lr=args.lr)
      m, _ = base.measure(g, images[kind], ws, pads, gen_cfg)
      rows.append({"kind": kind, "method": "optimisation from w_avg",
                   "space": space, **m})
  return rows, time.time() - t0


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--out", default="docs")
  p.add_argument("--opt-steps", type=int, default=100)
  p.add_argument("--lr", type=float, default=0.03)
  p.add_argument("--num-images", type=int, default=8)
  p.add_argument("--seed", type=int, default=1234)
  p.add_argument("--rgb-scale", type=float, default=0.25)
  args = p.parse_args(argv)
  rows, seconds = run(args)
  md = base.table(rows)
  os.makedirs(args.out, exist_ok=True)
  text = (f"# Padding space on a tiny random StyleGAN1: optimisation at equal "
          f"steps\n\nCommand: `python experiments/padding_space_stylegan1.py "
          f"--out {args.out}` ({seconds:.0f} s on this 2-core CPU). Adam, "
          f"{args.opt_steps} steps, lr {args.lr}, from w_avg and the "
          f"generator's own constants, {args.num_images} images per kind "
          f"(seed {args.seed}); metrics at 32 px, MSE in [-1, 1] units.\n\n"
          f"{md}\n")
  with open(os.path.join(args.out, "padding_space_stylegan1.md"), "w") as f:
    f.write(text)
  with open(os.path.join(args.out, "padding_space_stylegan1.json"), "w") as f:
    json.dump({"args": vars(args), "rows": rows, "seconds": seconds}, f,
              indent=1)
  print(text)


if __name__ == "__main__":
  main()
