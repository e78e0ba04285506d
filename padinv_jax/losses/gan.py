"""StyleGAN2 GAN losses with stylegan2-ada-pytorch semantics (StyleGAN2Loss).

DESIGN.md section 11. Four phases, each a pure loss of the one network it
trains (its gradient is what the phase's optimiser step uses):

  Gmain  mean softplus(-D(G(z)))                          (G's params)
  Greg   path length: L = sqrt(mean_ws sum_wdim g^2), g = d sum(G(ws) n)/d ws
         with n ~ N(0, I) / sqrt(H W) on the first N // shrink samples;
         m = pl_mean + decay (mean L - pl_mean) (NOT detached in the
         penalty); loss = mean(weight (L - m)^2)          (G's params)
  Dmain  mean softplus(D(G(z))) + mean softplus(-D(x))    (D's params)
  Dreg   R1 = sum_{H,W,C} (d sum D(x) / d x)^2; loss = mean(R1 gamma / 2)

Every loss is multiplied by its phase's ``gain`` (the lazy-regularisation
interval: 1 for the main phases, 4 and 16 for the regularisers by default).
``run_g`` is the original's run_G: ws = mapping(z) for every layer, and with
probability ``mixing_prob`` the layers from one cutoff c ~ U{1 .. num_ws-1}
on take the ws of a second, fresh z (one cutoff per call, shared by the
batch). The randomness of a phase is drawn up front by ``draw`` so a test
can hand both this code and a PyTorch reference the same numbers.

The networks arrive as a ``GanNets`` of pure callables, so StyleGAN2 and
StyleGAN1 generators share this code. Each G call also returns the batch
mean of the unmixed w: the caller updates the mapping's tracked w_avg with
it (w_avg = mean + (w_avg - mean) beta), as NVIDIA's train-mode mapping does
in Gmain, Greg and Dmain (not for the mixing z).
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp


class GanNets(NamedTuple):
  """The networks as pure functions.

  mapping(g_vars, z [N, z_dim]) -> w [N, w_dim] (no truncation).
  synthesis(g_vars, ws [N, num_ws, w_dim], noise_key) -> images [N, R, R, 3]
    (noise_key None: the generator's const noise, for tests).
  discriminator(d_vars, images) -> logits [N].
  """
  mapping: Callable
  synthesis: Callable
  discriminator: Callable
  num_ws: int
  z_dim: int
  resolution: int


class Draws(NamedTuple):
  """The random numbers of one phase (see ``draw``)."""
  z: jax.Array                  # [N, z_dim]
  z_mix: jax.Array              # [N, z_dim] the second z of style mixing
  cutoff: jax.Array             # [] int32 in 1 .. num_ws (num_ws: no mixing)
  noise_key: Optional[jax.Array]  # synthesis noise (None: const noise)
  pl_noise: Optional[jax.Array]   # [N // shrink, R, R, 3] (Greg only)


def draw(key, batch: int, nets: GanNets, *, mixing_prob: float,
         pl_batch: int = 0, noise: bool = True) -> Draws:
  """Draws a phase's z, mixing z and cutoff, noise key and PL noise."""
  k_z, k_mix, k_cut, k_prob, k_noise, k_pl = jax.random.split(key, 6)
  z = jax.random.normal(k_z, (batch, nets.z_dim), jnp.float32)
  z_mix = jax.random.normal(k_mix, (batch, nets.z_dim), jnp.float32)
  cutoff = jax.random.randint(k_cut, (), 1, nets.num_ws)
  mixed = jax.random.uniform(k_prob, ()) < mixing_prob
  cutoff = jnp.where(mixed, cutoff, nets.num_ws).astype(jnp.int32)
  r = nets.resolution
  pl_noise = None
  if pl_batch:
    pl_noise = jax.random.normal(k_pl, (pl_batch, r, r, 3),
                                 jnp.float32) / math.sqrt(r * r)
  return Draws(z, z_mix, cutoff, k_noise if noise else None, pl_noise)


def mix_ws(nets: GanNets, g_vars, z, z_mix, cutoff, mixing: bool = True):
  """run_G's mapping: (ws [N, num_ws, w_dim], w [N, w_dim] unmixed)."""
  w = nets.mapping(g_vars, z)
  ws = jnp.broadcast_to(w[:, None], (w.shape[0], nets.num_ws, w.shape[1]))
  if mixing:
    w2 = nets.mapping(g_vars, z_mix)
    late = (jnp.arange(nets.num_ws) >= cutoff)[None, :, None]
    ws = jnp.where(late, w2[:, None], ws)
  return ws, w


def run_g(nets: GanNets, g_vars, d: Draws, n: Optional[int] = None,
          mixing: bool = True):
  """G(z) with style mixing on the first n samples: (images, ws, w_mean)."""
  z, z_mix = (d.z, d.z_mix) if n is None else (d.z[:n], d.z_mix[:n])
  ws, w = mix_ws(nets, g_vars, z, z_mix, d.cutoff, mixing)
  img = nets.synthesis(g_vars, ws, d.noise_key)
  return img, ws, jnp.mean(jax.lax.stop_gradient(w), axis=0)


def g_main_loss(g_params, g_buffers, d_vars, d: Draws, *, nets: GanNets,
                mixing: bool = True, gain: float = 1.0):
  """Gmain: mean softplus(-D(G(z))) x gain; aux {w_mean, scores_fake}."""
  img, _, w_mean = run_g(nets, {"params": g_params, "buffers": g_buffers}, d,
                         mixing=mixing)
  logits = nets.discriminator(d_vars, img)
  loss = jnp.mean(jax.nn.softplus(-logits))
  return loss * gain, {"w_mean": w_mean, "loss_G": loss,
                       "scores_fake": jnp.mean(logits)}


def g_pl_loss(g_params, g_buffers, pl_mean, d: Draws, *, nets: GanNets,
              pl_decay: float = 0.01, pl_weight: float = 2.0,
              mixing: bool = True, gain: float = 4.0):
  """Greg: path-length penalty x gain; aux {w_mean, pl_mean, pl_penalty}."""
  g_vars = {"params": g_params, "buffers": g_buffers}
  n = d.pl_noise.shape[0]
  ws, w = mix_ws(nets, g_vars, d.z[:n], d.z_mix[:n], d.cutoff, mixing)
  img, vjp = jax.vjp(lambda x: nets.synthesis(g_vars, x, d.noise_key), ws)
  (grads,) = vjp(d.pl_noise.astype(img.dtype))
  lengths = jnp.sqrt(jnp.mean(jnp.sum(jnp.square(grads), axis=2), axis=1))
  new_mean = pl_mean + pl_decay * (jnp.mean(lengths) - pl_mean)
  penalty = jnp.square(lengths - new_mean)
  loss = jnp.mean(penalty * pl_weight)
  return loss * gain, {
      "w_mean": jnp.mean(jax.lax.stop_gradient(w), axis=0),
      "pl_mean": jax.lax.stop_gradient(new_mean),
      "pl_penalty": jnp.mean(penalty)}


def d_main_loss(d_params, g_vars, real, d: Draws, *, nets: GanNets,
                mixing: bool = True, gain: float = 1.0):
  """Dmain: mean softplus(D(G(z))) + mean softplus(-D(x)), x gain."""
  img, _, w_mean = run_g(nets, g_vars, d, mixing=mixing)
  img = jax.lax.stop_gradient(img)
  fake = nets.discriminator({"params": d_params}, img)
  real_logits = nets.discriminator({"params": d_params}, real)
  loss_fake = jnp.mean(jax.nn.softplus(fake))
  loss_real = jnp.mean(jax.nn.softplus(-real_logits))
  loss = loss_fake + loss_real
  return loss * gain, {"w_mean": w_mean, "loss_D": loss,
                       "scores_fake_D": jnp.mean(fake),
                       "scores_real": jnp.mean(real_logits),
                       "signs_real": jnp.mean(jnp.sign(real_logits))}


def d_r1_loss(d_params, real, *, nets: GanNets, r1_gamma: float,
              gain: float = 16.0):
  """Dreg: mean(R1 gamma / 2) x gain, R1 taken on the reals as given."""
  def total(x):
    return jnp.sum(nets.discriminator({"params": d_params}, x))

  grads = jax.grad(total)(real)
  r1 = jnp.sum(jnp.square(grads), axis=(1, 2, 3))
  loss = jnp.mean(r1 * (r1_gamma / 2))
  return loss * gain, {"r1_penalty": jnp.mean(r1)}


def update_w_avg(w_avg, w_mean, beta: float = 0.995):
  """NVIDIA's tracking: w_avg = mean(w) + (w_avg - mean(w)) beta."""
  return w_mean + (w_avg - w_mean) * beta


def sanitize(grads: Any):
  """torch.nan_to_num on every gradient: NaN -> 0, +-inf -> +-1e5."""
  return jax.tree_util.tree_map(
      lambda g: jnp.nan_to_num(g, nan=0.0, posinf=1e5, neginf=-1e5), grads)
