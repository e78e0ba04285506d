"""The training loop: devices -> input -> model -> state -> step -> restore -> loop.

Reads top to bottom like big_vision's train.py. Everything jitted is in
train_lib; this file wires devices, data, checkpoints and logging.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import time
from typing import Optional

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from padinv_jax.models import encoder as encoder_lib
from padinv_jax.models import functional
from padinv_jax.data import images_io
from padinv_jax.training import checkpoints
from padinv_jax.training import loss_nets
from padinv_jax.storage import host_memory
from padinv_jax.storage import part_dir
from padinv_jax.training import train_lib
from padinv_jax.training import train_data


# Rematerialisation (jax.checkpoint): recompute activations in the backward
# pass instead of keeping them, per IR-SE unit ("encoder"), per synthesis
# layer ("synthesis") or both. The update is the same; memory falls.
REMAT = ("none", "encoder", "synthesis", "both")


class Preempted:
  """Set by SIGTERM: the loop saves a checkpoint and stops cleanly."""
  flag = False

  @classmethod
  def handler(cls, signum, frame):
    del signum, frame
    cls.flag = True


def _devices(cfg):
  if cfg.parallel not in ("jit", "pmap"):
    raise ValueError(f"config.parallel must be 'jit' or 'pmap', got "
                     f"{cfg.parallel!r}")
  devices = jax.devices()
  if cfg.num_devices:
    if jax.process_count() > 1 or cfg.num_devices > len(devices):
      raise ValueError(f"config.num_devices={cfg.num_devices}: only a single "
                       f"process can use a subset of its {len(devices)} "
                       f"devices")
    devices = devices[:cfg.num_devices]
  n = len(devices)
  if cfg.batch_size % n:
    raise ValueError(f"config.batch_size={cfg.batch_size} must be divisible "
                     f"by the number of devices ({n})")
  return np.array(devices)


def load_generator(cfg):
  """The frozen GAN: a converted model directory, or a random tiny one.

  Returns:
    (model_cfg, gen_vars, enc_w_avg or None): the generator part of the
    ModelConfig is taken from the directory when one is given.
  """
  model_cfg = ml_collections.ConfigDict(cfg.model.to_dict())
  if cfg.generator_dir:
    from padinv_jax.storage import model_dir  # pylint: disable=g-import-not-at-top
    model = model_dir.load(cfg.generator_dir)
    model_cfg.generator = ml_collections.ConfigDict(
        model.config.generator.to_dict())
    model_cfg.generator.pad_layer_num = cfg.model.generator.pad_layer_num
    enc_avg = None
    if "encoder" in model.params:
      enc_avg = model.params["encoder"]["buffers"]["w_avg"]
    return model_cfg, model.params["generator"], enc_avg
  logging.warning("config.generator_dir is not set: training against a "
                  "RANDOM generator (demo/tests only).")
  key = jax.random.PRNGKey(cfg.seed + 1)
  gen_vars = functional.init_generator(key, model_cfg)
  # A random network has no tracked w_avg: estimate it as NVIDIA's tracking
  # converges to, the mean of mapping(z).
  z = jax.random.normal(jax.random.PRNGKey(cfg.seed + 2),
                        (4096, model_cfg.generator.z_dim))
  w = functional.mapping(gen_vars, z, config=model_cfg)[:, 0]
  gen_vars = jax.tree_util.tree_map(lambda x: x, gen_vars)
  gen_vars["buffers"]["mapping"]["w_avg"] = jnp.mean(w, axis=0)
  return model_cfg, gen_vars, None


def _encoder_w_avg(model_cfg, gen_vars, enc_avg, enc_vars):
  """PadInv sets the encoder's w_avg from the GAN's (non-smooth) w_avg."""
  shape = enc_vars["buffers"]["w_avg"].shape
  avg = enc_avg if enc_avg is not None else gen_vars["buffers"]["mapping"][
      "w_avg"]
  return jnp.broadcast_to(jnp.asarray(avg, jnp.float32), shape)


def _grid(images, recon, max_rows=8):
  """Input | reconstruction, one pair per row, as a uint8 image."""
  k = min(max_rows, images.shape[0])
  return images_io.make_grid([[images[i], recon[i]] for i in range(k)])


def train_and_evaluate(cfg: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains an encoder per ``cfg``; returns the final evaluation metrics."""
  # -- Devices and mesh ------------------------------------------------------
  devices = _devices(cfg)
  os.makedirs(workdir, exist_ok=True)
  mesh = Mesh(devices, ("data",))
  repl = NamedSharding(mesh, P())
  data_sharding = NamedSharding(mesh, P("data"))
  pmap_mode = cfg.parallel == "pmap"
  local_devices = [d for d in devices if d.process_index == jax.process_index()]
  is_main = jax.process_index() == 0
  compute_dtype = jnp.dtype(cfg.compute_dtype)

  # -- Model and frozen parts -----------------------------------------------
  model_cfg, gen_vars, enc_avg = load_generator(cfg)
  encoder_lib.check_compatible(model_cfg)
  accum = cfg.get("accum_steps", 1)
  per_replica = cfg.batch_size // (devices.size if pmap_mode else 1)
  if not isinstance(accum, int) or accum < 1 or per_replica % accum:
    raise ValueError(f"config.accum_steps={accum!r} must be a positive "
                     f"integer dividing the batch ({per_replica} per "
                     f"{'device' if pmap_mode else 'step'})")
  if not isinstance(cfg.get("accum_unroll", False), bool):
    raise ValueError(f"config.accum_unroll must be True or False, got "
                     f"{cfg.accum_unroll!r}")
  if cfg.get("remat", "none") not in REMAT:
    raise ValueError(f"config.remat must be one of {REMAT}, got "
                     f"{cfg.remat!r}")
  encoder = encoder_lib.build_encoder(
      model_cfg.encoder, axis_name="data" if pmap_mode else None,
      remat=cfg.get("remat", "none") in ("encoder", "both"),
      dtype=compute_dtype)
  nets, frozen_nets, d_init = loss_nets.build(
      cfg, model_cfg, num_shards=1 if pmap_mode else devices.size)

  # -- Input -----------------------------------------------------------------
  train_ds = train_data.build(cfg, model_cfg, gen_vars, workdir)
  logging.info("training images: %d", train_ds.num_train)

  # -- State: shape first, then a jitted init into its shardings -------------
  tx = train_lib.make_optimizer(cfg.optim)
  d_tx = train_lib.make_d_optimizer(cfg.d_optim) if cfg.loss.adv > 0 else None

  def init_state(key):
    k_enc, k_d, k_state = jax.random.split(key, 3)
    enc_vars = encoder_lib.init_encoder(k_enc, model_cfg)
    d_params = d_opt = None
    if d_tx is not None:
      d_params = d_init(k_d)
      d_opt = d_tx.init(d_params)
    return train_lib.TrainState(
        step=jnp.zeros([], jnp.int32), params=enc_vars["params"],
        batch_stats=enc_vars["batch_stats"],
        opt_state=tx.init(enc_vars["params"]), rng=k_state, d_params=d_params,
        d_opt_state=d_opt), enc_vars["buffers"]

  key = jax.random.PRNGKey(cfg.seed)
  abstract_state, _ = jax.eval_shape(init_state, key)
  state, enc_buffers = jax.jit(init_state, out_shardings=repl)(key)
  if cfg.init_encoder_from_arcface:
    state = _init_from_arcface(state, cfg.init_encoder_from_arcface)
    state = jax.device_put(state.replace(opt_state=tx.init(state.params)),
                           repl)
  enc_buffers = {"w_avg": _encoder_w_avg(model_cfg, gen_vars, enc_avg,
                                         {"buffers": enc_buffers})}
  frozen = jax.device_put(
      {"generator": gen_vars, "encoder_buffers": enc_buffers, **frozen_nets},
      repl)
  logging.info("encoder parameters: %d",
               functional.num_params(abstract_state.params))

  # -- The update step -------------------------------------------------------
  step_fn = functools.partial(
      train_lib.train_step, encoder=encoder, model_cfg=model_cfg, cfg=cfg,
      tx=tx, d_tx=d_tx, nets=nets, compute_dtype=compute_dtype)
  if pmap_mode:
    p_step = jax.pmap(functools.partial(step_fn, axis_name="data"),
                      axis_name="data", donate_argnums=(0,),
                      in_axes=(0, None, 0),
                      devices=list(devices) if cfg.num_devices else None)
  else:
    p_step = jax.jit(step_fn, in_shardings=(repl, repl, data_sharding),
                     out_shardings=(repl, repl), donate_argnums=(0,))
  eval_fn = jax.jit(functools.partial(
      train_lib.eval_step, encoder=encoder, model_cfg=model_cfg, nets=nets,
      downsample="nearest"))

  # -- Restore ---------------------------------------------------------------
  ckpts = checkpoints.Checkpoints(os.path.join(workdir, "checkpoints"),
                                  cfg.keep_checkpoints)
  restored = ckpts.restore_latest(jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=repl),
      abstract_state))
  if restored is not None:
    state = restored
    logging.info("resumed from step %d", int(state.step))
  start_step = int(state.step)
  if pmap_mode:
    state = _replicate(jax.device_get(state), local_devices)

  def host_state():
    return jax.tree_util.tree_map(lambda x: x[0], state) if pmap_mode else state

  def save(step, force=False):
    del force  # every save is forced and waited for (checksums follow it)
    ckpts.save(step, host_state())

  # -- Loop ------------------------------------------------------------------
  writer = summary_writer(workdir) if is_main else None
  old_handler = signal.signal(signal.SIGTERM, Preempted.handler)
  Preempted.flag = False
  best = _read_json(os.path.join(workdir, "best.json"))
  history, m_acc, t0, seen = [], [], time.time(), 0
  progress = _progress(cfg, start_step) if is_main else None
  batches = train_ds.iterate(start_step)  # the data position is the step
  run_step = None
  try:
    for step in range(start_step + 1, cfg.num_steps + 1):
      local = next(batches)
      if pmap_mode:
        images = local.reshape((len(local_devices), -1) + local.shape[1:])
      else:
        images = jax.make_array_from_process_local_data(data_sharding, local)
      if run_step is None:
        # Compiled ahead of the first call so that the compiler's freed
        # memory goes back to the OS before the step's working memory is
        # allocated (on the CPU backend both are host memory).
        run_step = (p_step if pmap_mode
                    else p_step.lower(state, frozen, images).compile())
        host_memory.release()
      state, m = run_step(state, frozen, images)
      m_acc.append(m)
      seen += cfg.batch_size
      if step % cfg.log_every == 0 or step == cfg.num_steps:
        m_host = jax.device_get(m_acc)
        if pmap_mode:
          m_host = [jax.tree_util.tree_map(lambda x: x[0], mm) for mm in m_host]
        mean = {k: float(np.mean([mm[k] for mm in m_host])) for k in m_host[0]}
        if not np.isfinite(mean["loss"]):
          logging.warning("step %d: non-finite loss %s", step, mean["loss"])
        ips = seen / max(time.time() - t0, 1e-9)
        mean["images_per_sec"] = ips
        history.append({"step": step, **mean})
        if writer:
          for k, v in mean.items():
            writer.add_scalar(f"train/{k}", v, step)
        if progress:
          progress.set_postfix(loss=f"{mean['loss']:.4f}", ips=f"{ips:.1f}")
        m_acc, t0, seen = [], time.time(), 0
      if progress:
        progress.update(1)
      if train_ds.eval_batches and (step % cfg.eval_every == 0
                                    or step == cfg.num_steps):
        ev = _evaluate(eval_fn, host_enc_vars(host_state(), frozen), frozen,
                       train_ds.eval_batches(), data_sharding)
        if writer:
          for k, v in ev["mean"].items():
            writer.add_scalar(f"eval/{k}", v, step)
          writer.add_image("eval/input_reconstruction", ev["grid"], step,
                           dataformats="HWC")
        if best is None or ev["mean"]["mse"] < best["mse"]:
          best = {"step": step, **ev["mean"]}
          if is_main:
            _write_json(os.path.join(workdir, "best.json"), best)
            images_io.save_png(os.path.join(workdir, "best_grid.png"),
                               ev["grid"])
      if step % cfg.ckpt_every == 0 or step == cfg.num_steps:
        save(step)
      if Preempted.flag:
        logging.warning("SIGTERM: saving step %d and stopping", step)
        save(step, force=True)
        break
  finally:
    ckpts.wait()
    signal.signal(signal.SIGTERM, old_handler)
    if progress:
      progress.close()

  final = {"step": int(host_state().step), "history": history, "best": best}
  if train_ds.eval_batches and not Preempted.flag:
    ev = _evaluate(eval_fn, host_enc_vars(host_state(), frozen), frozen,
                   train_ds.eval_batches(), data_sharding)
    final["eval"] = ev["mean"]
    if is_main:
      images_io.save_png(os.path.join(workdir, "grid.png"), ev["grid"])
  if jax.process_count() > 1 and not Preempted.flag:
    # Orbax writes in lockstep across processes; a model directory is one
    # host's file. Run the same command once more in one process: it
    # resumes at the last step, evaluates and writes WORKDIR/model.
    logging.warning("multi-process run: WORKDIR/model is not written; run "
                    "the same command in one process to export it")
  elif is_main and not Preempted.flag:
    # The trained encoder with its frozen generator: a model directory that
    # padinv_jax.load and every `padinv` command take.
    from padinv_jax.storage import model_dir  # pylint: disable=g-import-not-at-top
    final["model_dir"] = model_dir.save_model(
        os.path.join(workdir, "model"), model_cfg,
        {"generator": jax.device_get(gen_vars),
         "encoder": jax.device_get(host_enc_vars(host_state(), frozen))},
        overwrite=True)
  if is_main:
    _write_json(os.path.join(workdir, "final_metrics.json"), final)
  if writer:
    writer.close()
  return final


