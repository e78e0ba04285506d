"""The GAN training loop: devices -> input -> model -> state -> steps -> restore -> loop.

Everything jitted is in gan_lib (one donated step per phase). Writes, under
the workdir: checkpoints/ (orbax; every ckpt_every steps or ckpt_minutes, on
SIGTERM and at the end; a restart resumes exactly), samples/ (fixed-z grids
of G_ema), tensorboard/, and generator/, a generator-only model directory of
G_ema that padinv_jax.load, the encoder trainer (--config.generator_dir)
and every `padinv` command accept.
"""

from __future__ import annotations

import functools
import json
import math
import os
import signal
import time

from absl import logging
import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from padinv_jax.data import images_io
from padinv_jax.data import image_arrays
from padinv_jax.models import functional
from padinv_jax.storage import model_dir
from padinv_jax.training import checkpoints
from padinv_jax.training import gan_lib
from padinv_jax.training.trainer import Preempted, summary_writer


def _devices(cfg):
  devices = jax.devices()
  if cfg.num_devices:
    devices = devices[:cfg.num_devices]
  if cfg.batch_size % len(devices):
    raise ValueError(f"config.batch_size={cfg.batch_size} must be divisible "
                     f"by the number of devices ({len(devices)})")
  return np.array(devices)


def check_config(cfg):
  """One clear error for values no GAN run can use."""
  lc = cfg.loss
  checks = [
      (cfg.batch_size >= 2, "batch_size must be >= 2"),
      (cfg.num_steps >= 1, "num_steps must be >= 1"),
      (lc.g_reg_interval >= 1 and lc.d_reg_interval >= 1,
       "reg intervals must be >= 1"),
      (1 <= lc.pl_batch_shrink <= cfg.batch_size,
       "pl_batch_shrink must be in 1..batch_size"),
      (0.0 <= lc.style_mixing_prob <= 1.0, "style_mixing_prob must be in [0, 1]"),
      (all(math.isfinite(v) and v >= 0 for v in
           (lc.r1_gamma, lc.pl_weight, cfg.optim.g_lr, cfg.optim.d_lr,
            cfg.ema_kimg)),
       "r1_gamma, pl_weight, learning rates and ema_kimg must be finite and "
       ">= 0"),
      (cfg.model.generator.resolution == cfg.discriminator.resolution,
       "model.generator.resolution and discriminator.resolution differ"),
  ]
  for ok, msg in checks:
    if not ok:
      raise ValueError(f"GAN config: {msg}")


def export_generator(path, cfg, ema_vars):
  """G_ema as a generator-only model directory (replaced in place)."""
  host = jax.tree_util.tree_map(np.asarray, jax.device_get(ema_vars))
  return model_dir.save_model(path, cfg.model, {"generator": host},
                              overwrite=True)


