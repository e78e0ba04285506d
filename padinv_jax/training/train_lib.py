"""Training state, optimisers and the update steps (pure functions).

The loop (devices, input, checkpoints, logging) lives in trainer.py; this
module holds what is jitted. The step follows the official PadInv runner:

  1. encoder step: loss = mse * MSE + lpips * LPIPS + id * (1 - cos) +
     wnorm * mean_b ||W+ - w_avg||_F + adv * mean softplus(-D(x_hat));
     gradients: NaN -> 0, clamp to +-grad_clamp, always step (unless
     optim.skip_nonfinite);
  2. with a discriminator: re-encode the batch with the UPDATED encoder in
     train mode without gradients (BatchNorm statistics update a second
     time), then the D step: softplus(D(fake)) + softplus(-D(real)) +
     r1_gamma / 2 * mean_b ||grad_x D(real)||^2.

The generator and the loss networks are frozen by structure: they come in
through ``frozen`` (never donated, never in an optimiser).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Optional

import flax.struct
import jax
import jax.numpy as jnp
import optax

from padinv_jax.models import functional
from padinv_jax.models import loop_convs
from padinv_jax.evaluation import metrics
from padinv_jax.inversion import core


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training (donated to the step)."""
  step: jax.Array
  params: Any  # encoder "params"
  batch_stats: Any  # encoder "batch_stats"
  opt_state: Any
  rng: jax.Array  # raw uint32 key, checkpointable
  d_params: Any = None
  d_opt_state: Any = None


def state_from_encoder(enc_vars, tx: optax.GradientTransformation,
                       seed: int = 0) -> TrainState:
  """A step-0 TrainState over existing encoder variables (fresh optimiser).

  The state is donated to train_step: pass copies of arrays still needed.
  """
  return TrainState(step=jnp.zeros([], jnp.int32), params=enc_vars["params"],
                    batch_stats=enc_vars["batch_stats"],
                    opt_state=tx.init(enc_vars["params"]),
                    rng=jax.random.PRNGKey(seed))


class LossNets(NamedTuple):
  """Pure callables over frozen loss networks (built by the trainer).

  lpips(frozen, x, y) -> [N]; id_embed(frozen, x) -> [N, D] unit vectors;
  d_scores(d_params, x) -> [N]. None where the recipe does not use them.
  """
  lpips: Optional[Callable] = None
  id_embed: Optional[Callable] = None
  d_scores: Optional[Callable] = None


# ----------------------------------------------------------------------------
# Optimisers.


def _centralize_gradients() -> optax.GradientTransformation:
  """Gradient centralisation (Yong et al. 2020) as pSp's Ranger uses it:
  subtract the mean over all axes but the output axis for rank > 1 params."""

  def update(updates, state, params=None):
    del params

    def gc(g):
      if g.ndim <= 1:
        return g
      return g - jnp.mean(g, axis=tuple(range(g.ndim - 1)), keepdims=True)
    return jax.tree_util.tree_map(gc, updates), state

  return optax.GradientTransformation(lambda p: optax.EmptyState(), update)


class _LookaheadState(NamedTuple):
  slow: Any
  count: jax.Array


def _lookahead(sync_period: int = 6, alpha: float = 0.5):
  """Lookahead (Zhang et al. 2019) expressed as a chained transformation.

  Every ``sync_period`` steps the slow weights move ``alpha`` of the way to
  the fast weights and the fast weights are reset to them.
  """

  def init(params):
    return _LookaheadState(jax.tree_util.tree_map(jnp.asarray, params),
                           jnp.zeros([], jnp.int32))

  def update(updates, state, params):
    count = state.count + 1
    sync = count % sync_period == 0
    fast = optax.apply_updates(params, updates)
    slow = jax.tree_util.tree_map(
        lambda s, f: jnp.where(sync, s + alpha * (f - s), s), state.slow, fast)
    new_params = jax.tree_util.tree_map(
        lambda s, f: jnp.where(sync, s, f), slow, fast)
    updates = jax.tree_util.tree_map(lambda n, p: n - p, new_params, params)
    return updates, _LookaheadState(slow, count)

  return optax.GradientTransformation(init, update)


