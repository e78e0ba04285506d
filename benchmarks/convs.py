"""Single convolutions of the PadInv model: XLA vs PyTorch (oneDNN), GFLOP/s.

The inversion and training benchmarks say how fast the whole model is; this
one says why. Each row is one convolution shape that the IR-SE-50 encoder
or its Map2Style heads run many times (at batch N, NHWC for JAX, NCHW for
torch, float32, torch threads = JAX threads), timed interleaved after a warm
call: the forward conv, and the kernel gradient (what training needs for
every encoder conv) three ways: padinv_jax's matmul rule (ops._kernel_grad,
used on CPU), XLA's own kernel-gradient conv, and torch's.

  python benchmarks/convs.py                  # the table, JSON in results/
  python benchmarks/convs.py --batches 1,4

"where" counts how often the full encoder runs the shape per image, so the
rows can be weighed against each other.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (sets XLA_FLAGS before JAX starts)

import jax  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from padinv_jax.models import ops  # noqa: E402

# (input side, in channels, out channels, stride, where in the encoder)
SHAPES = [
    (256, 3, 64, 1, "stem"),
    (256, 64, 64, 1, "stage0 unit0 conv1"),
    (128, 64, 64, 1, "stage0 units 1-2 (x2 convs)"),
    (64, 128, 128, 1, "stage1 units 1-3 (x2 convs)"),
    (32, 256, 256, 1, "stage2 units 1-13 (x2 convs)"),
    (16, 512, 512, 1, "stage3 units 1-2 (x2 convs)"),
    (32, 512, 512, 1, "padding branch (2 units x 2 convs)"),
    (64, 512, 512, 2, "11 fine heads, conv0"),
    (32, 512, 512, 2, "11 fine heads conv1, 4 mid heads conv0, stage3 unit0"),
    (16, 512, 512, 2, "11 fine conv2, 4 mid conv1, 3 coarse conv0"),
]


def conv_pair(n, side, cin, cout, stride):
  """Blocking calls {name: fn}, GFLOP and max|diff| for one 3x3 pad-1 conv."""
  rng = np.random.default_rng(side + cin + cout + stride)
  x = rng.standard_normal((n, side, side, cin), np.float32)
  w = (rng.standard_normal((3, 3, cin, cout), np.float32)
       / np.sqrt(9 * cin)).astype(np.float32)
  side_out = side // stride
  dy = rng.standard_normal((n, side_out, side_out, cout), np.float32)
  pad = ((1, 1), (1, 1))
  xj, wj, dyj = map(jax.device_put, (x, w, dy))
  fwd = jax.jit(lambda x, w: ops._conv2d_lax(x, w, stride, pad))
  dw_ours = jax.jit(lambda x, dy: ops._kernel_grad(x, dy, (3, 3), stride,
                                                   pad))
  dw_xla = jax.jit(lambda x, w, dy: jax.vjp(
      lambda w: ops._conv2d_lax(x, w, stride, pad), w)[1](dy)[0])
  xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
  wt = torch.from_numpy(w.transpose(3, 2, 0, 1).copy())
  dyt = torch.from_numpy(dy.transpose(0, 3, 1, 2).copy())

  def torch_fwd():
    with torch.inference_mode():
      return torch.nn.functional.conv2d(xt, wt, stride=stride, padding=1)

  def torch_dw():
    return torch.nn.grad.conv2d_weight(xt, wt.shape, dyt, stride=stride,
                                       padding=1)

  diff = float(np.abs(np.asarray(fwd(xj, wj))
                      - torch_fwd().numpy().transpose(0, 2, 3, 1)).max())
  ref_dw = torch_dw().numpy().transpose(2, 3, 1, 0)
  diff_dw = float(max(np.abs(np.asarray(f) - ref_dw).max()
                      for f in (dw_ours(xj, dyj), dw_xla(xj, wj, dyj)))
                  / np.abs(ref_dw).max())
  gflop = 2.0 * n * side_out ** 2 * cin * cout * 9 / 1e9
  calls = {"jax": lambda: fwd(xj, wj).block_until_ready(),
           "torch": torch_fwd,
           "dw_ours": lambda: dw_ours(xj, dyj).block_until_ready(),
           "dw_xla": lambda: dw_xla(xj, wj, dyj).block_until_ready(),
           "dw_torch": torch_dw}
  return calls, gflop, diff, diff_dw


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--batches", default="1", help="comma list of batch sizes")
  common.add_common_args(p, "convs.json", reps=7)
  args = p.parse_args(argv)
  info, peak = common.start(args)
  rows = []
  for n in map(int, args.batches.split(",")):
    for side, cin, cout, stride, where in SHAPES:
      calls, gflop, diff, diff_dw = conv_pair(n, side, cin, cout, stride)
      stats = common.bench_interleaved(calls, args.warmup, args.reps)
      row = {"batch": n, "shape": f"{side}^2x{cin}->{cout} s{stride}",
             "where": where, "gflop": gflop, "max_diff": diff,
             "dw_rel_diff": diff_dw}
      for k in calls:
        row[f"{k}_ms"] = stats[k]["median_s"] * 1e3
        row[f"{k}_gflops"] = gflop / stats[k]["median_s"]
      row["speedup"] = stats["torch"]["median_s"] / stats["jax"]["median_s"]
      rows.append(row)
      print(f"  N={n} {row['shape']}: fwd JAX {row['jax_gflops']:.0f} / torch "
            f"{row['torch_gflops']:.0f}; dw ours {row['dw_ours_gflops']:.0f} "
            f"/ XLA {row['dw_xla_gflops']:.0f} / torch "
            f"{row['dw_torch_gflops']:.0f} GFLOP/s", flush=True)
  print()
  common.print_table(rows, [
      ("batch", "N", "d"), ("shape", "conv 3x3", "s"), ("gflop", "GFLOP", ".2f"),
      ("jax_ms", "JAX ms", ".1f"), ("torch_ms", "torch ms", ".1f"),
      ("jax_gflops", "JAX GFLOP/s", ".0f"),
      ("torch_gflops", "torch GFLOP/s", ".0f"),
      ("speedup", "JAX/torch", ".2f"),
      ("dw_ours_gflops", "dw ours GFLOP/s", ".0f"),
      ("dw_xla_gflops", "dw XLA GFLOP/s", ".0f"),
      ("dw_torch_gflops", "dw torch GFLOP/s", ".0f"),
      ("max_diff", "max|diff|", ".1e"), ("dw_rel_diff", "dw rel diff", ".1e"),
      ("where", "where", "s")])
  return common.finish(args, info, peak, rows)


if __name__ == "__main__":
  main()
