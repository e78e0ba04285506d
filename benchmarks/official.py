"""padinv_jax against the OFFICIAL PadInv code: training-step memory and speed.

The official code (github.com/EzioBy/padinv) is not part of this repository:
clone it anywhere and pass its root with --official (or PADINV_OFFICIAL).
Its models run on the CPU with their pure-PyTorch op paths (impl='ref');
only its two model files and the ops they import are loaded (no OpenCV,
DALI or distributed set-up; `pip install easydict` is the one extra).

For each generator resolution the parent builds the official encoder
(IR-SE-50, 256 px input, FPN 512, codes [3, 4, 11], padding space with 4
padded layers, the paper's defaults) and the official padded StyleGAN2
generator with random weights (w_avg = mean of mapping(z)), saves them as an
official training checkpoint and converts that with `padinv-convert
--format padinv`, as a user would. Every case then runs in a FRESH process
(peak RSS is per process: VmHWM): the official training step as its runner
does it (E in train mode, G.synthesis(wp, padding_maps, impl='ref') frozen
in eval mode, G output average-pooled to 256 px, MSE 1.0 + W-norm 0.003,
NaN grads -> 0, Adam 1e-4) or padinv_jax's train_lib.train_step (the step
padinv-train jits, state donated) with one remat choice / accumulation /
compute dtype. Cases alternate between the two codes so drift hits both.

Optionally (--phases) each side also times the step's pieces one by one:
encoder forward, generator forward + loss, generator backward (to W+ and
the padding maps), encoder backward, gradient clean-up + Adam.

  python benchmarks/official.py --official ~/src/padinv \
      --gen-res 256,1024 --batch 2 --remat none,encoder,synthesis,both \
      --accum 1,2 --phases --json benchmarks/results/official.json
  python benchmarks/official.py --official ~/src/padinv --what invert \
      --gen-res 256,1024 --batch 1,4 --json benchmarks/results/official_invert.json

--what invert times G(E(x)) instead (eval mode, no autograd; padinv_jax:
invert + synthesize under one jit), at the generator's resolution.

XLA runs with its default flags (pass --ynn for the YNNPACK conv flag).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type=individual_convolution"
MSE, WNORM, LR = 1.0, 0.003, 1e-4
CODES = (3, 4, 11)
PAD_LAYER_NUM = 4
LOSS_RES = 256


# ----------------------------------------------------------------------------
# Memory of this process (Linux /proc).


def _status_kb(field: str) -> int:
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith(field + ":"):
        return int(line.split()[1])
  return 0


def rss_mb() -> float:
  return _status_kb("VmRSS") / 1024


def peak_mb() -> float:
  return _status_kb("VmHWM") / 1024


def reset_peak() -> bool:
  """Resets VmHWM to the current RSS (Linux >= 4.0); False where refused."""
  try:
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")
    return True
  except OSError:
    return False


def median_time(fn, warmup: int, reps: int) -> tuple[float, list]:
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(reps):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return float(sorted(times)[len(times) // 2]), times


PHASES = ("enc_fwd", "gen_fwd", "gen_bwd", "enc_bwd", "optim")


def median_phases(phased, reps: int) -> dict:
  """{phase_<name>: median s} of ``phased()`` (a list of PHASES times),
  after one warm-up call."""
  phased()
  runs = [phased() for _ in range(reps)]
  return {"phase_" + k: sorted(r[i] for r in runs)[len(runs) // 2]
          for i, k in enumerate(PHASES)}


def images(n: int, seed: int = 0):
  sys.path.insert(0, os.path.join(REPO, "tests"))
  from parity import structured_images  # pylint: disable=import-outside-toplevel
  return structured_images(n, LOSS_RES, seed=seed)


# ----------------------------------------------------------------------------
# The official models.


def import_official(root: str):
  """(PadInvEncoder, StyleGAN2GeneratorPadInv) from an official checkout."""
  root = os.path.abspath(os.path.expanduser(root))
  files = [os.path.join(root, "models", f) for f in (
      "padinv_encoder.py", "stylegan2_generator_padinv.py")]
  missing = [f for f in files if not os.path.isfile(f)]
  if missing:
    raise SystemExit(f"--official {root}: expected a checkout of "
                     f"github.com/EzioBy/padinv, missing {missing}")
  sys.path.insert(0, root)
  # The packages' __init__ files import every model and OpenCV; only the two
  # model modules (and the ops they import) are needed.
  for name in ("models", "utils"):
    pkg = types.ModuleType(name)
    pkg.__path__ = [os.path.join(root, name)]
    sys.modules.setdefault(name, pkg)
  try:
    import cv2  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  except ImportError:
    sys.modules["cv2"] = types.ModuleType("cv2")  # formatting_utils imports it
  try:
    from models.padinv_encoder import PadInvEncoder  # pylint: disable=import-outside-toplevel
    from models.stylegan2_generator_padinv import StyleGAN2GeneratorPadInv  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise SystemExit(f"--official {root}: importing its models failed ({e}); "
                     "`pip install easydict` is the one extra it needs")
  return PadInvEncoder, StyleGAN2GeneratorPadInv


def official_models(root: str, res: int):
  import torch  # pylint: disable=import-outside-toplevel
  enc_cls, gen_cls = import_official(root)
  enc = enc_cls(resolution=256, latent_dim=[512] * sum(CODES),
                num_latents_per_level=list(CODES), pad_layer_num=PAD_LAYER_NUM)
  gen = gen_cls(resolution=res)
  return torch, enc, gen


def official_kwargs(res: int) -> dict:
  return {"encoder": dict(resolution=256, latent_dim=[512] * sum(CODES),
                          num_latents_per_level=list(CODES),
                          pad_layer_num=PAD_LAYER_NUM),
          "generator": dict(resolution=res)}


def prepare(root: str, res: int, out: str) -> dict:
  """Random official E + G -> out/official.pth and the converted out/model."""
  os.makedirs(out, exist_ok=True)
  ckpt = os.path.join(out, "official.pth")
  model = os.path.join(out, "model")
  if os.path.isdir(model) and os.path.isfile(ckpt):
    return {"checkpoint": ckpt, "model": model}
  torch, enc, gen = official_models(root, res)
  torch.manual_seed(res)
  with torch.no_grad():
    for m in enc.modules():  # BatchNorm affine params off their 1 / 0 init
      if isinstance(m, torch.nn.BatchNorm2d):
        m.weight.uniform_(0.5, 1.5)
        m.bias.uniform_(-0.2, 0.2)
    w = gen.mapping(torch.randn(2000, 512), impl="ref")["w"]
    gen.w_avg.copy_(w.mean(0))
  torch.save({"models": {"encoder": enc.state_dict(),
                         "generator": gen.state_dict()},
              "model_kwargs_init": official_kwargs(res)}, ckpt)
  del enc, gen
  t0 = time.perf_counter()
  subprocess.run([sys.executable, "-m", "padinv_jax.convert.main", ckpt, model,
                  "--format", "padinv", "--overwrite"], check=True)
  print(f"  converted {res} px in {time.perf_counter() - t0:.0f} s",
        flush=True)
  return {"checkpoint": ckpt, "model": model}


# ----------------------------------------------------------------------------
# Child: the official training step.


def child_official(a) -> dict:
  torch, enc, gen = official_models(a.official, a.res)
  torch.set_num_threads(os.cpu_count() or 1)
  ck = torch.load(a.checkpoint, weights_only=True, map_location="cpu")
  enc.load_state_dict(ck["models"]["encoder"])
  gen.load_state_dict(ck["models"]["generator"])
  del ck
  enc.avg_latent = gen.w_avg.clone()  # what the PadInv runner sets
  enc.train().requires_grad_(True)
  gen.eval().requires_grad_(False)
  opt = torch.optim.Adam(enc.parameters(), lr=LR, betas=(0.9, 0.999))
  x = torch.from_numpy(images(a.batch).transpose(0, 3, 1, 2).copy())
  pool = torch.nn.AdaptiveAvgPool2d((LOSS_RES, LOSS_RES))
  w_avg = enc.avg_latent
  row = {"rss_loaded_mb": rss_mb()}

  def synth(ws, maps):
    img = gen.synthesis(wp=ws, padding_maps=maps, impl="ref")["image"]
    return pool(img) if a.res > LOSS_RES else img

  def loss_of(img, ws):
    mse = torch.nn.functional.mse_loss(img, x)
    wnorm = (ws - w_avg).norm(2, dim=(1, 2)).mean()
    return MSE * mse + WNORM * wnorm

  def clean_and_step():
    for p in enc.parameters():  # the runner's clip_model_gradient
      if p.grad is not None:
        lo, hi = torch.finfo(p.grad.dtype).min, torch.finfo(p.grad.dtype).max
        torch.clamp(p.grad.unsqueeze(0).nansum(0), min=lo, max=hi,
                    out=p.grad)
    opt.step()

  def step():
    lat = enc(x)
    loss = loss_of(synth(lat["style_latents"], lat["padding_maps"]),
                   lat["style_latents"])
    opt.zero_grad(set_to_none=True)
    loss.backward()
    clean_and_step()
    return float(loss)

  reset_peak()
  t = time.perf_counter()
  row["loss_step1"] = step()
  row["first_step_s"] = time.perf_counter() - t
  row["rss_after_step1_mb"] = rss_mb()
  row["step_s"], row["step_times"] = median_time(step, a.warmup - 1, a.reps)
  row["peak_mb"] = peak_mb()

  if a.phases:
    def phased():
      t = [time.perf_counter()]
      lat = enc(x)
      ws_out = lat["style_latents"]
      maps_out = [m for m in lat["padding_maps"] if m is not None]
      t.append(time.perf_counter())
      ws = ws_out.detach().requires_grad_(True)
      maps = [m.detach().requires_grad_(True) for m in maps_out]
      # The official synthesis writes into the padding maps in place: feed
      # it non-leaf copies of the leaves.
      it = iter(maps)
      full = [next(it).clone() if m is not None else None
              for m in lat["padding_maps"]]
      loss = loss_of(synth(ws, full), ws)
      t.append(time.perf_counter())
      grads = torch.autograd.grad(loss, [ws] + maps)
      t.append(time.perf_counter())
      opt.zero_grad(set_to_none=True)
      torch.autograd.backward([ws_out] + maps_out, list(grads))
      t.append(time.perf_counter())
      clean_and_step()
      t.append(time.perf_counter())
      return [b - a_ for a_, b in zip(t, t[1:])]
    row.update(median_phases(phased, a.reps))
  return row


def child_official_invert(a) -> dict:
  """G(E(x)) at the generator's resolution, eval mode, no autograd."""
  torch, enc, gen = official_models(a.official, a.res)
  torch.set_num_threads(os.cpu_count() or 1)
  ck = torch.load(a.checkpoint, weights_only=True, map_location="cpu")
  enc.load_state_dict(ck["models"]["encoder"])
  gen.load_state_dict(ck["models"]["generator"])
  del ck
  enc.avg_latent = gen.w_avg.clone()
  enc.eval()
  gen.eval()
  x = torch.from_numpy(images(a.batch).transpose(0, 3, 1, 2).copy())

  def run():
    with torch.no_grad():
      lat = enc(x)
      return gen.synthesis(wp=lat["style_latents"],
                           padding_maps=lat["padding_maps"],
                           impl="ref")["image"]
  row = {"rss_loaded_mb": rss_mb()}
  reset_peak()
  t = time.perf_counter()
  out = run()
  row["first_step_s"] = time.perf_counter() - t
  row["out_mean_abs"] = float(out.abs().mean())
  row["step_s"], row["step_times"] = median_time(run, a.warmup - 1, a.reps)
  row["peak_mb"] = peak_mb()
  return row