def make_optimizer(optim_cfg) -> optax.GradientTransformation:
  """Adam (the paper), Ranger (RAdam + Lookahead + GC, as pSp used) or SGD.

  SGD is for checks that compare runs: Adam's first steps are about
  lr * sign(g), so gradients that are zero up to rounding move parameters
  by +-lr and hide everything else.
  """
  name = optim_cfg.name
  if name == "sgd":
    return optax.sgd(optim_cfg.lr)
  if name == "adam":
    return optax.adam(optim_cfg.lr, b1=optim_cfg.b1, b2=optim_cfg.b2,
                      eps=optim_cfg.eps)
  if name == "ranger":
    return optax.chain(
        _centralize_gradients(),
        optax.radam(optim_cfg.lr, b1=0.95, b2=0.999, eps=1e-5,
                    threshold=5.0),
        _lookahead(6, 0.5))
  raise ValueError(f"optim.name must be 'adam', 'ranger' or 'sgd', got "
                   f"{name!r}")


def make_d_optimizer(d_cfg) -> optax.GradientTransformation:
  return optax.adam(d_cfg.lr, b1=d_cfg.b1, b2=d_cfg.b2, eps=d_cfg.eps)


def sanitize_grads(grads, clamp: float):
  """The original's treatment: NaN -> 0, +-inf and everything -> [-c, c]."""
  return jax.tree_util.tree_map(
      lambda g: jnp.clip(jnp.nan_to_num(g, nan=0.0, posinf=clamp,
                                        neginf=-clamp), -clamp, clamp), grads)


def global_norm(tree):
  return optax.tree.norm(tree)


# ----------------------------------------------------------------------------
# Losses.


def safe_frobenius(d):
  """Per-sample ||d||_F over all but the batch axis, with gradient 0 at 0."""
  sq = jnp.sum(jnp.square(d), axis=tuple(range(1, d.ndim)))
  pos = sq > 0
  return jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1.0)), 0.0)


def encoder_input(images, encoder):
  """The batch as the encoder takes it: images of another side (e.g. 32 px
  Fashion-MNIST for a 64 px encoder) are resized as padinv_jax.invert does
  (core.resize_images), so training sees what inference feeds; the losses
  keep the images at their own resolution."""
  if images.shape[1] == encoder.input_size:
    return images
  return core.resize_images(images, encoder.input_size)


def encoder_loss(params, batch_stats, frozen, images, *, encoder, model_cfg,
                 loss_cfg, nets: LossNets, d_params=None,
                 compute_dtype=jnp.float32, remat_synthesis: bool = False):
  """The encoder objective on one batch (train-mode BatchNorm).

  Args:
    params: encoder params (differentiated).
    batch_stats: encoder BatchNorm statistics.
    frozen: {"generator": gen vars, "encoder_buffers": {"w_avg"},
      "lpips": ..., "arcface": ...}.
    images: [N, R, R, 3] in [-1, 1] (R: the encoder input or, when the
      generator is smaller, its resolution; see encoder_input).
    encoder: the flax Encoder module.
    model_cfg: ModelConfig.
    loss_cfg: config.loss.
    nets: LossNets callables.
    d_params: discriminator params when loss_cfg.adv > 0.
    compute_dtype: generator conv dtype (the encoder's is the module's
      own: build_encoder(dtype=...); padinv-train gives both the config's
      compute_dtype).

  Returns:
    (loss, (new_batch_stats, measurements dict, x_hat at loss resolution)).
  """
  variables = {"params": params, "batch_stats": batch_stats,
               "buffers": frozen["encoder_buffers"]}
  (ws, paddings), mutated = encoder.apply(
      variables, encoder_input(images, encoder), train=True,
      mutable=["batch_stats"])
  x_hat = functional.synthesize(frozen["generator"], ws, paddings,
                                config=model_cfg.generator,
                                dtype=compute_dtype, remat=remat_synthesis)
  x_hat, x = metrics.match_resolution(x_hat, images, loss_cfg.downsample)

  m = {}
  m["mse"] = jnp.mean(jnp.square(x_hat - x))
  loss = loss_cfg.mse * m["mse"]
  if loss_cfg.lpips > 0:
    m["lpips"] = jnp.mean(nets.lpips(frozen["lpips"], x, x_hat))
    loss = loss + loss_cfg.lpips * m["lpips"]
  if loss_cfg.id > 0:
    real = jax.lax.stop_gradient(nets.id_embed(frozen["arcface"], x))
    fake = nets.id_embed(frozen["arcface"], x_hat)
    m["id"] = 1.0 - jnp.mean(jnp.sum(real * fake, axis=-1))
    loss = loss + loss_cfg.id * m["id"]
  if loss_cfg.wnorm > 0:
    w_avg = frozen["encoder_buffers"]["w_avg"]
    m["wnorm"] = jnp.mean(safe_frobenius(ws - w_avg))
    loss = loss + loss_cfg.wnorm * m["wnorm"]
  if loss_cfg.adv > 0:
    m["adv"] = jnp.mean(jax.nn.softplus(-nets.d_scores(d_params, x_hat)))
    loss = loss + loss_cfg.adv * m["adv"]
  m["loss"] = loss
  return loss, (mutated["batch_stats"], m, x_hat)


