"""Four slow XLA:CPU paths and what padinv_jax does instead, each on and off.

Profiles of the 256 px inversion and training step (jax.profiler, thunk
times) showed four places where XLA:CPU runs an op far below its speed:

  tiny_conv    a conv whose input fits in its kernel (the encoder heads'
               last 2x2 -> 1x1 convs) is operand-swapped by XLA into a
               reversed-kernel conv run as a naive loop; padinv_jax: one
               im2col matmul (ops._conv2d_patches_dot);
  demod        the demodulation's reduce over the kernel's two leading axes
               (~20 ms a 512-channel layer); padinv_jax: a sum of kh*kw
               [I, O] slices (stylegan2.demod_coefficients);
  phase_dgrad  a strided conv's input gradient as a conv over the
               zero-dilated gradient ("convolution-base-dilated");
               padinv_jax: s*s stride-1 phase convs (ops._input_grad_phases);
  fir_grad     the FIR's gradient as JAX's sum of pads (one slow fused
               loop); padinv_jax: the full correlation with reversed taps
               (fir._fir_1d's custom VJP).

Each row jits one function with everything on and once with one path put
back to XLA's own (by swapping the library function for the row), then
times the compiled calls interleaved, in one process:

  python benchmarks/cpu_paths.py [--reps 5] [--cases encoder,synthesis,step]
                                 [--tiny]

Random full-size networks (IR-SE-50 PadInv encoder, 256 px config-F
generator; the paper's training step without its loss networks: MSE +
W-norm, Adam, batch 2), or with --tiny the tiny test networks (a smoke
run: the tiny encoder's heads have no 2x2 -> 1x1 conv). Torch-free.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from padinv_jax.training import xla_flags  # noqa: E402

xla_flags.add_defaults()  # as padinv-train, before JAX starts

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import measure  # noqa: E402  (torch-free helpers of benchmarks/)

from padinv_jax.inversion import core  # noqa: E402
from padinv_jax.models import config as config_lib  # noqa: E402
from padinv_jax.models import encoder as encoder_lib  # noqa: E402
from padinv_jax.models import fir  # noqa: E402
from padinv_jax.models import functional  # noqa: E402
from padinv_jax.models import ops  # noqa: E402
from padinv_jax.models import stylegan2  # noqa: E402
from padinv_jax.training import train_lib  # noqa: E402


def _demod_by_reduce(weight, styles):
  """The reduce over the kernel's leading axes (XLA's slow path)."""
  wsq = jnp.sum(jnp.square(weight.astype(jnp.float32)), axis=(0, 1))
  return jax.lax.rsqrt(jnp.square(styles.astype(jnp.float32)) @ wsq + 1e-8)


def _xla_input_grad(dy, w, x_shape, stride, padding, precision=None):
  return jax.vjp(lambda x: ops._conv2d_lax(x, w, stride, padding,  # pylint: disable=protected-access
                                           precision=precision),
                 jnp.zeros(x_shape, dy.dtype))[1](dy)[0]


# Path name -> (module, attribute, XLA's own replacement).
PATHS = {
    "tiny_conv": (ops, "_input_within_kernel", lambda x_shape, w_shape: False),
    "demod": (stylegan2, "demod_coefficients", _demod_by_reduce),
    "phase_dgrad": (ops, "_input_grad_phases", _xla_input_grad),
    "fir_grad": (fir, "_fir_1d",
                 lambda x, taps, axis, down: fir._fir_1d_slices(  # pylint: disable=protected-access
                     x, taps, axis, down)),
}


@contextlib.contextmanager
def xla_path(name):
  """Puts XLA's own op back for ``name`` while tracing (None: no change)."""
  if name is None:
    yield
    return
  module, attr, repl = PATHS[name]
  orig = getattr(module, attr)
  setattr(module, attr, repl)
  try:
    yield
  finally:
    setattr(module, attr, orig)


def models(tiny: bool = False):
  cfg = (config_lib.tiny_model_config(resolution=32) if tiny
         else config_lib.model_config({"resolution": 256}, {}))
  gen = functional.init_generator(jax.random.PRNGKey(0), cfg)
  enc = encoder_lib.init_encoder(jax.random.PRNGKey(1), cfg)
  return cfg, {"generator": gen, "encoder": enc}


def images(cfg, n: int):
  px = int(cfg.encoder.input_size)
  return jax.random.uniform(jax.random.PRNGKey(2), (n, px, px, 3),
                            minval=-1.0, maxval=1.0)


def case_encoder(cfg, v):
  x = images(cfg, 1)
  return (lambda v, x: core.invert(v, x, config=cfg)), (v, x), (
      "tiny_conv",)