def child_jax_invert(a) -> dict:
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from padinv_jax.inversion import core  # pylint: disable=import-outside-toplevel
  from padinv_jax.models import functional  # pylint: disable=import-outside-toplevel
  from padinv_jax.storage import model_dir  # pylint: disable=import-outside-toplevel
  model = model_dir.load(a.model)
  cfg, variables = model.config, model.params
  del model
  row = {"rss_loaded_mb": rss_mb()}

  def invert(v, x):
    ws, pads = core.invert(v, x, config=cfg)
    return functional.synthesize(v["generator"], ws, pads,
                                 config=cfg.generator)
  x = jnp.asarray(images(a.batch))
  t = time.perf_counter()
  compiled = jax.jit(invert).lower(variables, x).compile()
  row["compile_s"] = time.perf_counter() - t
  run = lambda: jax.block_until_ready(compiled(variables, x))
  reset_peak()
  t = time.perf_counter()
  out = run()
  row["first_step_s"] = time.perf_counter() - t
  row["out_mean_abs"] = float(jnp.mean(jnp.abs(out)))
  row["step_s"], row["step_times"] = median_time(run, a.warmup - 1, a.reps)
  row["peak_mb"] = peak_mb()
  return row


# ----------------------------------------------------------------------------
# Child: padinv_jax's training step.


