"""One command for a new accelerator: parity first, then speed and memory.

  python benchmarks/device_check.py                 # the paper's config
  python benchmarks/device_check.py --size tiny     # a minute on a CPU

On whatever backend JAX finds (CPU, GPU, TPU):

1. Parity, against float32 reference outputs stored in the repository
   (benchmarks/device_check_ref.npz, made by the PyTorch references of the
   tests with benchmarks/make_device_check_ref.py): mapping(z), the encoder
   (W+ codes and padding maps, eval mode), the padded synthesis of those
   codes, and one training step (train-mode BatchNorm, MSE + W-norm, SGD:
   the loss, the new parameters and BatchNorm statistics). The model is a
   tiny PadInv network whose weights are in the file, so this part needs
   neither torch nor a download. Matmuls and convs run at 'highest'
   precision here (TPUs and recent GPUs otherwise round float32 operands to
   bfloat16 / TF32); a check fails above 1e-4 * max(1, max |ref|)
   (--tolerance), the step's update / lr above 2e-2 * max(1, max |ref|)
   (--step-tolerance: gradients jump at activation kinks, see parity()).
2. Speed and memory at --size (paper: IR-SE-50 encoder + 1024 px config-F
   generator, random weights, batch 8; small: 256 px generator, batch 2;
   tiny: the tiny network, batch 2): inversion G(E(x)) and one training
   step (MSE + W-norm, Adam, the step padinv-train jits), each in float32
   and with the encoder's and the generator's convolutions in bfloat16
   (params, demodulation, noise, the ToRGB sum, BatchNorm, PReLU,
   squeeze-excitation, losses and Adam stay float32), at the
   backend's default matmul precision, with padinv-train's XLA flags
   (training/xla_flags.py). Median of --reps calls after a
   warm-up; peak memory from the device's allocator (GPU/TPU) or the
   process's peak RSS (CPU).

Prints a table with the device name and writes --json. Exit status 1 when
a parity check fails, 0 otherwise.
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
import measure  # noqa: E402  (torch-free helpers of benchmarks/)

REF = os.path.join(HERE, "device_check_ref.npz")
# --size: (generator px, the reference's tiny network?, default batch).
SIZES = {"tiny": (32, True, 2), "small": (256, False, 2),
         "paper": (1024, False, 8)}


def _flat_get(npz, prefix):
  from padinv_jax.convert import common as conv_common  # pylint: disable=import-outside-toplevel
  return conv_common.unflatten({k[len(prefix):]: np.asarray(npz[k])
                                for k in npz.files if k.startswith(prefix)})


def load_reference(path: str):
  from padinv_jax.storage import model_dir  # pylint: disable=import-outside-toplevel
  if not os.path.isfile(path):
    raise SystemExit(f"device_check: {path} not found; it ships with the "
                     "repository (re-create it with "
                     "benchmarks/make_device_check_ref.py)")
  try:
    npz = np.load(path, allow_pickle=False)
    cfg = model_dir.config_from_json(json.loads(str(npz["config_json"])),
                                     path)
    variables = _flat_get(npz, "v/")
    ref = {k: np.asarray(npz[k]) for k in npz.files if not k.startswith("v/")}
  except (OSError, ValueError, KeyError) as e:
    raise SystemExit(f"device_check: {path} is not a device-check reference "
                     f"({type(e).__name__}: {e}); re-create it with "
                     "benchmarks/make_device_check_ref.py") from None
  return cfg, variables, ref


def _compare(name, got, want, tol):
  got = np.asarray(got, np.float64)
  want = np.asarray(want, np.float64)
  if got.shape != want.shape:
    return {"check": name, "ok": False, "max_abs_diff": None,
            "error": f"shape {got.shape} != reference {want.shape}"}
  diff = float(np.max(np.abs(got - want))) if want.size else 0.0
  scale = max(1.0, float(np.max(np.abs(want))) if want.size else 1.0)
  ok = bool(np.all(np.isfinite(got))) and diff <= tol * scale
  return {"check": name, "ok": ok, "max_abs_diff": diff,
          "max_abs_ref": scale, "bound": tol * scale}


def _sgd_train_cfg():
  """The reference step's objective and plain SGD (lr 0.01: the update over
  lr is the clamped gradient)."""
  return measure.step_config("sgd", 0.01, grad_clamp=1e5)


def parity(path: str, tol: float, step_tol: float = 2e-2) -> list[dict]:
  """The stored torch-reference outputs against this backend's."""
  from padinv_jax.models import config as config_lib  # pylint: disable=import-outside-toplevel
  from padinv_jax.models import encoder as encoder_lib  # pylint: disable=import-outside-toplevel
  from padinv_jax.models import functional  # pylint: disable=import-outside-toplevel
  from padinv_jax.inversion import core  # pylint: disable=import-outside-toplevel
  from padinv_jax.training import train_lib  # pylint: disable=import-outside-toplevel
  from padinv_jax.convert import common as conv_common  # pylint: disable=import-outside-toplevel

  cfg, variables, ref = load_reference(path)
  variables = jax.device_put(variables)
  nws = config_lib.num_ws(cfg.generator)
  rows = []
  with jax.default_matmul_precision("highest"):
    ws = jax.jit(functools.partial(functional.mapping, config=cfg))(
        variables["generator"], jnp.asarray(ref["z"]))
    rows.append(_compare("mapping", ws, ref["ref/mapping"], tol))

    images = jnp.asarray(ref["images_u8"])
    enc_ws, pads = jax.jit(functools.partial(core.invert, config=cfg))(
        variables, images)
    rows.append(_compare("encoder W+", enc_ws, ref["ref/ws"], tol))
    for k in sorted(pads):
      rows.append(_compare(f"encoder padding {k}", pads[k],
                           ref["ref/pad/" + k], tol))

    # Synthesis of the REFERENCE codes, so it is checked on its own.
    ref_pads = {k[len("ref/pad/"):]: jnp.asarray(v) for k, v in ref.items()
                if k.startswith("ref/pad/")}
    img = jax.jit(functools.partial(functional.synthesize,
                                    config=cfg.generator))(
        variables["generator"], jnp.asarray(ref["ref/ws"][:, :nws]), ref_pads)
    rows.append(_compare("synthesis (padded)", img, ref["ref/image"], tol))

    tcfg = _sgd_train_cfg()
    tx = train_lib.make_optimizer(tcfg.optim)
    encoder = encoder_lib.build_encoder(cfg.encoder)
    enc = variables["encoder"]
    state = train_lib.state_from_encoder(enc, tx)
    frozen = {"generator": variables["generator"],
              "encoder_buffers": enc["buffers"]}
    x = images.astype(jnp.float32) / 127.5 - 1.0
    step = jax.jit(functools.partial(
        train_lib.train_step, encoder=encoder, model_cfg=cfg, cfg=tcfg, tx=tx,
        nets=train_lib.LossNets()))
    new_state, m = step(state, frozen, x)
    rows.append(_compare("train step: loss", m["loss"], ref["ref/loss"], tol))
    for part in ("params", "batch_stats"):
      got = conv_common.flatten(jax.device_get(getattr(new_state, part)))
      want = {k[len(f"ref/step/{part}/"):]: v for k, v in ref.items()
              if k.startswith(f"ref/step/{part}/")}
      if part == "params":
        # SGD: the update over the learning rate is the (clamped) gradient;
        # compare that, on its own scale (the update itself is ~lr small).
        old = conv_common.flatten(jax.device_get(enc["params"]))
        lr = tcfg.optim.lr
        got = {k: (np.asarray(old[k]) - v) / lr for k, v in got.items()}
        want = {k: (np.asarray(old[k]) - v) / lr for k, v in want.items()
                if k in old}
      if set(got) != set(want):
        rows.append({"check": f"train step: {part}", "ok": False,
                     "max_abs_diff": None,
                     "error": f"leaves differ: {sorted(set(got) ^ set(want))[:4]}"})
        continue
      # Gradients through ReLU / PReLU / LeakyReLU kinks: an element whose
      # pre-activation rounds to the other side of 0 on another backend
      # changes its gradient by a finite amount (seen: 0.6 % of a leaf's
      # largest gradient on the same CPU between two conv algorithms), so
      # the update is held to --step-tolerance, the statistics to tol.
      bound = step_tol if part == "params" else tol
      worst = max((_compare(k, got[k], want[k], bound) for k in want),
                  key=lambda r: (not r["ok"], r["max_abs_diff"] or 0))
      what = "(old - new) / lr" if part == "params" else part
      worst["check"] = f"train step: {what} (worst: {worst['check']})"
      rows.append(worst)
  return rows