def case_synthesis(cfg, v):
  ws, pads = jax.jit(lambda v, x: core.invert(v, x, config=cfg))(v, images(cfg, 1))
  fn = lambda g, ws, pads: functional.synthesize(g, ws, pads,
                                                 config=cfg.generator)
  return fn, (v["generator"], ws, pads), ("demod",)


def case_step(cfg, v):
  tcfg = measure.step_config("adam", 1e-4, grad_clamp=3.4e38)
  tx = train_lib.make_optimizer(tcfg.optim)
  state = train_lib.state_from_encoder(v["encoder"], tx)
  frozen = {"generator": v["generator"],
            "encoder_buffers": v["encoder"]["buffers"]}
  fn = functools.partial(
      train_lib.train_step, encoder=encoder_lib.build_encoder(cfg.encoder),
      model_cfg=cfg, cfg=tcfg, tx=tx, nets=train_lib.LossNets())
  # Not donated: every call starts from the same state (the new state is
  # returned, so the update is not dead code; rows compare the metrics).
  return fn, (state, frozen, images(cfg, 2)), (
      "phase_dgrad", "fir_grad", "tiny_conv", "demod")


CASES = {"encoder": ("encoder forward (inversion), batch 1", case_encoder),
         "synthesis": ("256 px synthesis, batch 1", case_synthesis),
         "step": ("256 px training step, batch 2", case_step)}


def run_case(title, make, cfg, v, reps):
  fn, args, paths = make(cfg, v)
  compiled, outs = {}, {}
  for name in (None,) + paths:
    with xla_path(name):
      # A new function object each time: jit's trace cache would hand back
      # the first variant's trace.
      compiled[name] = jax.jit(lambda *a: fn(*a)).lower(*args).compile()
    out = jax.block_until_ready(compiled[name](*args))
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict):
      out = out[1]  # the training step's metrics
    outs[name] = jax.tree_util.tree_leaves(out)
    del out
  times = {k: [] for k in compiled}
  keys = list(compiled)
  for i in range(reps):  # interleaved, order rotated
    for k in keys[i % len(keys):] + keys[:i % len(keys)]:
      t = time.perf_counter()
      jax.block_until_ready(compiled[k](*args))
      times[k].append(time.perf_counter() - t)
  base = float(np.median(times[None]))
  rows = []
  for k in keys:
    diff = max(float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(
        b, np.float64))) / max(1.0, float(np.max(np.abs(np.asarray(b))))))
               for a, b in zip(outs[k], outs[None]))
    med = float(np.median(times[k]))
    rows.append({"case": title, "variant": "all on" if k is None
                 else f"{k} -> XLA's", "median_s": med,
                 "min_s": float(np.min(times[k])), "times": times[k],
                 "x_all_on": med / base, "max_scaled_diff": diff})
  return rows


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--reps", type=int, default=5)
  p.add_argument("--cases", default=",".join(CASES))
  p.add_argument("--tiny", action="store_true",
                 help="configs' tiny random networks (a smoke run)")
  p.add_argument("--json", default=os.path.join(HERE, "results",
                                                "cpu_paths.json"))
  a = p.parse_args(argv)
  unknown = set(a.cases.split(",")) - set(CASES)
  if unknown or a.reps < 1:
    p.error(f"--cases from {sorted(CASES)} and --reps >= 1 "
            f"(got {sorted(unknown)}, {a.reps})")
  if jax.default_backend() != "cpu" or not ops.CPU_CONV_REWRITES:
    p.error("these paths are CPU-only (backend "
            f"{jax.default_backend()!r}, CPU_CONV_REWRITES "
            f"{ops.CPU_CONV_REWRITES})")
  cfg, v = models(a.tiny)
  rows = []
  for name in a.cases.split(","):
    title, make = CASES[name]
    rows += run_case(title, make, cfg, v, a.reps)
    print("\n".join(measure.text_table(
        [r for r in rows if r["case"] == title],
        [("case", "case", "s"), ("variant", "variant", "s"),
         ("median_s", "median s", ".3f"), ("min_s", "min s", ".3f"),
         ("x_all_on", "x all on", ".2f"),
         ("max_scaled_diff", "max |diff|", ".1e")])), flush=True)
  os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
  with open(a.json, "w") as f:
    json.dump({"xla_flags": os.environ.get("XLA_FLAGS", ""),
               "loadavg": os.getloadavg(), "rows": rows}, f, indent=1)
  print(f"wrote {a.json}")
  return rows


if __name__ == "__main__":
  main()