def _train_cfg(a, batch_norm_clamp=3.4e38):
  import ml_collections  # pylint: disable=import-outside-toplevel
  c = ml_collections.ConfigDict()
  c.loss = ml_collections.ConfigDict(dict(
      mse=MSE, lpips=0.0, id=0.0, wnorm=WNORM, adv=0.0, r1_gamma=10.0,
      downsample="avgpool"))
  c.optim = ml_collections.ConfigDict(dict(
      name="adam", lr=LR, b1=0.9, b2=0.999, eps=1e-8,
      grad_clamp=batch_norm_clamp, skip_nonfinite=False))
  c.remat = a.remat
  c.accum_steps = a.accum
  c.accum_unroll = a.accum_unroll
  return c


def child_jax(a) -> dict:
  import functools  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from padinv_jax.models import encoder as encoder_lib  # pylint: disable=import-outside-toplevel
  from padinv_jax.models import functional  # pylint: disable=import-outside-toplevel
  from padinv_jax.storage import host_memory  # pylint: disable=import-outside-toplevel
  from padinv_jax.storage import model_dir  # pylint: disable=import-outside-toplevel
  from padinv_jax.training import train_lib  # pylint: disable=import-outside-toplevel
  from padinv_jax.evaluation import metrics  # pylint: disable=import-outside-toplevel

  row = {"rss_imported_mb": rss_mb()}
  model = model_dir.load(a.model)
  cfg, variables = model.config, model.params
  del model
  row["rss_loaded_mb"] = rss_mb()
  tcfg = _train_cfg(a)
  tx = train_lib.make_optimizer(tcfg.optim)
  encoder = encoder_lib.build_encoder(
      cfg.encoder, remat=a.remat in ("encoder", "both"))
  enc = variables["encoder"]
  state = train_lib.state_from_encoder(enc, tx)
  frozen = {"generator": variables["generator"],
            "encoder_buffers": enc["buffers"]}
  del variables, enc
  jax.block_until_ready(state)
  row["rss_state_mb"] = rss_mb()
  dtype = jnp.dtype(a.dtype)
  step = jax.jit(functools.partial(
      train_lib.train_step, encoder=encoder, model_cfg=cfg, cfg=tcfg, tx=tx,
      nets=train_lib.LossNets(), compute_dtype=dtype), donate_argnums=(0,))
  x = jnp.asarray(images(a.batch))
  t = time.perf_counter()
  compiled = step.lower(state, frozen, x).compile()
  row["compile_s"] = time.perf_counter() - t
  row["rss_compiled_untrimmed_mb"] = rss_mb()
  # As padinv-train does: the compiler's freed memory back to the OS first.
  host_memory.release()
  mem = compiled.memory_analysis()
  if mem is not None:
    row["xla_temp_mb"] = mem.temp_size_in_bytes / 2 ** 20
  row["rss_compiled_mb"] = rss_mb()
  holder = {"state": state}
  del state

  def run():
    holder["state"], m = compiled(holder["state"], frozen, x)
    return jax.block_until_ready(m)

  reset_peak()
  t = time.perf_counter()
  row["loss_step1"] = float(run()["loss"])
  row["first_step_s"] = time.perf_counter() - t
  row["rss_after_step1_mb"] = rss_mb()
  row["step_s"], row["step_times"] = median_time(run, a.warmup - 1, a.reps)
  row["peak_mb"] = peak_mb()

  if a.phases:
    st = holder["state"]
    bufs = frozen["encoder_buffers"]

    def enc_fwd(params, bs, xx):
      (ws, pads), mut = encoder.apply(
          {"params": params, "batch_stats": bs, "buffers": bufs},
          train_lib.encoder_input(xx, encoder), train=True,
          mutable=["batch_stats"])
      return (ws, pads), mut["batch_stats"]

    def gen_loss(ws, pads):
      img = functional.synthesize(frozen["generator"], ws, pads,
                                  config=cfg.generator, dtype=dtype)
      img, real = metrics.match_resolution(img, x, "avgpool")
      wn = jnp.mean(train_lib.safe_frobenius(ws - bufs["w_avg"]))
      return MSE * jnp.mean(jnp.square(img - real)) + WNORM * wn

    def enc_grad(params, bs, xx, cts):
      _, vjp, _ = jax.vjp(lambda p: enc_fwd(p, bs, xx), params, has_aux=True)
      return vjp(cts)[0]

    def optim(grads, opt_state, params):
      grads = train_lib.sanitize_grads(grads, tcfg.optim.grad_clamp)
      updates, opt_state = tx.update(grads, opt_state, params)
      import optax  # pylint: disable=import-outside-toplevel
      return optax.apply_updates(params, updates), opt_state

    f_enc = jax.jit(enc_fwd)
    f_gen = jax.jit(gen_loss)
    f_gen_grad = jax.jit(jax.grad(gen_loss, argnums=(0, 1)))
    f_enc_grad = jax.jit(enc_grad)
    f_opt = jax.jit(optim, donate_argnums=(1, 2))
    box = {"params": st.params, "opt": st.opt_state}

    def phased():
      t = [time.perf_counter()]
      (ws, pads), _ = jax.block_until_ready(
          f_enc(box["params"], st.batch_stats, x))
      t.append(time.perf_counter())
      jax.block_until_ready(f_gen(ws, pads))
      t.append(time.perf_counter())
      cts = jax.block_until_ready(f_gen_grad(ws, pads))
      t.append(time.perf_counter())
      grads = jax.block_until_ready(
          f_enc_grad(box["params"], st.batch_stats, x, cts))
      t.append(time.perf_counter())
      box["params"], box["opt"] = jax.block_until_ready(
          f_opt(grads, box["opt"], box["params"]))
      t.append(time.perf_counter())
      d = [b - a_ for a_, b in zip(t, t[1:])]
      # gen_grad and enc_grad include their forward passes.
      return [d[0], d[1], d[2] - d[1], d[3] - d[0], d[4]]
    holder.clear()
    row.update(median_phases(phased, a.reps))
  return row