# ----------------------------------------------------------------------------
# Speed and memory.


def _peak_mb():
  dev = jax.devices()[0]
  stats = dev.memory_stats() if hasattr(dev, "memory_stats") else None
  if stats and "peak_bytes_in_use" in stats:
    return stats["peak_bytes_in_use"] / 2 ** 20, "device"
  peak = measure.peak_rss_mb()
  return (peak, "process RSS") if peak is not None else (None, None)


def speed(size: str, batch: int, reps: int, ref_path: str) -> list[dict]:
  from padinv_jax.models import config as config_lib  # pylint: disable=import-outside-toplevel
  from padinv_jax.models import encoder as encoder_lib  # pylint: disable=import-outside-toplevel
  from padinv_jax.models import functional  # pylint: disable=import-outside-toplevel
  from padinv_jax.inversion import core  # pylint: disable=import-outside-toplevel
  from padinv_jax.training import train_lib  # pylint: disable=import-outside-toplevel

  res, tiny, default_batch = SIZES[size]
  batch = batch or default_batch
  # tiny: the reference file's network shape (its compiled steps are the
  # cheapest that exercise every part); otherwise the paper's IR-SE-50 +
  # config-F at res.
  cfg = (load_reference(ref_path)[0] if tiny
         else config_lib.model_config({"resolution": res}, {}))
  key = jax.random.PRNGKey(0)
  gen = functional.init_generator(key, cfg)
  enc = encoder_lib.init_encoder(jax.random.PRNGKey(1), cfg)
  variables = {"generator": gen, "encoder": enc}
  size_px = int(cfg.encoder.input_size)
  x = jax.random.uniform(jax.random.PRNGKey(2), (batch, size_px, size_px, 3),
                         minval=-1.0, maxval=1.0)
  rows = []
  for dtype in (jnp.float32, jnp.bfloat16):
    name = jnp.dtype(dtype).name
    # Inversion G(E(x)).
    def invert(v, x, dtype=dtype):
      ws, pads = core.invert(v, x, config=cfg, dtype=dtype)
      return functional.synthesize(v["generator"], ws, pads,
                                   config=cfg.generator, dtype=dtype)
    f = jax.jit(invert)
    t = time.perf_counter()
    jax.block_until_ready(f(variables, x))
    first = time.perf_counter() - t
    med = measure.median_time(
        lambda: jax.block_until_ready(f(variables, x)), 0, reps)[0]
    peak, peak_kind = _peak_mb()
    rows.append({"what": "inversion G(E(x))", "dtype": name, "batch": batch,
                 "first_call_s": first, "median_s": med,
                 "img_per_s": batch / med, "peak_mb": peak,
                 "peak_kind": peak_kind})

    # One training step.
    tcfg = measure.step_config("adam", 1e-4, grad_clamp=1e5)
    tx = train_lib.make_optimizer(tcfg.optim)
    encoder = encoder_lib.build_encoder(cfg.encoder, dtype=dtype)
    state = train_lib.state_from_encoder(
        jax.tree_util.tree_map(jnp.copy, enc), tx)
    frozen = {"generator": gen, "encoder_buffers": enc["buffers"]}
    step = jax.jit(functools.partial(
        train_lib.train_step, encoder=encoder, model_cfg=cfg, cfg=tcfg, tx=tx,
        nets=train_lib.LossNets(), compute_dtype=dtype), donate_argnums=(0,))
    box = {"s": state}
    del state

    def run():
      box["s"], m = step(box["s"], frozen, x)
      return jax.block_until_ready(m)
    t = time.perf_counter()
    loss = float(run()["loss"])
    first = time.perf_counter() - t
    med = measure.median_time(run, 0, reps)[0]
    peak, peak_kind = _peak_mb()
    rows.append({"what": "training step", "dtype": name, "batch": batch,
                 "first_call_s": first, "median_s": med,
                 "img_per_s": batch / med, "peak_mb": peak,
                 "peak_kind": peak_kind, "loss": loss,
                 "finite": bool(np.isfinite(loss))})
    box.clear()  # the donated state's buffers go before the next dtype
  return rows


