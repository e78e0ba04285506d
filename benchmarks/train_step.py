"""One encoder training step: padinv_jax (jit) vs a PyTorch step on the refs.

Both steps do the same work on the same random weights (benchmarks/common.py):
encoder forward in train mode (BatchNorm batch statistics, running stats
updated), padded synthesis with the frozen generator, the output
average-pooled to 256 px, loss = 1.0 * MSE + 0.003 * W-norm (mean over the
batch of ||W+ - w_avg||_F), backward into the encoder only, gradients
NaN -> 0 and clamped to +-1e5 (the original's treatment), Adam(1e-4).
No LPIPS / ID / adversarial terms (their networks are not part of this
comparison). The JAX step is padinv_jax.training.train_lib.train_step, the one the
trainer jits, with its state donated.

  python benchmarks/train_step.py                       # tiny + ffhq-shaped
  python benchmarks/train_step.py --quick --configs tiny

Configurations: tiny (tiny_model_config, batch 4), ffhq (IR-SE-50 encoder +
config-F generator at --gen-res, default 1024, batch --batch, default 2).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
import measure  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from padinv_jax.models import config as config_lib  # noqa: E402
from padinv_jax.models import encoder as encoder_lib  # noqa: E402
from padinv_jax.training import train_lib  # noqa: E402
from torch_ref import stylegan2_ref as gen_ref  # noqa: E402

MSE, WNORM = measure.MSE, measure.WNORM
LR, CLAMP = 1e-4, 1e5


def train_config():
  return measure.step_config("adam", LR, grad_clamp=CLAMP)


def jax_step_fn(cfg, variables, dtype):
  """(jitted step, initial state, frozen) over padinv_jax.training.train_lib."""
  tcfg = train_config()
  tx = train_lib.make_optimizer(tcfg.optim)
  encoder = encoder_lib.build_encoder(cfg.encoder)
  enc = variables["encoder"]
  state = train_lib.state_from_encoder(jax.tree_util.tree_map(
      jnp.array, {"params": enc["params"],
                  "batch_stats": enc["batch_stats"]}), tx)
  frozen = {"generator": variables["generator"],
            "encoder_buffers": enc["buffers"]}
  step = jax.jit(functools.partial(
      train_lib.train_step, encoder=encoder, model_cfg=cfg, cfg=tcfg, tx=tx,
      nets=train_lib.LossNets(), compute_dtype=dtype), donate_argnums=(0,))
  return step, state, frozen


def torch_step_fn(enc, sd, gen_cfg):
  """A PyTorch training step with the same loss, clamp and optimiser."""
  nws = config_lib.num_ws(gen_cfg)
  res = gen_cfg.resolution
  opt = torch.optim.Adam(enc.parameters(), lr=LR, betas=(0.9, 0.999),
                         eps=1e-8)
  w_avg = enc.avg_latent
  enc.train()

  def step(x):
    opt.zero_grad(set_to_none=True)
    ws, maps = enc(x)
    img = gen_ref.synthesis(sd, ws[:, :nws], res,
                            conv_clamp=gen_cfg.conv_clamp, paddings=maps)
    if res > x.shape[-1]:
      img = F.avg_pool2d(img, res // x.shape[-1])
    elif res < x.shape[-1]:
      x = F.avg_pool2d(x, x.shape[-1] // res)
    mse = (img - x).square().mean()
    wnorm = (ws - w_avg).flatten(1).norm(dim=1).mean()
    loss = MSE * mse + WNORM * wnorm
    loss.backward()
    common.sanitize_torch_grads(enc.parameters(), CLAMP)
    opt.step()
    return loss.item()
  return step


def run(name, cfg, n, args, peak):
  t0 = time.perf_counter()
  enc, sd, variables = common.build_models(cfg)
  print(f"[{name}] weights built and converted in "
        f"{time.perf_counter() - t0:.1f}s", flush=True)
  x = common.structured_images(n, int(cfg.encoder.input_size), seed=n)
  row = {"config": name, "batch": n, "gen_res": cfg.generator.resolution}

  step, state, frozen = jax_step_fn(cfg, variables, jnp.float32)
  del variables
  xj = jnp.asarray(x)
  t0 = time.perf_counter()
  compiled = step.lower(state, frozen, xj).compile()
  row["jax_compile_s"] = time.perf_counter() - t0
  flops = common.xla_flops(compiled)
  row["jax_xla_temp_mb"] = common.xla_temp_mb(compiled)
  holder = {"state": state}

  def jstep():
    holder["state"], m = compiled(holder["state"], frozen, xj)
    return m

  with common.PeakRSS() as mem:
    t0 = time.perf_counter()
    m = jax.device_get(jstep())
    row["jax_first_step_s"] = time.perf_counter() - t0
    stats = common.bench(lambda: jax.block_until_ready(jstep()),
                         max(args.warmup - 1, 0), args.reps)
  row["jax_loss_step1"] = float(m["loss"])
  row.update({"jax_median_s": stats["median_s"], "jax_reps": stats["reps"],
              "jax_rss_delta_mb": mem.delta_mb})
  row["jax_img_s"] = n / stats["median_s"]
  if flops:
    row["gflop_per_img"] = flops / n / 1e9
    row["frac_peak"] = flops / stats["median_s"] / 1e9 / peak["jax_gflops"]
  del holder, state, frozen, compiled, step

  if not args.no_torch:
    tstep = torch_step_fn(enc, sd, cfg.generator)
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    with common.PeakRSS() as mem:
      t0 = time.perf_counter()
      row["torch_loss_step1"] = tstep(xt)
      row["torch_first_step_s"] = time.perf_counter() - t0
      stats = common.bench(lambda: tstep(xt), max(args.warmup - 1, 0),
                           args.reps)
    row.update({"torch_median_s": stats["median_s"],
                "torch_rss_delta_mb": mem.delta_mb})
    row["torch_img_s"] = n / stats["median_s"]
    row["speedup"] = row["jax_img_s"] / row["torch_img_s"]
    row["loss_rel_diff"] = abs(row["jax_loss_step1"] - row["torch_loss_step1"]
                               ) / abs(row["torch_loss_step1"])
  row["loadavg"] = os.getloadavg()[0]
  print(f"  batch {n}: JAX {row['jax_img_s']:.3f} img/s"
        + (f", torch {row['torch_img_s']:.3f} img/s" if "torch_img_s" in row
           else ""), flush=True)
  return row


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--configs", default="tiny,ffhq")
  p.add_argument("--gen-res", type=int, default=1024,
                 help="generator resolution of the ffhq-shaped config")
  p.add_argument("--batch", type=int, default=2,
                 help="batch of the ffhq-shaped config")
  p.add_argument("--tiny-batch", type=int, default=4)
  common.add_common_args(p, "train_step.json", reps=2)
  args = p.parse_args(argv)
  info, peak = common.start(args)
  rows = []
  for name in args.configs.split(","):
    if name == "tiny":
      rows.append(run(name, common.model_config(32, tiny=True),
                      args.tiny_batch, args, peak))
    elif name == "ffhq":
      rows.append(run(name, common.model_config(args.gen_res), args.batch,
                      args, peak))
    else:
      raise SystemExit(f"unknown config {name!r}: use tiny or ffhq")
  print()
  common.print_table(rows, [
      ("config", "config", "s"), ("gen_res", "G px", "d"),
      ("batch", "N", "d"), ("jax_img_s", "JAX img/s", ".3f"),
      ("torch_img_s", "torch img/s", ".3f"), ("speedup", "JAX/torch", ".2f"),
      ("jax_median_s", "JAX step s", ".2f"),
      ("torch_median_s", "torch step s", ".2f"),
      ("jax_compile_s", "JAX compile s", ".1f"),
      ("jax_xla_temp_mb", "JAX XLA temp MB", ".0f"),
      ("jax_rss_delta_mb", "JAX +RSS MB", ".0f"),
      ("torch_rss_delta_mb", "torch +RSS MB", ".0f"),
      ("gflop_per_img", "GFLOP/img", ".1f"), ("frac_peak", "of peak", ".0%"),
      ("loss_rel_diff", "loss rel diff", ".1e"), ("loadavg", "load", ".2f")])
  return common.finish(args, info, peak, rows)


if __name__ == "__main__":
  main()
