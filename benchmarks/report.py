"""Markdown tables from the benchmarks' JSON files (for benchmarks/RESULTS.md).

  python benchmarks/report.py benchmarks/results/inversion.json \
      benchmarks/results/train_step.json
"""

from __future__ import annotations

import json
import sys

INVERSION_COLS = [
    ("config", "config", "s"), ("batch", "N", "d"),
    ("jax_img_s", "JAX img/s", ".3f"), ("torch_img_s", "torch img/s", ".3f"),
    ("speedup", "JAX / torch", ".2f"), ("jax_median_s", "JAX latency s", ".2f"),
    ("torch_median_s", "torch latency s", ".2f"),
    ("jax_compile_s", "JAX compile s", ".1f"),
    ("torch_first_call_s", "torch 1st call s", ".1f"),
    ("jax_xla_temp_mb", "JAX XLA temp MB", ".0f"),
    ("jax_rss_delta_mb", "JAX +RSS MB", ".0f"),
    ("torch_rss_delta_mb", "torch +RSS MB", ".0f"),
    ("gflop_per_img", "GFLOP / img (XLA)", ".1f"),
    ("frac_peak", "of matmul peak", ".0%"),
    ("max_diff", "max abs diff", ".1e"), ("max_ref", "max abs ref", ".1f"),
    ("bf16_img_s", "bf16 img/s", ".3f"),
    ("bf16_max_diff_vs_f32", "bf16 max abs diff", ".2f"),
    ("loadavg", "load", ".1f")]

TRAIN_COLS = [
    ("config", "config", "s"), ("gen_res", "G px", "d"), ("batch", "N", "d"),
    ("jax_img_s", "JAX img/s", ".3f"), ("torch_img_s", "torch img/s", ".3f"),
    ("speedup", "JAX / torch", ".2f"), ("jax_median_s", "JAX step s", ".2f"),
    ("torch_median_s", "torch step s", ".2f"),
    ("jax_compile_s", "JAX compile s", ".1f"),
    ("jax_xla_temp_mb", "JAX XLA temp MB", ".0f"),
    ("jax_rss_delta_mb", "JAX +RSS MB", ".0f"),
    ("torch_rss_delta_mb", "torch +RSS MB", ".0f"),
    ("gflop_per_img", "GFLOP / img (XLA)", ".1f"),
    ("frac_peak", "of matmul peak", ".0%"),
    ("loss_rel_diff", "step-1 loss rel diff", ".1e"),
    ("loadavg", "load", ".1f")]

CONV_COLS = [
    ("batch", "N", "d"), ("shape", "conv 3x3", "s"), ("gflop", "GFLOP", ".2f"),
    ("jax_gflops", "fwd JAX GFLOP/s", ".0f"),
    ("torch_gflops", "fwd torch GFLOP/s", ".0f"),
    ("dw_ours_gflops", "dw padinv_jax GFLOP/s", ".0f"),
    ("dw_xla_gflops", "dw XLA GFLOP/s", ".0f"),
    ("dw_torch_gflops", "dw torch GFLOP/s", ".0f"),
    ("where", "where in the encoder", "s")]


def table(rows, cols) -> str:
  cols = [c for c in cols if any(r.get(c[0]) is not None for r in rows)]
  out = ["| " + " | ".join(h for _, h, _ in cols) + " |",
         "|" + "|".join("---" for _ in cols) + "|"]
  for r in rows:
    out.append("| " + " | ".join(
        "-" if r.get(k) is None else format(r[k], f) for k, _, f in cols)
        + " |")
  return "\n".join(out)


def main(paths):
  for path in paths:
    with open(path) as f:
      data = json.load(f)
    m, peak = data["machine"], data["matmul_peak"]
    print(f"`{path}`: {m['cpu']}, {m['cores']} cores, jax {m['jax']}, torch "
          f"{m['torch']} ({m['torch_threads']} threads), load at start "
          f"{m['loadavg_start'][0]:.1f}; float32 {peak['n']}^3 matmul: JAX "
          f"{peak['jax_gflops']:.0f} GFLOP/s, torch "
          f"{peak['torch_gflops']:.0f} GFLOP/s\n")
    cols = (TRAIN_COLS if "train_step" in path else
            CONV_COLS if "convs" in path else INVERSION_COLS)
    print(table(data["rows"], cols) + "\n")


if __name__ == "__main__":
  main(sys.argv[1:])