def _table(rows, cols):
  return "\n".join(measure.text_table(rows, cols, left=True))


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--size", choices=sorted(SIZES), default="paper")
  p.add_argument("--batch", type=int, default=0,
                 help="batch of the timed calls (default: per --size)")
  p.add_argument("--reps", type=int, default=3)
  p.add_argument("--tolerance", type=float, default=1e-4)
  p.add_argument("--step-tolerance", type=float, default=2e-2,
                 help="bound of the training step's update / lr (kinks)")
  p.add_argument("--reference", default=REF)
  p.add_argument("--skip-speed", action="store_true")
  p.add_argument("--json", default="device_check.json")
  a = p.parse_args(argv)
  if (a.reps < 1 or a.batch < 0 or not 0 < a.tolerance < 1
      or not 0 < a.step_tolerance < 1):
    p.error("--reps >= 1, --batch >= 0, 0 < --tolerance, --step-tolerance "
            "< 1")
  # padinv-train's XLA:CPU defaults (the memory-minimising scheduler);
  # before the first jax call starts the backend.
  from padinv_jax.training import xla_flags  # pylint: disable=import-outside-toplevel
  xla_flags.add_defaults()
  dev = jax.devices()[0]
  device = f"{dev.platform}: {getattr(dev, 'device_kind', '?')} " \
           f"(x{jax.device_count()})"
  print(f"device: {device}; jax {jax.__version__}", flush=True)
  checks = parity(a.reference, a.tolerance, a.step_tolerance)
  print("\nparity against the stored float32 torch-reference outputs "
        f"(bound {a.tolerance:g} * max(1, max|ref|)):")
  print(_table(checks, [("check", "check", "s"), ("ok", "ok", ""),
                        ("max_abs_diff", "max |diff|", ".2e"),
                        ("bound", "bound", ".1e")]))
  ok = all(r["ok"] for r in checks)
  rows = []
  if not a.skip_speed:
    rows = speed(a.size, a.batch, a.reps, a.reference)
    print(f"\nspeed and memory, --size {a.size} on {device}:")
    print(_table(rows, [("what", "what", "s"), ("dtype", "compute", "s"),
                        ("batch", "N", "d"), ("median_s", "median s", ".3f"),
                        ("img_per_s", "img/s", ".2f"),
                        ("first_call_s", "compile+1st s", ".1f"),
                        ("peak_mb", "peak MB", ".0f"),
                        ("peak_kind", "peak of", "s")]))
  out = {"device": device, "platform": dev.platform, "jax": jax.__version__,
         "size": a.size, "parity_ok": ok, "parity": checks, "speed": rows,
         "date": time.strftime("%Y-%m-%d %H:%M")}
  with open(a.json, "w") as f:
    json.dump(out, f, indent=1)
  print(f"\nparity: {'PASS' if ok else 'FAIL'}; wrote {a.json}")
  return 0 if ok else 1


if __name__ == "__main__":
  sys.exit(main())
