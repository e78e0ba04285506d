"""GAN training-step speed: padinv_jax's phases vs a PyTorch statement of them.

Same config (configs/gan/fashion32.py: 32 px, 128/64 channels, w 128, 8
mapping layers; batch 32) and the same random weights in both frameworks
(the torch references of the tests, converted with the repository's
converters). Timed per phase, calls interleaved: Gmain (G fwd/bwd through
D), Dmain (G fwd, D fwd/bwd on fakes and reals), Greg (path length on
batch / 2, double backward) and Dreg (R1, double backward); one iteration
= Gmain + Dmain + Greg / 4 + Dreg / 16, as the lazy intervals schedule them.
The torch side is tests/torch_ref (NVIDIA-semantics G and D) with autograd
and torch.optim.Adam, const noise, style mixing at a fixed cutoff.

  python benchmarks/gan_step.py [--quick] [--batch 32] [--xla-default]
"""

from __future__ import annotations

import argparse
import functools
import importlib
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # pylint: disable=wrong-import-position  # sets XLA flags

import jax  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position
import torch  # pylint: disable=wrong-import-position
import torch.nn.functional as F  # pylint: disable=wrong-import-position

from padinv_jax.convert import d_keys  # pylint: disable=wrong-import-position
from padinv_jax.training import gan_lib  # pylint: disable=wrong-import-position
from torch_ref import discriminator_ref as d_ref  # pylint: disable=wrong-import-position
from torch_ref import stylegan2_ref as g_ref  # pylint: disable=wrong-import-position


def jax_side(cfg, g_sd, d_np):
  g_tx, d_tx = gan_lib.make_optimizers(cfg)
  nets = gan_lib.build_nets(cfg)
  state = gan_lib.init_state(jax.random.PRNGKey(0), cfg, g_tx, d_tx)
  g = g_ref.to_padinv_jax(g_sd)
  d = d_keys.discriminator_from_nvidia(d_np, cfg.discriminator)
  state = state.replace(g_params=g["params"], g_buffers=g["buffers"],
                        d_params=d["params"], g_opt=g_tx.init(g["params"]),
                        d_opt=d_tx.init(d["params"]))
  real = jax.numpy.asarray(np.random.default_rng(0).uniform(
      -1, 1, (cfg.batch_size, 32, 32, 3)).astype(np.float32))
  steps = {
      "Gmain": jax.jit(functools.partial(gan_lib.g_main, nets=nets, cfg=cfg,
                                         g_tx=g_tx)),
      "Dmain": jax.jit(functools.partial(gan_lib.d_main, nets=nets, cfg=cfg,
                                         d_tx=d_tx)),
      "Greg": jax.jit(functools.partial(gan_lib.g_reg, nets=nets, cfg=cfg,
                                        g_tx=g_tx)),
      "Dreg": jax.jit(functools.partial(gan_lib.d_reg, nets=nets, cfg=cfg,
                                        d_tx=d_tx)),
  }
  holder = {"s": state}

  def run(name):
    def f():
      args = (holder["s"], real) if name.startswith("D") else (holder["s"],)
      s, m = steps[name](*args)
      jax.block_until_ready(m)
      holder["s"] = s
    return f
  return {k: run(k) for k in steps}