def discriminator_loss(d_params, real, fake, *, nets: LossNets, r1_gamma):
  """softplus(D(fake)) + softplus(-D(real)) + r1_gamma/2 * R1 (every step)."""

  def real_scores_sum(x):
    s = nets.d_scores(d_params, x)
    return jnp.sum(s), s

  grad_real, real_scores = jax.grad(real_scores_sum, has_aux=True)(real)
  fake_scores = nets.d_scores(d_params, fake)
  d_gan = (jnp.mean(jax.nn.softplus(fake_scores))
           + jnp.mean(jax.nn.softplus(-real_scores)))
  r1 = jnp.mean(jnp.sum(jnp.square(grad_real), axis=(1, 2, 3)))
  loss = d_gan + r1 * (r1_gamma * 0.5)
  return loss, {"d_loss": loss, "d_gan": d_gan, "r1": r1,
                "d_real": jnp.mean(real_scores), "d_fake": jnp.mean(fake_scores)}


def all_finite(tree):
  """[] bool: every floating-point leaf of tree is finite."""
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.floating)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def _apply(tx, grads, opt_state, params, finite, skip_nonfinite):
  """The optimiser step; with skip_nonfinite a step whose loss, new params or
  new optimiser state is not finite leaves everything as it was.

  Returns (params, opt_state, ok) with ok [] bool (the step was taken).
  """
  updates, new_opt_state = tx.update(grads, opt_state, params)
  new_params = optax.apply_updates(params, updates)
  ok = finite
  if skip_nonfinite:
    ok = finite & all_finite(new_params) & all_finite(new_opt_state)
    keep = lambda new, old: jax.tree_util.tree_map(
        lambda a, b: jnp.where(ok, a, b), new, old)
    new_params = keep(new_params, params)
    new_opt_state = keep(new_opt_state, opt_state)
  return new_params, new_opt_state, ok