# ----------------------------------------------------------------------------
# Parent.


def run_child(args, case: dict, paths: dict, ynn: bool) -> dict:
  env = dict(os.environ)
  flags = env.get("XLA_FLAGS", "").replace(YNN_FLAG, "").strip()
  env["XLA_FLAGS"] = (flags + " " + YNN_FLAG).strip() if ynn else flags
  cmd = [sys.executable, os.path.abspath(__file__), "--child", case["code"],
         "--official", args.official, "--res", str(case["res"]),
         "--batch", str(case["batch"]), "--remat", case.get("remat", "none"),
         "--accum", str(case.get("accum", 1)),
         "--dtype", case.get("dtype", "float32"),
         "--checkpoint", paths["checkpoint"], "--model", paths["model"],
         "--warmup", str(args.warmup), "--reps", str(args.reps),
         "--what", case.get("what", "train")]
  if case.get("accum_unroll"):
    cmd.append("--accum-unroll")
  if case.get("phases"):
    cmd.append("--phases")
  t = time.perf_counter()
  p = subprocess.run(cmd, env=env, capture_output=True, text=True)
  wall = time.perf_counter() - t
  row = dict(case)
  row["wall_s"] = wall
  lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
  if p.returncode or not lines:
    err = (p.stderr.strip().splitlines() or ["(no output)"])[-1]
    row["error"] = f"exit {p.returncode}: {err}"
    if p.returncode in (-9, 137):
      row["error"] = "killed (out of memory?)"
    return row
  row.update(json.loads(lines[-1][len("RESULT "):]))
  row["img_s"] = case["batch"] / row["step_s"]
  return row