def _init_from_arcface(state, path):
  """pSp's option: the encoder's stem and IR-SE body start from ArcFace.

  The ArcFace part directory (padinv-convert --format arcface) must have the
  encoder's widths and unit counts; anything else is refused by name.
  """
  arc = part_dir.load_part(path, "arcface")
  params, stats = dict(state.params), dict(state.batch_stats)
  for ours, theirs in (("stem", "input_layer"), ("body", "body")):
    for tree, src in ((params, arc["params"]), (stats, arc["batch_stats"])):
      want = jax.tree_util.tree_map(np.shape, tree[ours])
      have = jax.tree_util.tree_map(np.shape, src[theirs])
      if want != have:
        raise ValueError(
            f"{path}: ArcFace {theirs!r} does not fit the encoder's {ours!r} "
            f"(different widths or unit counts); init_encoder_from_arcface "
            f"needs an IR-SE-50 encoder with stage widths 64/128/256/512")
      tree[ours] = jax.tree_util.tree_map(jnp.asarray, src[theirs])
  logging.info("encoder stem and body initialised from ArcFace %s", path)
  return state.replace(params=params, batch_stats=stats)


def _replicate(tree, devices):
  """One copy per device along a new leading axis, as pmap expects."""
  sharding = NamedSharding(Mesh(np.array(devices), ("d",)), P("d"))
  return jax.tree_util.tree_map(
      lambda x: jax.device_put(
          np.broadcast_to(np.asarray(x), (len(devices),) + np.shape(x)),
          sharding), tree)