def micro_batches(images, accum: int):
  """[B, ...] -> [accum, B / accum, ...]: micro-batch j is images j, j + k,
  j + 2k, ... (strided, so each spans every device's shard of the batch)."""
  b = images.shape[0]
  if b % accum:
    raise ValueError(f"config.accum_steps={accum} must divide the batch "
                     f"({b} per step here)")
  return jnp.swapaxes(images.reshape((b // accum, accum) + images.shape[1:]),
                      0, 1)


def _accumulate(loss_fn, params, batch_stats, frozen, images, accum: int,
                unroll: bool = False):
  """Gradient accumulation over ``accum`` micro-batches (config.accum_steps).

  The gradient is the mean of the micro-batch gradients: the large batch's
  for every term that is a per-image mean. BatchNorm: each micro-batch is
  normalised with ITS OWN statistics (as BN over a smaller batch) and the
  running statistics take one momentum update per micro-batch, in order;
  the same update as the large batch holds exactly only without batch-
  dependent normalisation. Measurements are micro-batch means.

  Rolled (a while loop) one micro-batch's activations live at a time;
  unrolled (``unroll``, config.accum_unroll) XLA overlaps the micro-batches:
  faster, more memory. The body's convolutions are written in canonical
  order (loop_convs.canonical_convs): XLA:CPU canonicalises only the entry
  computation's, and ran the loop's backward convs as naive loops (a step
  4-6x slower rolled than unrolled before).
  """
  grad_fn = loop_convs.canonical_convs(
      jax.value_and_grad(loss_fn, has_aux=True))

  def body(carry, x):
    g_sum, stats = carry
    (_, (stats, m, _)), g = grad_fn(params, stats, frozen, x)
    return (jax.tree_util.tree_map(jnp.add, g_sum, g), stats), m
  zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
  (g_sum, batch_stats), ms = jax.lax.scan(
      body, (zeros, batch_stats), micro_batches(images, accum),
      unroll=accum if unroll else 1)
  grads = jax.tree_util.tree_map(lambda g: g / accum, g_sum)
  m = jax.tree_util.tree_map(lambda v: jnp.mean(v, axis=0), ms)
  return m["loss"], batch_stats, m, grads


def train_step(state: TrainState, frozen, images, *, encoder, model_cfg, cfg,
               tx, d_tx=None, nets: LossNets, axis_name: Optional[str] = None,
               compute_dtype=jnp.float32):
  """One training iteration; returns (new_state, measurements).

  With ``axis_name`` (pmap mode) gradients and measurements are averaged over
  that axis; under a global-view jit the batch is already global.
  """
  loss_cfg, optim_cfg = cfg.loss, cfg.optim
  use_d = loss_cfg.adv > 0
  loss_fn = functools.partial(
      encoder_loss, encoder=encoder, model_cfg=model_cfg, loss_cfg=loss_cfg,
      nets=nets, d_params=state.d_params, compute_dtype=compute_dtype,
      remat_synthesis=cfg.get("remat", "none") in ("synthesis", "both"))
  accum = int(cfg.get("accum_steps", 1))
  if accum == 1:
    (loss, (batch_stats, m, _)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state.params, state.batch_stats, frozen,
                               images)
  else:
    loss, batch_stats, m, grads = _accumulate(
        loss_fn, state.params, state.batch_stats, frozen, images, accum,
        unroll=bool(cfg.get("accum_unroll", False)))
  if axis_name is not None:
    grads = jax.lax.pmean(grads, axis_name)
    m = jax.lax.pmean(m, axis_name)
    loss = m["loss"]
  finite = jnp.isfinite(loss) & all_finite(batch_stats)
  m["grad_norm"] = global_norm(grads)
  grads = sanitize_grads(grads, optim_cfg.grad_clamp)
  params, opt_state, ok = _apply(tx, grads, state.opt_state, state.params,
                                 finite, optim_cfg.skip_nonfinite)
  if optim_cfg.skip_nonfinite:
    # A skipped step leaves the BatchNorm statistics as they were too.
    batch_stats = jax.tree_util.tree_map(
        lambda a, b: jnp.where(ok, a, b), batch_stats, state.batch_stats)
  m["skipped"] = jnp.logical_not(ok).astype(jnp.float32)

  d_params, d_opt_state = state.d_params, state.d_opt_state
  if use_d:
    variables = {"params": params, "batch_stats": batch_stats,
                 "buffers": frozen["encoder_buffers"]}
    (ws, paddings), mutated = encoder.apply(
        variables, encoder_input(images, encoder), train=True,
        mutable=["batch_stats"])
    if optim_cfg.skip_nonfinite:
      keep_new = ok & all_finite(mutated["batch_stats"])
      batch_stats = jax.tree_util.tree_map(
          lambda a, b: jnp.where(keep_new, a, b), mutated["batch_stats"],
          batch_stats)
    else:
      batch_stats = mutated["batch_stats"]
    fake = functional.synthesize(frozen["generator"], ws, paddings,
                                 config=model_cfg.generator,
                                 dtype=compute_dtype)
    fake = jax.lax.stop_gradient(fake)
    real = images
    if fake.shape[1] != real.shape[1]:
      fake, real = metrics.match_resolution(fake, real, loss_cfg.downsample)
    (d_loss, dm), d_grads = jax.value_and_grad(
        discriminator_loss, has_aux=True)(d_params, real, fake, nets=nets,
                                          r1_gamma=loss_cfg.r1_gamma)
    if axis_name is not None:
      d_grads = jax.lax.pmean(d_grads, axis_name)
      dm = jax.lax.pmean(dm, axis_name)
    d_finite = jnp.isfinite(dm["d_loss"])
    d_grads = sanitize_grads(d_grads, optim_cfg.grad_clamp)
    d_params, d_opt_state, _ = _apply(d_tx, d_grads, d_opt_state, d_params,
                                      d_finite, optim_cfg.skip_nonfinite)
    m.update(dm)

  new_state = state.replace(step=state.step + 1, params=params,
                            batch_stats=batch_stats, opt_state=opt_state,
                            d_params=d_params, d_opt_state=d_opt_state)
  return new_state, m


def eval_step(enc_vars, frozen, images, *, encoder, model_cfg, nets: LossNets,
              downsample: str = "nearest"):
  """Per-image MSE, LPIPS and ID similarity of G(E(x)) (eval-mode BN)."""
  ws, paddings = encoder.apply(enc_vars, encoder_input(images, encoder),
                               train=False)
  x_hat = functional.synthesize(frozen["generator"], ws, paddings,
                                config=model_cfg.generator)
  x_hat, x = metrics.match_resolution(x_hat, images, downsample)
  out = {"mse": jnp.mean(jnp.square(x_hat - x), axis=(1, 2, 3))}
  if nets.lpips is not None:
    out["lpips"] = nets.lpips(frozen["lpips"], x, x_hat)
  if nets.id_embed is not None:
    out["id_sim"] = jnp.sum(nets.id_embed(frozen["arcface"], x)
                            * nets.id_embed(frozen["arcface"], x_hat), -1)
  return out, x_hat
