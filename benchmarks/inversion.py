"""Inversion G(E(x)) throughput: padinv_jax (jit) vs the PyTorch references.

Same random weights in both frameworks (benchmarks/common.py). For each
configuration and batch size: images/s and latency after warm-up, first-call
time (JAX: lower + compile, then the first run), peak memory (RSS sampled
during the runs; the increase over the RSS before them), max|diff| between
the two outputs, FLOPs per image from XLA's cost analysis and the fraction
of the measured float32 matmul peak they reach. Optionally the generator in
bfloat16 (params float32) with its speed and max|diff| to float32.

  python benchmarks/inversion.py                      # full run
  python benchmarks/inversion.py --quick --configs tiny --batches 1

Configurations: full1024 (256 px IR-SE-50 encoder + 1024 px config-F G),
full256 (same encoder + 256 px G), tiny (tiny_model_config, for smoke tests).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from padinv_jax.inversion import core as inversion  # noqa: E402
from padinv_jax.models import functional  # noqa: E402

CONFIGS = {"full1024": (1024, False), "full256": (256, False),
           "tiny": (32, True)}


def jax_invert(variables, images, *, config, dtype):
  ws, paddings = inversion.invert(variables, images, config=config,
                                  resize=None)
  return functional.synthesize(variables["generator"], ws, paddings or None,
                               config=config, dtype=dtype)


def prepare_jax(cfg, variables, x, dtype):
  """AOT-compile, run once; (output, blocking call, measurements)."""
  fn = jax.jit(functools.partial(jax_invert, config=cfg, dtype=dtype))
  t0 = time.perf_counter()
  compiled = fn.lower(variables, x).compile()
  compile_s = time.perf_counter() - t0
  call = lambda: compiled(variables, x).block_until_ready()
  with common.PeakRSS() as mem:
    t0 = time.perf_counter()
    out = call()
    first_s = time.perf_counter() - t0
  return np.asarray(out), call, {
      "compile_s": compile_s, "first_call_s": first_s + compile_s,
      "flops_per_call": common.xla_flops(compiled),
      "xla_temp_mb": common.xla_temp_mb(compiled),
      "rss_delta_mb": mem.delta_mb, "rss_peak_mb": mem.peak_mb,
      "device_peak_mb": common.jax_device_peak_mb()}


def prepare_torch(tfn, x):
  xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
  call = lambda: tfn(xt)
  with common.PeakRSS() as mem:
    t0 = time.perf_counter()
    out = call()
    first_s = time.perf_counter() - t0
  return out.numpy().transpose(0, 2, 3, 1), call, {
      "first_call_s": first_s, "rss_delta_mb": mem.delta_mb,
      "rss_peak_mb": mem.peak_mb}


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--configs", default="full1024,full256",
                 help="comma list of " + ",".join(CONFIGS))
  p.add_argument("--batches", default="1,4", help="comma list of batch sizes")
  p.add_argument("--bf16", action="store_true",
                 help="also time the generator in bfloat16 (params float32)")
  common.add_common_args(p, "inversion.json", reps=3)
  args = p.parse_args(argv)
  info, peak = common.start(args)

  rows = []
  for name in args.configs.split(","):
    res, tiny = CONFIGS[name]
    cfg = common.model_config(res, tiny)
    t0 = time.perf_counter()
    enc, sd, variables = common.build_models(cfg)
    tfn = common.torch_invert_fn(enc, sd, cfg.generator)
    print(f"[{name}] weights built and converted in "
          f"{time.perf_counter() - t0:.1f}s")
    for n in map(int, args.batches.split(",")):
      x = common.structured_images(n, int(cfg.encoder.input_size), seed=n)
      row = {"config": name, "batch": n}
      calls, meta = {}, {}
      out_j, calls["jax"], meta["jax"] = prepare_jax(cfg, variables, x,
                                                     jnp.float32)
      if not args.no_torch:
        out_t, calls["torch"], meta["torch"] = prepare_torch(tfn, x)
      if args.bf16:
        out_b, calls["bf16"], meta["bf16"] = prepare_jax(
            cfg, variables, x, jnp.bfloat16)
      stats = common.bench_interleaved(calls, max(args.warmup - 1, 0),
                                       args.reps)
      for k in calls:
        row.update({f"{k}_{m}": v for m, v in {**meta[k], **stats[k]}.items()})
        row[f"{k}_img_s"] = n / stats[k]["median_s"]
      flops = meta["jax"]["flops_per_call"]
      if flops:
        row["gflop_per_img"] = flops / n / 1e9
      if "torch" in calls:
        row["speedup"] = row["jax_img_s"] / row["torch_img_s"]
        row["max_diff"] = float(np.abs(out_j - out_t).max())
        row["max_ref"] = float(np.abs(out_t).max())
      if "bf16" in calls:
        row["bf16_max_diff_vs_f32"] = float(np.abs(out_b - out_j).max())
      row["loadavg"] = os.getloadavg()[0]
      rows.append(row)
      print(f"  batch {n}: JAX {row['jax_img_s']:.3f} img/s"
            + (f", torch {row['torch_img_s']:.3f} img/s"
               if "torch_img_s" in row else ""), flush=True)
    del enc, sd, variables

  # The peak again at the end (the load drifts); the better one counts.
  peak_end = common.matmul_peak(reps=3 if args.quick else 10)
  for k in ("jax_gflops", "torch_gflops"):
    peak[k] = max(peak[k], peak_end[k])
  for row in rows:
    if row.get("gflop_per_img"):
      row["frac_peak"] = (row["gflop_per_img"] * row["batch"]
                          / row["jax_median_s"] / peak["jax_gflops"])
  print(f"matmul peak (best of start and end): JAX {peak['jax_gflops']:.1f}"
        f" GFLOP/s")
  print()
  common.print_table(rows, [
      ("config", "config", "s"), ("batch", "N", "d"),
      ("jax_img_s", "JAX img/s", ".3f"), ("torch_img_s", "torch img/s", ".3f"),
      ("speedup", "JAX/torch", ".2f"), ("jax_median_s", "JAX lat s", ".3f"),
      ("torch_median_s", "torch lat s", ".3f"),
      ("jax_compile_s", "JAX compile s", ".1f"),
      ("torch_first_call_s", "torch 1st s", ".2f"),
      ("jax_xla_temp_mb", "JAX XLA temp MB", ".0f"),
      ("jax_rss_delta_mb", "JAX +RSS MB", ".0f"),
      ("torch_rss_delta_mb", "torch +RSS MB", ".0f"),
      ("gflop_per_img", "GFLOP/img", ".1f"), ("frac_peak", "of peak", ".0%"),
      ("max_diff", "max|diff|", ".2e"), ("max_ref", "max|ref|", ".2f"),
      ("bf16_img_s", "bf16 img/s", ".3f"),
      ("bf16_max_diff_vs_f32", "bf16 |diff|", ".2e"),
      ("loadavg", "load", ".2f")])
  return common.finish(args, info, peak, rows)


if __name__ == "__main__":
  main()