def host_enc_vars(state, frozen):
  return {"params": state.params, "batch_stats": state.batch_stats,
          "buffers": frozen["encoder_buffers"]}


def _evaluate(eval_fn, enc_vars, frozen, batches, data_sharding):
  """Per-image metrics over one pass of held-out batches, gathered to hosts.

  Outputs above 256 px are reduced with nearest, as the original's evaluator.
  """
  out, grid = [], None
  for b in batches:
    x = jax.make_array_from_process_local_data(data_sharding, b["image"])
    per, x_hat = eval_fn(enc_vars, frozen, x)
    per, x_all, x_hat = _gather((per, x, x_hat))
    mask = _gather(jax.make_array_from_process_local_data(
        data_sharding, b["mask"])) > 0
    out.append({k: v[mask] for k, v in per.items()})
    if grid is None:
      grid = _grid(x_all[mask], x_hat[mask])
  per_image = {k: np.concatenate([o[k] for o in out]) for k in out[0]}
  return {"mean": {k: float(v.mean()) for k, v in per_image.items()},
          "grid": grid}


def _gather(tree):
  """Global arrays -> host numpy on every process."""
  if jax.process_count() == 1:
    return jax.device_get(tree)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return multihost_utils.process_allgather(tree, tiled=True)


def _progress(cfg, start):
  if not cfg.progress:
    return None
  from tqdm import auto as tqdm  # pylint: disable=g-import-not-at-top
  return tqdm.tqdm(total=cfg.num_steps, initial=start, unit="step",
                   dynamic_ncols=True, desc="train")


def summary_writer(workdir):
  try:
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
  except ImportError:  # pragma: no cover
    logging.warning("tensorboardX not installed: no TensorBoard logs")
    return None
  return SummaryWriter(os.path.join(workdir, "tensorboard"))


def _read_json(path) -> Optional[dict]:
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def _write_json(path, obj):
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2)
  os.replace(tmp, path)
