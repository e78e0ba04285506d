"""The two sides of benchmarks/official.py, each run in its own process.

child_official / child_official_invert: the OFFICIAL PadInv code (its
models from a user's checkout, impl='ref'); child_jax / child_jax_invert:
padinv_jax. Each returns a dict of times and memory (VmRSS / VmHWM of this
process) that official.py prints. See official.py for what is compared.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from measure import (  # noqa: E402
    MSE, WNORM, median_time, peak_rss_mb, reset_peak, rss_mb, step_config)

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type=individual_convolution"
LR = 1e-4
CODES = (3, 4, 11)
PAD_LAYER_NUM = 4
LOSS_RES = 256

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
  if importlib.util.find_spec("cv2") is None:
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



# ----------------------------------------------------------------------------
# Child: the official training step.


def load_official(a):
  """(torch, E, G) of the official code with the checkpoint's weights."""
  torch, enc, gen = official_models(a.official, a.res)
  torch.set_num_threads(os.cpu_count() or 1)
  ck = torch.load(a.checkpoint, weights_only=True, map_location="cpu")
  enc.load_state_dict(ck["models"]["encoder"])
  gen.load_state_dict(ck["models"]["generator"])
  del ck
  enc.avg_latent = gen.w_avg.clone()  # what the PadInv runner sets
  return torch, enc, gen


def child_official(a) -> dict:
  torch, enc, gen = load_official(a)
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
  row["peak_mb"] = peak_rss_mb()

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
  torch, enc, gen = load_official(a)
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
  row["peak_mb"] = peak_rss_mb()
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
  row["peak_mb"] = peak_rss_mb()
  return row


# ----------------------------------------------------------------------------
# Child: padinv_jax's training step.


def _train_cfg(a):
  """The official runner's clean-up only clamps to the float32 range."""
  c = step_config("adam", LR, grad_clamp=3.4e38)
  c.remat = a.remat
  c.accum_steps = a.accum
  c.accum_unroll = a.accum_unroll
  return c


def child_jax(a) -> dict:
  # As padinv-train does, before the backend starts.
  from padinv_jax.training import xla_flags  # pylint: disable=import-outside-toplevel
  xla_flags.add_defaults()
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
  row["peak_mb"] = peak_rss_mb()

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
