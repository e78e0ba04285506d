"""Shared pieces of the benchmarks: machine info, timers, memory, models.

Both frameworks get the same random weights: the PyTorch references of the
tests (tests/torch_ref: NVIDIA StyleGAN2 + PadInv padded convs, non-fused
modulation; the official PadInv encoder) are built and randomised in torch,
and their state dicts are converted to padinv_jax variables with the
repository's converters, exactly as the parity tests do.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import threading
import time
from typing import Callable, Optional

import numpy as np

from padinv_jax.training import xla_flags

import measure  # (benchmarks/, torch-free)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))  # torch_ref

# XLA:CPU runs convolutions with Eigen by default; YNNPACK ("ynn fusion")
# is opt-in and about 2x faster on this model's convs. It must be set before
# JAX starts its CPU backend, so the scripts decide here: pass --xla-default
# to measure XLA's defaults instead.
YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type=individual_convolution"


# Whether XLA_FLAGS can still take effect (not when imported by pytest, say).
FLAGS_EFFECTIVE = not xla_flags.backend_started()
if "--xla-default" not in sys.argv and YNN_FLAG not in os.environ.get(
    "XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " "
                             + YNN_FLAG).strip()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import psutil  # noqa: E402
import torch  # noqa: E402

from padinv_jax.models import config as config_lib  # noqa: E402
from padinv_jax.convert import padinv_keys  # noqa: E402
from parity import structured_images  # noqa: E402,F401  (the tests' images)
from torch_ref import padinv_encoder_ref as enc_ref  # noqa: E402
from torch_ref import stylegan2_ref as gen_ref  # noqa: E402

NUM_THREADS = os.cpu_count() or 1


def set_threads():
  """torch threads = the cores XLA's CPU thread pool uses (all of them)."""
  torch.set_num_threads(NUM_THREADS)


# ----------------------------------------------------------------------------
# Machine.


def machine_info() -> dict:
  model = platform.processor()
  try:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    for line in out.splitlines():
      if line.startswith("Model name:"):
        model = line.split(":", 1)[1].strip()
  except OSError:
    pass
  return {"cpu": model, "cores": NUM_THREADS, "jax": jax.__version__,
          "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
          "python": platform.python_version(),
          "xla_flags": os.environ.get("XLA_FLAGS", ""),
          "ynn_convs": (YNN_FLAG in os.environ.get("XLA_FLAGS", "")
                        if FLAGS_EFFECTIVE else None),
          "loadavg_start": os.getloadavg()}


def matmul_peak(n: int = 2048, reps: int = 10) -> dict:
  """Best-of-``reps`` float32 [n, n] @ [n, n] in JAX: the machine's peak."""
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
  f = jax.jit(lambda a, b: a @ b)
  f(a, b).block_until_ready()
  best = min(_timed(lambda: f(a, b).block_until_ready()) for _ in range(reps))
  ta = torch.from_numpy(np.array(a))
  tb = torch.from_numpy(np.array(b))
  ta @ tb
  best_t = min(_timed(lambda: ta @ tb) for _ in range(reps))
  flops = 2.0 * n ** 3
  return {"n": n, "jax_gflops": flops / best / 1e9,
          "torch_gflops": flops / best_t / 1e9}


def _timed(fn) -> float:
  t = time.perf_counter()
  fn()
  return time.perf_counter() - t


class PeakRSS:
  """Context manager sampling this process's RSS: peak and peak - start."""

  def __init__(self, interval: float = 0.002):
    self.interval = interval
    self._proc = psutil.Process()

  def __enter__(self):
    self.start = self._proc.memory_info().rss
    self.peak = self.start
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, daemon=True)
    self._thread.start()
    return self

  def _run(self):
    while not self._stop.is_set():
      self.peak = max(self.peak, self._proc.memory_info().rss)
      time.sleep(self.interval)

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()
    self.peak = max(self.peak, self._proc.memory_info().rss)

  @property
  def delta_mb(self) -> float:
    return (self.peak - self.start) / 2 ** 20

  @property
  def peak_mb(self) -> float:
    return self.peak / 2 ** 20