def fmt(v, f):
  return "-" if v is None else format(v, f)


def print_rows(rows):
  cols = [("res", "G px", "d"), ("batch", "N", "d"), ("label", "code", "s"),
          ("step_s", "step s", ".2f"), ("img_s", "img/s", ".3f"),
          ("vs_official", "x official", ".2f"),
          ("peak_mb", "peak RSS MB", ".0f"),
          ("rss_loaded_mb", "RSS loaded MB", ".0f"),
          ("rss_state_mb", "RSS state MB", ".0f"),
          ("xla_temp_mb", "XLA temp MB", ".0f"),
          ("compile_s", "compile s", ".0f"), ("loss_step1", "loss 1", ".5f")]
  head = [h for _, h, _ in cols]
  body = [[fmt(r.get(k), f) if k in r or r.get(k) is None else "-"
           for k, _, f in cols] + [r.get("error", "")] for r in rows]
  widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in
            enumerate(head)]
  print(" | ".join(h.rjust(w) for h, w in zip(head, widths)))
  for b in body:
    print(" | ".join(v.rjust(w) for v, w in zip(b, widths)), b[-1])
  ph = [r for r in rows if "phase_enc_fwd" in r]
  if ph:
    print("\nphases (s, median):")
    print("G px | N | code | " + " | ".join(PHASES) + " | sum")
    for r in ph:
      v = [r["phase_" + k] for k in PHASES]
      print(f"{r['res']} | {r['batch']} | {r['label']} | "
            + " | ".join(f"{x:.3f}" for x in v) + f" | {sum(v):.3f}")


