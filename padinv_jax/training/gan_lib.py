"""GAN training state, optimisers and the per-phase update steps (pure functions).

stylegan2-ada-pytorch's training loop (DESIGN.md section 11), one jitted
step per phase: the loop (gan_trainer.py) runs ``g_main`` and ``d_main``
every iteration, ``g_reg`` when step % g_reg_interval == 0 and ``d_reg``
when step % d_reg_interval == 0 (both at step 0), then ``ema``; the order
is the original's [Gmain, Greg, Dmain, Dreg]. Each step draws its own
randomness from fold_in(rng, step, phase), so the run is a pure function of
the seed, the data and the step (exact resume).

Lazy regularisation: a network with a regulariser of interval I has Adam's
lr x I/(I+1) and betas (b1, b2)^(I/(I+1)); main and reg phases share that
optimiser, and each phase is one optimiser step, as in the original.
Gradients pass through nan_to_num (NaN -> 0, +-inf -> +-1e5) before the step.

Deviations, both for multi-device runs and exact resume: w_avg is tracked
from the mean over the GLOBAL batch (NVIDIA: each GPU its own batch); the
path-length mean pl_mean is part of the saved state (NVIDIA: per process,
reset to 0 on resume). On one device with batch_gpu = batch the updates are
the original's.
"""

from __future__ import annotations

import functools
from typing import Any, Optional

import flax
import jax
import jax.numpy as jnp
import optax

from padinv_jax.losses import gan as gan_loss
from padinv_jax.models import config as config_lib
from padinv_jax.models import discriminator as d_lib
from padinv_jax.models import functional

PHASES = {"g_main": 0, "g_reg": 1, "d_main": 2, "d_reg": 3}


@flax.struct.dataclass
class GanState:
  step: jax.Array        # [] int32: iterations done (NVIDIA's batch_idx)
  g_params: Any
  g_buffers: Any         # mapping/w_avg, synthesis/.../noise_const
  d_params: Any
  g_opt: Any
  d_opt: Any
  ema: Any               # {"params", "buffers"}: G_ema
  pl_mean: jax.Array     # []
  rng: jax.Array


def lazy_adam(lr: float, betas, eps: float, interval: int):
  """Adam with the lazy-regularisation correction of lr and betas."""
  ratio = 1.0 if not interval else interval / (interval + 1)
  b1, b2 = betas
  return optax.adam(lr * ratio, b1=b1 ** ratio, b2=b2 ** ratio, eps=eps)


def make_optimizers(cfg):
  g_int = cfg.loss.g_reg_interval if cfg.loss.pl_weight else 0
  d_int = cfg.loss.d_reg_interval if cfg.loss.r1_gamma else 0
  o = cfg.optim
  return (lazy_adam(o.g_lr, o.betas, o.eps, g_int),
          lazy_adam(o.d_lr, o.betas, o.eps, d_int))


def build_nets(cfg, num_shards: int = 1) -> gan_loss.GanNets:
  """GanNets over the project's StyleGAN2 and resnet D for a GAN config."""
  gen_cfg, d_cfg = cfg.model.generator, cfg.discriminator

  def mapping(g_vars, z):
    return functional.mapping(g_vars, z, config=gen_cfg)[:, 0]

  def synthesis(g_vars, ws, noise_key):
    if noise_key is None:
      return functional.synthesize(g_vars, ws, config=gen_cfg)
    return functional.synthesize(g_vars, ws, config=gen_cfg,
                                 noise_mode="random", rng=noise_key)

  def discriminator(d_vars, images):
    return d_lib.d_scores(d_vars, images, config=d_cfg, num_shards=num_shards)

  return gan_loss.GanNets(mapping, synthesis, discriminator,
                          config_lib.num_ws(gen_cfg), int(gen_cfg.z_dim),
                          int(gen_cfg.resolution))


def init_state(key, cfg, g_tx, d_tx) -> GanState:
  k_g, k_d, k_s = jax.random.split(key, 3)
  g = functional.init_generator(k_g, cfg.model)
  d = d_lib.init_discriminator(k_d, cfg.discriminator)
  return GanState(
      step=jnp.zeros([], jnp.int32), g_params=g["params"],
      g_buffers=g["buffers"], d_params=d["params"],
      g_opt=g_tx.init(g["params"]), d_opt=d_tx.init(d["params"]),
      ema=jax.tree_util.tree_map(jnp.array, g), pl_mean=jnp.zeros([]),
      rng=k_s)


def _key(state: GanState, phase: str):
  return jax.random.fold_in(jax.random.fold_in(state.rng, state.step),
                            PHASES[phase])


def _constrain(d: gan_loss.Draws, sharding) -> gan_loss.Draws:
  """Shards the drawn batch over the mesh (a draw is made replicated)."""
  if sharding is None:
    return d
  c = functools.partial(jax.lax.with_sharding_constraint, shardings=sharding)
  return d._replace(z=c(d.z), z_mix=c(d.z_mix),
                    pl_noise=None if d.pl_noise is None else c(d.pl_noise))


def _with_w_avg(buffers, w_mean, beta):
  mapping = {**buffers["mapping"],
             "w_avg": gan_loss.update_w_avg(buffers["mapping"]["w_avg"],
                                            w_mean, beta)}
  return {**buffers, "mapping": mapping}