def torch_side(cfg, g_sd, d_np):
  gcfg, dcfg = cfg.model.generator, dict(cfg.discriminator)
  num_ws = 2 * int(math.log2(gcfg.resolution)) - 2
  g = {k: v.clone().requires_grad_(g_ref.is_parameter(k))
       for k, v in g_sd.items()}
  d = {k: torch.tensor(v, requires_grad=not k.endswith("resample_filter"))
       for k, v in d_np.items()}
  ratio_g, ratio_d = 4 / 5, 16 / 17
  g_opt = torch.optim.Adam([v for v in g.values() if v.requires_grad],
                           lr=cfg.optim.g_lr * ratio_g,
                           betas=(0.0, 0.99 ** ratio_g), eps=1e-8)
  d_opt = torch.optim.Adam([v for v in d.values() if v.requires_grad],
                           lr=cfg.optim.d_lr * ratio_d,
                           betas=(0.0, 0.99 ** ratio_d), eps=1e-8)
  n = cfg.batch_size
  real = torch.rand(n, 3, 32, 32) * 2 - 1

  def run_g(batch):
    z = torch.randn(batch, gcfg.z_dim)
    ws = g_ref.mapping(g, z, num_ws).clone()
    ws[:, 3:] = g_ref.mapping(g, torch.randn(batch, gcfg.z_dim), num_ws)[:, 3:]
    return g_ref.synthesis(g, ws, gcfg.resolution), ws

  def g_main():
    g_opt.zero_grad(set_to_none=True)
    img, _ = run_g(n)
    F.softplus(-d_ref.forward(d, img, dcfg)).mean().backward()
    g_opt.step()

  def d_main():
    d_opt.zero_grad(set_to_none=True)
    with torch.no_grad():
      img, _ = run_g(n)
    loss = (F.softplus(d_ref.forward(d, img, dcfg)).mean()
            + F.softplus(-d_ref.forward(d, real, dcfg)).mean())
    loss.backward()
    d_opt.step()

  def g_reg():
    g_opt.zero_grad(set_to_none=True)
    img, ws = run_g(n // 2)
    noise = torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])
    (gr,) = torch.autograd.grad((img * noise).sum(), [ws], create_graph=True)
    lengths = gr.square().sum(2).mean(1).sqrt()
    mean = lengths.mean() * 0.01
    ((lengths - mean).square() * 2).mean().mul(4).backward()
    g_opt.step()

  def d_reg():
    d_opt.zero_grad(set_to_none=True)
    x = real.detach().requires_grad_(True)
    (gr,) = torch.autograd.grad(d_ref.forward(d, x, dcfg).sum(), [x],
                                create_graph=True)
    (gr.square().sum([1, 2, 3]) * cfg.loss.r1_gamma / 2).mean().mul(
        16).backward()
    d_opt.step()

  return {"Gmain": g_main, "Dmain": d_main, "Greg": g_reg, "Dreg": d_reg}


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  common.add_common_args(p, "gan_step.json", reps=5)
  p.add_argument("--batch", type=int, default=32)
  args = p.parse_args(argv)
  info, peak = common.start(args)
  sys.path.insert(0, common.REPO)
  cfg = importlib.import_module("configs.gan.fashion32").get_config()
  cfg.batch_size = args.batch
  gc = cfg.model.generator
  g_sd = g_ref.random_state_dict(gc.resolution, gc.z_dim, gc.w_dim,
                                 gc.mapping_layers, gc.channel_base,
                                 gc.channel_max, seed=1)
  g_sd["mapping.w_avg"] = torch.zeros(gc.w_dim)
  d_np = d_ref.make_state_dict(dict(cfg.discriminator), seed=2)
  fns = {f"jax {k}": f for k, f in jax_side(cfg, g_sd, d_np).items()}
  if not args.no_torch:
    torch.set_num_threads(info["torch_threads"])
    fns.update({f"torch {k}": f for k, f in torch_side(cfg, g_sd,
                                                       d_np).items()})
  res = common.bench_interleaved(fns, args.warmup, args.reps)
  weight = {"Gmain": 1, "Dmain": 1, "Greg": 1 / 4, "Dreg": 1 / 16}
  rows = []
  for fw in ("jax", "torch"):
    if f"{fw} Gmain" not in res:
      continue
    per = {k: res[f"{fw} {k}"]["median_s"] for k in weight}
    it = sum(per[k] * w for k, w in weight.items())
    rows.append({"framework": fw, **{f"{k}_s": v for k, v in per.items()},
                 "iteration_s": it, "images_per_s": args.batch / it})
  print(f"\nGAN step, configs/gan/fashion32.py, batch {args.batch}, median of "
        f"{args.reps} (calls interleaved)")
  common.print_table(rows, [("framework", "framework", "s"),
                            ("Gmain_s", "Gmain s", ".3f"),
                            ("Dmain_s", "Dmain s", ".3f"),
                            ("Greg_s", "Greg s", ".3f"),
                            ("Dreg_s", "Dreg s", ".3f"),
                            ("iteration_s", "iteration s", ".3f"),
                            ("images_per_s", "img/s", ".1f")])
  if len(rows) == 2:
    print(f"padinv_jax / torch images/s: "
          f"{rows[0]['images_per_s'] / rows[1]['images_per_s']:.2f}x")
  common.finish(args, info, peak, rows)


if __name__ == "__main__":
  main()