def markdown(rows) -> str:
  """The rows as the markdown table of benchmarks/RESULTS.md."""
  out = ["| G px | N | code | step s | img/s | x official | peak RSS MB | "
         "vs official MB | RSS loaded MB | compile s |",
         "|---|---|---|---|---|---|---|---|---|---|"]
  off = {}
  for r in rows:
    if r["code"] == "official" and "peak_mb" in r:
      off[(r["res"], r["batch"], r.get("what", "train"))] = r
  for r in rows:
    o = off.get((r["res"], r["batch"], r.get("what", "train")))
    dm = (r["peak_mb"] - o["peak_mb"]) if o and "peak_mb" in r else None
    vals = [str(r["res"]), str(r["batch"]), r["label"],
            fmt(r.get("step_s"), ".2f"), fmt(r.get("img_s"), ".3f"),
            fmt(r.get("vs_official"), ".2f"), fmt(r.get("peak_mb"), ".0f"),
            fmt(dm, "+.0f") if r["code"] != "official" else "",
            fmt(r.get("rss_loaded_mb"), ".0f"), fmt(r.get("compile_s"), ".0f")]
    if "error" in r:
      vals[3] = r["error"]
    out.append("| " + " | ".join(vals) + " |")
  return "\n".join(out)


def label(case):
  if case["code"] == "official":
    return "official" + (" invert" if case.get("what") == "invert" else "")
  if case.get("what") == "invert":
    return "jax invert"
  s = f"jax remat={case['remat']}"
  if case.get("accum", 1) > 1:
    s += f" accum={case['accum']}"
    s += " unrolled" if case.get("accum_unroll") else ""
  if case.get("dtype", "float32") != "float32":
    s += f" {case['dtype']}"
  return s


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--official", default=os.environ.get("PADINV_OFFICIAL"),
                 help="root of a checkout of github.com/EzioBy/padinv")
  p.add_argument("--gen-res", default="256,1024")
  p.add_argument("--batch", default="2", help="comma-separated batches")
  p.add_argument("--remat", default="none,encoder,synthesis,both")
  p.add_argument("--accum", default="1",
                 help="comma-separated accum_steps for remat=none")
  p.add_argument("--accum-unroll", action="store_true",
                 help="accumulation unrolled (config.accum_unroll)")
  p.add_argument("--bf16", action="store_true",
                 help="also padinv_jax with bfloat16 compute (remat none)")
  p.add_argument("--phases", action="store_true")
  p.add_argument("--what", default="train", choices=("train", "invert"),
                 help="the training step, or inversion G(E(x)) (eval mode; "
                      "--remat, --accum, --phases do not apply)")
  p.add_argument("--no-official", action="store_true")
  p.add_argument("--ynn", action="store_true",
                 help="XLA:CPU's YNNPACK convolutions for padinv_jax")
  p.add_argument("--warmup", type=int, default=1)
  p.add_argument("--reps", type=int, default=3)
  p.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(),
                                                   "padinv_official_bench"))
  p.add_argument("--json", default=os.path.join(HERE, "results",
                                                "official.json"))
  # Child mode.
  p.add_argument("--child", choices=("official", "jax"))
  p.add_argument("--res", type=int)
  p.add_argument("--dtype", default="float32")
  p.add_argument("--checkpoint")
  p.add_argument("--model")
  a = p.parse_args(argv)
  if not a.official:
    p.error("--official PATH (a checkout of github.com/EzioBy/padinv) is "
            "required; or set PADINV_OFFICIAL")
  if a.child:
    if isinstance(a.remat, str) and "," in a.remat:
      p.error("--child takes one --remat")
    a.accum = int(a.accum)
    a.batch = int(a.batch)
    a.warmup = max(a.warmup, 1)
    if a.what == "invert":
      row = (child_official_invert(a) if a.child == "official"
             else child_jax_invert(a))
    else:
      row = child_official(a) if a.child == "official" else child_jax(a)
    print("RESULT " + json.dumps(row), flush=True)
    return row

  rows = []
  os.makedirs(a.workdir, exist_ok=True)
  for res in [int(r) for r in a.gen_res.split(",")]:
    paths = prepare(a.official, res, os.path.join(a.workdir, f"g{res}"))
    for batch in [int(b) for b in a.batch.split(",")]:
      cases = []
      if a.what == "invert":
        cases = [{"code": c, "what": "invert", "remat": "none"}
                 for c in (("jax",) if a.no_official
                           else ("official", "jax"))]
      elif not a.no_official:
        cases.append({"code": "official", "phases": a.phases})
      remats = [r for r in a.remat.split(",") if r]
      for i, remat in enumerate(remats if a.what == "train" else ()):
        cases.append({"code": "jax", "remat": remat,
                      "phases": a.phases and i == 0})
      for acc in [int(x) for x in a.accum.split(",")]:
        if acc > 1 and a.what == "train":
          cases.append({"code": "jax", "remat": "none", "accum": acc,
                        "accum_unroll": a.accum_unroll})
      if a.bf16 and a.what == "train":
        cases.append({"code": "jax", "remat": "none", "dtype": "bfloat16"})
      official_row = None
      for case in cases:
        case.update(res=res, batch=batch)
        case["label"] = label(case)
        print(f"[{res} px, batch {batch}] {case['label']} ...", flush=True)
        row = run_child(a, case, paths, a.ynn)
        if case["code"] == "official":
          official_row = row
        if (official_row and "step_s" in official_row and "step_s" in row):
          row["vs_official"] = official_row["step_s"] / row["step_s"]
          k = "loss_step1" if "loss_step1" in row else "out_mean_abs"
          if k in row and k in official_row:
            row["rel_diff_" + k] = (abs(row[k] - official_row[k])
                                    / abs(official_row[k]))
        print("  " + ", ".join(f"{k}={row[k]:.3g}" for k in (
            "step_s", "peak_mb", "vs_official") if k in row)
              + (f" ERROR {row['error']}" if "error" in row else ""),
              flush=True)
        rows.append(row)
  print()
  print_rows(rows)
  print()
  print(markdown(rows))
  import platform  # pylint: disable=import-outside-toplevel
  info = {"cores": os.cpu_count(), "python": platform.python_version(),
          "loadavg_end": os.getloadavg(), "ynn": a.ynn,
          "date": time.strftime("%Y-%m-%d %H:%M")}
  os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
  with open(a.json, "w") as f:
    json.dump({"machine": info, "rows": rows}, f, indent=1)
  print(f"\nwrote {a.json}")
  return rows


if __name__ == "__main__":
  main()