def jax_device_peak_mb() -> Optional[float]:
  stats = jax.devices()[0].memory_stats()
  if not stats or "peak_bytes_in_use" not in stats:
    return None
  return stats["peak_bytes_in_use"] / 2 ** 20


def bench(fn: Callable[[], None], warmup: int, reps: int,
          min_time: float = 0.0) -> dict:
  """Latency statistics of a blocking ``fn`` after ``warmup`` calls.

  Runs at least ``reps`` timed calls (more while under ``min_time`` s).
  """
  for _ in range(warmup):
    fn()
  times = []
  t0 = time.perf_counter()
  while len(times) < reps or time.perf_counter() - t0 < min_time:
    times.append(_timed(fn))
  times = np.asarray(times)
  return {"median_s": float(np.median(times)), "min_s": float(times.min()),
          "mean_s": float(times.mean()), "reps": int(times.size)}


def bench_interleaved(fns: dict, warmup: int, reps: int) -> dict:
  """bench() for several blocking functions, their calls interleaved.

  On a shared machine the load drifts; alternating the frameworks call by
  call (order rotated each round) gives both the same conditions.
  """
  names = list(fns)
  for _ in range(warmup):
    for k in names:
      fns[k]()
  times = {k: [] for k in names}
  for i in range(reps):
    for k in names[i % len(names):] + names[:i % len(names)]:
      times[k].append(_timed(fns[k]))
  out = {}
  for k, t in times.items():
    t = np.asarray(t)
    out[k] = {"median_s": float(np.median(t)), "min_s": float(t.min()),
              "mean_s": float(t.mean()), "reps": int(t.size)}
  return out


def xla_flops(compiled) -> Optional[float]:
  """FLOPs of a compiled jax function from XLA's cost analysis."""
  ca = compiled.cost_analysis()
  if isinstance(ca, (list, tuple)):
    ca = ca[0] if ca else None
  if not ca:
    return None
  return float(ca.get("flops", 0.0)) or None


def xla_temp_mb(compiled) -> Optional[float]:
  """XLA's planned scratch memory of a compiled function (MB), if known."""
  try:
    ma = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except  # backend-dependent
    return None
  if ma is None:
    return None
  return (ma.temp_size_in_bytes + ma.output_size_in_bytes) / 2 ** 20


def add_common_args(p, json_name: str, reps: int) -> None:
  """The flags both benchmark scripts take."""
  p.add_argument("--warmup", type=int, default=1)
  p.add_argument("--reps", type=int, default=reps)
  p.add_argument("--no-torch", action="store_true")
  p.add_argument("--xla-default", action="store_true",
                 help="XLA's default (Eigen) convolutions instead of YNNPACK "
                      "(read by common.py before JAX starts)")
  p.add_argument("--quick", action="store_true",
                 help="1 timed rep after the first call")
  p.add_argument("--json", default=os.path.join(
      os.path.dirname(os.path.abspath(__file__)), "results", json_name))


def start(args) -> tuple[dict, dict]:
  """Threads, machine info and the matmul yardstick, printed; (info, peak)."""
  if args.quick:
    args.warmup, args.reps = 1, 1
  set_threads()
  info = machine_info()
  peak = matmul_peak(reps=3 if args.quick else 10)
  print(f"machine: {info['cpu']}, {info['cores']} cores, jax {info['jax']},"
        f" torch {info['torch']} ({info['torch_threads']} threads), load "
        f"{info['loadavg_start'][0]:.2f}, XLA_FLAGS={info['xla_flags']!r}")
  print(f"float32 2048^3 matmul peak: JAX {peak['jax_gflops']:.1f} GFLOP/s, "
        f"torch {peak['torch_gflops']:.1f} GFLOP/s")
  return info, peak