def _apply(tx, grads, opt_state, params):
  grads = gan_loss.sanitize(grads)
  updates, opt_state = tx.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state, optax.global_norm(
      grads)


def g_main(state: GanState, *, nets, cfg, g_tx, sharding=None):
  """Gmain: one G step on mean softplus(-D(G(z)))."""
  d = _constrain(gan_loss.draw(_key(state, "g_main"), cfg.batch_size, nets,
                               mixing_prob=cfg.loss.style_mixing_prob), sharding)
  grad_fn = jax.grad(gan_loss.g_main_loss, has_aux=True)
  grads, aux = grad_fn(state.g_params, state.g_buffers,
                       {"params": state.d_params}, d, nets=nets,
                       mixing=cfg.loss.style_mixing_prob > 0)
  params, opt, gnorm = _apply(g_tx, grads, state.g_opt, state.g_params)
  buffers = _with_w_avg(state.g_buffers, aux["w_mean"], cfg.loss.w_avg_beta)
  m = {"loss_G": aux["loss_G"], "scores_fake": aux["scores_fake"],
       "grad_norm_G": gnorm}
  return state.replace(g_params=params, g_opt=opt, g_buffers=buffers), m


def g_reg(state: GanState, *, nets, cfg, g_tx, sharding=None):
  """Greg: one G step on the path-length penalty (x g_reg_interval)."""
  lc = cfg.loss
  n = cfg.batch_size // lc.pl_batch_shrink
  d = _constrain(gan_loss.draw(_key(state, "g_reg"), cfg.batch_size, nets,
                               mixing_prob=lc.style_mixing_prob, pl_batch=n),
                 sharding)
  grad_fn = jax.grad(gan_loss.g_pl_loss, has_aux=True)
  grads, aux = grad_fn(state.g_params, state.g_buffers, state.pl_mean, d,
                       nets=nets, pl_decay=lc.pl_decay,
                       pl_weight=lc.pl_weight,
                       mixing=lc.style_mixing_prob > 0,
                       gain=float(lc.g_reg_interval))
  params, opt, _ = _apply(g_tx, grads, state.g_opt, state.g_params)
  buffers = _with_w_avg(state.g_buffers, aux["w_mean"], lc.w_avg_beta)
  m = {"pl_penalty": aux["pl_penalty"], "pl_mean": aux["pl_mean"]}
  return state.replace(g_params=params, g_opt=opt, g_buffers=buffers,
                       pl_mean=aux["pl_mean"]), m


def d_main(state: GanState, real, *, nets, cfg, d_tx, sharding=None):
  """Dmain: one D step on softplus(D(fake)) + softplus(-D(real))."""
  d = _constrain(gan_loss.draw(_key(state, "d_main"), cfg.batch_size, nets,
                               mixing_prob=cfg.loss.style_mixing_prob), sharding)
  g_vars = {"params": state.g_params, "buffers": state.g_buffers}
  grad_fn = jax.grad(gan_loss.d_main_loss, has_aux=True)
  grads, aux = grad_fn(state.d_params, g_vars, real, d, nets=nets,
                       mixing=cfg.loss.style_mixing_prob > 0)
  params, opt, gnorm = _apply(d_tx, grads, state.d_opt, state.d_params)
  buffers = _with_w_avg(state.g_buffers, aux["w_mean"], cfg.loss.w_avg_beta)
  m = {"loss_D": aux["loss_D"], "scores_real": aux["scores_real"],
       "signs_real": aux["signs_real"], "grad_norm_D": gnorm}
  return state.replace(d_params=params, d_opt=opt, g_buffers=buffers), m


def d_reg(state: GanState, real, *, nets, cfg, d_tx):
  """Dreg: one D step on the R1 penalty (x d_reg_interval)."""
  grad_fn = jax.grad(gan_loss.d_r1_loss, has_aux=True)
  grads, aux = grad_fn(state.d_params, real, nets=nets,
                       r1_gamma=cfg.loss.r1_gamma,
                       gain=float(cfg.loss.d_reg_interval))
  params, opt, _ = _apply(d_tx, grads, state.d_opt, state.d_params)
  return state.replace(d_params=params, d_opt=opt), {
      "r1_penalty": aux["r1_penalty"]}


def ema_beta(step, batch: int, ema_kimg: float,
             ema_rampup: Optional[float]):
  """NVIDIA's G_ema beta at iteration ``step`` (cur_nimg = step x batch)."""
  ema_nimg = ema_kimg * 1000.0
  if ema_rampup:
    ema_nimg = jnp.minimum(ema_nimg, step * batch * ema_rampup)
  return 0.5 ** (batch / jnp.maximum(ema_nimg, 1e-8))


def ema(state: GanState, *, cfg):
  """G_ema <- G + (G_ema - G) beta; buffers copied; then step += 1."""
  beta = ema_beta(state.step.astype(jnp.float32), cfg.batch_size,
                  cfg.ema_kimg, cfg.ema_rampup)
  params = jax.tree_util.tree_map(lambda p, e: p + (e - p) * beta,
                                  state.g_params, state.ema["params"])
  buffers = jax.tree_util.tree_map(jnp.array, state.g_buffers)
  return state.replace(ema={"params": params, "buffers": buffers},
                       step=state.step + 1), {"ema_beta": beta}