def train(cfg: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains a GAN per ``cfg``; returns a summary (last metrics, paths)."""
  check_config(cfg)
  # -- Devices and mesh ------------------------------------------------------
  devices = _devices(cfg)
  mesh = Mesh(devices, ("data",))
  repl = NamedSharding(mesh, P())
  data_sharding = NamedSharding(mesh, P("data"))
  is_main = jax.process_index() == 0
  os.makedirs(workdir, exist_ok=True)

  # -- Input -----------------------------------------------------------------
  data = image_arrays.build(cfg.data, cfg.model.generator.resolution,
                            seed=cfg.seed)
  logging.info("training images: %d", data.num_images)
  per_process = cfg.batch_size // jax.process_count()

  # -- Model, optimisers, state ----------------------------------------------
  g_tx, d_tx = gan_lib.make_optimizers(cfg)
  nets = gan_lib.build_nets(cfg, num_shards=devices.size)
  init = functools.partial(gan_lib.init_state, cfg=cfg, g_tx=g_tx, d_tx=d_tx)
  key = jax.random.PRNGKey(cfg.seed)
  abstract = jax.eval_shape(init, key)
  state = jax.jit(init, out_shardings=repl)(key)
  logging.info("G parameters: %d, D parameters: %d",
               functional.num_params(abstract.g_params),
               functional.num_params(abstract.d_params))

  # -- The update steps (one per phase, state donated) -----------------------
  kw = dict(nets=nets, cfg=cfg)
  jit = functools.partial(jax.jit, donate_argnums=(0,))
  steps = {
      "g_main": jit(functools.partial(gan_lib.g_main, g_tx=g_tx,
                                      sharding=data_sharding, **kw)),
      "g_reg": jit(functools.partial(gan_lib.g_reg, g_tx=g_tx,
                                     sharding=data_sharding, **kw)),
      "d_main": jit(functools.partial(gan_lib.d_main, d_tx=d_tx,
                                      sharding=data_sharding, **kw)),
      "d_reg": jit(functools.partial(gan_lib.d_reg, d_tx=d_tx, **kw)),
      "ema": jit(functools.partial(gan_lib.ema, cfg=cfg)),
  }
  sample_z = jax.random.normal(jax.random.PRNGKey(cfg.seed + 12345),
                               (cfg.num_samples, cfg.model.generator.z_dim))
  grid_fn = jax.jit(lambda e, z: functional.synthesize(
      e, functional.mapping(e, z, config=cfg.model), config=cfg.model))

  # -- Restore ---------------------------------------------------------------
  ckpts = checkpoints.Checkpoints(os.path.join(workdir, "checkpoints"),
                                  cfg.keep_checkpoints)
  restored = ckpts.restore_latest(jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=repl),
      abstract))
  if restored is not None:
    state = restored
    logging.info("resumed from step %d", int(state.step))
  start = int(state.step)

  def save(step):
    ckpts.save(step, state)
    if is_main:
      export_generator(os.path.join(workdir, "generator"), cfg, state.ema)

  def write_samples(step):
    imgs = np.asarray(jax.device_get(grid_fn(state.ema, sample_z)))
    rows = [list(imgs[i:i + 8]) for i in range(0, len(imgs), 8)]
    grid = images_io.make_grid(rows)
    images_io.save_png(os.path.join(workdir, "samples", f"{step:07d}.png"),
                       grid)
    images_io.save_png(os.path.join(workdir, "samples", "latest.png"), grid)
    if writer:
      writer.add_image("samples/G_ema", grid, step, dataformats="HWC")

  # -- Loop ------------------------------------------------------------------
  writer = summary_writer(workdir) if is_main else None
  old_handler = signal.signal(signal.SIGTERM, Preempted.handler)
  Preempted.flag = False
  progress = None
  if cfg.progress and is_main:
    from tqdm import auto as tqdm  # pylint: disable=g-import-not-at-top
    progress = tqdm.tqdm(total=cfg.num_steps, initial=start, unit="it",
                         dynamic_ncols=True, desc="gan")
  acc, last, t0, t_ckpt, seen = [], {}, time.time(), time.time(), 0
  try:
    for step in range(start, cfg.num_steps):
      local = data.batch(step, cfg.batch_size, jax.process_index(),
                         per_process)
      real = jax.make_array_from_process_local_data(
          data_sharding, images_io.to_float(local))
      m = {}
      state, mm = steps["g_main"](state)
      m.update(mm)
      if cfg.loss.pl_weight and step % cfg.loss.g_reg_interval == 0:
        state, mm = steps["g_reg"](state)
        m.update(mm)
      state, mm = steps["d_main"](state, real)
      m.update(mm)
      if cfg.loss.r1_gamma and step % cfg.loss.d_reg_interval == 0:
        state, mm = steps["d_reg"](state, real)
        m.update(mm)
      state, mm = steps["ema"](state)
      acc.append(m)
      seen += cfg.batch_size
      done = step + 1
      if done % cfg.log_every == 0 or done == cfg.num_steps:
        host = jax.device_get(acc)
        last = {k: float(np.mean([h[k] for h in host if k in h]))
                for k in sorted({k for h in host for k in h})}
        ips = seen / max(time.time() - t0, 1e-9)
        last["images_per_sec"] = ips
        last["kimg"] = done * cfg.batch_size / 1000
        if not all(math.isfinite(v) for v in last.values()):
          logging.warning("step %d: non-finite measurements %s", done, last)
        if writer:
          for k, v in last.items():
            writer.add_scalar(f"train/{k}", v, done)
        if progress:
          progress.set_postfix(G=f"{last['loss_G']:.3f}",
                               D=f"{last['loss_D']:.3f}", ips=f"{ips:.1f}")
        _append_jsonl(os.path.join(workdir, "log.jsonl"),
                      {"step": done, **last}) if is_main else None
        acc, t0, seen = [], time.time(), 0
      if progress:
        progress.update(1)
      if is_main and (done % cfg.sample_every == 0 or done == cfg.num_steps):
        write_samples(done)
      if (done % cfg.ckpt_every == 0 or done == cfg.num_steps or
          time.time() - t_ckpt > 60 * cfg.ckpt_minutes):
        save(done)
        t_ckpt = time.time()
      if Preempted.flag:
        logging.warning("SIGTERM: saving step %d and stopping", done)
        save(done)
        break
  finally:
    ckpts.wait()
    signal.signal(signal.SIGTERM, old_handler)
    if progress:
      progress.close()
    if writer:
      writer.close()
  return {"step": int(state.step), "last": last,
          "generator_dir": os.path.abspath(os.path.join(workdir, "generator")),
          "preempted": Preempted.flag}


def _append_jsonl(path, obj):
  with open(path, "a") as f:
    f.write(json.dumps(obj) + "\n")