def write_json(path: str, obj) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    json.dump(obj, f, indent=1, default=float)


def finish(args, info: dict, peak: dict, rows: list[dict]) -> list[dict]:
  """Writes the run (machine, yardstick, flags, rows) to --json; the rows."""
  write_json(args.json, {"machine": info, "matmul_peak": peak,
                         "args": vars(args), "rows": rows})
  print(f"\nwrote {args.json}")
  return rows


# ----------------------------------------------------------------------------
# Models with identical weights in both frameworks.


def model_config(gen_res: int, tiny: bool = False):
  """The full PadInv model (IR-SE-50 + config-F at ``gen_res``), or tiny."""
  if tiny:
    cfg = config_lib.tiny_model_config(resolution=min(gen_res, 64))
    return cfg
  return config_lib.model_config({"resolution": gen_res}, {})


def torch_encoder(enc_cfg, seed: int = 0) -> torch.nn.Module:
  torch.manual_seed(seed)
  m = enc_ref.PadInvEncoderRef(
      depth=enc_cfg.depth, stem_channels=enc_cfg.stem_channels,
      stage_channels=enc_cfg.stage_channels,
      fpn_channels=enc_cfg.fpn_channels, w_dim=enc_cfg.w_dim,
      codes_per_level=enc_cfg.codes_per_level,
      encoder_type=enc_cfg.encoder_type,
      use_padding_space=enc_cfg.use_padding_space,
      pad_layer_num=enc_cfg.pad_layer_num, pad_units=enc_cfg.pad_units,
      units=enc_cfg.get("units"))
  enc_ref.randomize_(m, seed)
  return m


def torch_generator_sd(gen_cfg, seed: int = 1) -> dict:
  g = gen_cfg
  return gen_ref.random_state_dict(
      g.resolution, g.z_dim, g.w_dim, g.mapping_layers, g.channel_base,
      g.channel_max, seed=seed, lr_mul=g.mapping_lr_mul)


def build_models(cfg, seed: int = 0):
  """(torch encoder, torch generator state dict, padinv_jax variables).

  The torch encoder's avg_latent is the generator's w_avg, as PadInv's.
  """
  sd = torch_generator_sd(cfg.generator, seed + 1)
  enc = torch_encoder(cfg.encoder, seed)
  enc.avg_latent = sd["mapping.w_avg"].clone()
  gen_vars = gen_ref.to_padinv_jax(sd)
  enc_vars = padinv_keys.encoder_from_official(
      enc_ref.state_dict_numpy(enc), cfg.encoder,
      w_avg=sd["mapping.w_avg"].numpy())
  variables = jax.device_put({"generator": gen_vars, "encoder": enc_vars})
  return enc, sd, variables


def sanitize_torch_grads(params, clamp: float) -> None:
  """train_lib.sanitize_grads in torch, in place: NaN -> 0, +-inf and
  everything else into [-clamp, clamp]."""
  for p in params:
    if p.grad is not None:
      torch.nan_to_num_(p.grad, nan=0.0, posinf=clamp, neginf=-clamp)
      p.grad.clamp_(-clamp, clamp)


def torch_invert_fn(enc, sd, gen_cfg):
  """x NCHW -> G(E(x)) NCHW with the torch references (eval mode)."""
  nws = config_lib.num_ws(gen_cfg)
  enc.eval()

  def run(x):
    with torch.inference_mode():
      ws, maps = enc(x)
      return gen_ref.synthesis(sd, ws[:, :nws], gen_cfg.resolution,
                               conv_clamp=gen_cfg.conv_clamp, paddings=maps)
  return run


def print_table(rows: list[dict], cols: list[tuple[str, str, str]]) -> None:
  """rows of dicts; cols of (key, header, format)."""
  print("\n".join(measure.text_table(rows, cols, rule=True)))
