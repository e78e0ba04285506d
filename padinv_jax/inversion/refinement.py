"""Optimisation-based refinement of inverted codes (not in the original code).

Starting from the encoder's (W+, paddings), Adam moves the codes for K steps
against the reconstruction loss the encoder was trained with, without its
regularisers: mse_weight * MSE + lpips_weight * LPIPS. The generator is
frozen and only read; the loss is computed as in training
(padinv_jax.evaluation.metrics.match_resolution: outputs above the images' size are
reduced to it, smaller generators are compared at their own resolution with
the images average-pooled down).

Each image's codes only see its own loss (the objective is the SUM of the
per-image losses), so an image refines the same whatever else is in its
batch. The K steps run in one lax.scan: calling :func:`refine` traces the
step once; under jax.jit close over the static arguments::

  f = jax.jit(functools.partial(refine, config=cfg, steps=100))
  ws, pads, losses = f(gen_params, images, ws, pads, lr=0.01)
"""

from __future__ import annotations

from typing import Mapping, Optional

import jax
import jax.numpy as jnp
import optax

from padinv_jax.models import config as config_lib
from padinv_jax.models import functional
from padinv_jax.models import loop_convs
from padinv_jax.evaluation import metrics
from padinv_jax.inversion import core as inversion

SPACES = ("both", "w", "padding")


def _targets(images):
  """uint8 [0, 255] or float [-1, 1] images at their own size, float32."""
  size = images.shape[-2]
  return inversion.prepare_images(images, int(size), resize=None)


def reconstruction_loss(gen_params, images, ws, paddings: Optional[Mapping],
                        *, config, lpips_vars=None, lpips_weight: float = 0.8,
                        mse_weight: float = 1.0, lpips_net: str = "alex",
                        downsample: str = "avgpool"):
  """Per-image mse_weight * MSE + lpips_weight * LPIPS of G(ws, paddings).

  Args:
    gen_params: generator variables ({"params", "buffers"}).
    images: [N, s, s, 3] targets, uint8 [0, 255] or float in [-1, 1].
    ws: [N, >= num_ws, w_dim].
    paddings: {key: [N, S, S, C]} or None / {} (plain StyleGAN2).
    config: ModelConfig or its generator part (static).
    lpips_vars: LPIPS variables; None leaves the LPIPS term out.
    lpips_weight: weight of LPIPS (PadInv trains with 0.8).
    mse_weight: weight of the MSE (mean over pixels and channels).
    lpips_net: "alex" or "vgg", matching lpips_vars.
    downsample: "avgpool" or "nearest", for outputs larger than the images.

  Returns:
    [N] float32 losses.
  """
  gen_cfg = config_lib.gen_part(config)
  x = _targets(images)
  x_hat = functional.synthesize(gen_params, ws, paddings or None,
                                config=gen_cfg)
  x_hat, x = metrics.match_resolution(x_hat, x, downsample)
  loss = mse_weight * jnp.mean(jnp.square(x_hat - x), axis=(1, 2, 3))
  if lpips_vars is not None:
    # Imported here so refinement without LPIPS never builds the trunk.
    from padinv_jax.losses import lpips  # pylint: disable=g-import-not-at-top
    loss = loss + lpips_weight * lpips.lpips_distance(lpips_vars, x, x_hat,
                                                      lpips_net)
  return loss


def refine(gen_params, images, ws, paddings: Optional[Mapping], *, config,
           steps: int, lr: float = 0.01, lpips_vars=None,
           lpips_weight: float = 0.8, mse_weight: float = 1.0,
           optimize: str = "both", lpips_net: str = "alex",
           downsample: str = "avgpool"):
  """Refine (ws, paddings) with Adam for ``steps`` steps.

  Args:
    gen_params: generator variables (frozen).
    images: [N, s, s, 3] targets, uint8 [0, 255] or float in [-1, 1] (s =
      the encoder's input size for encoder codes).
    ws: [N, L, w_dim] start codes (the encoder's, or apps.average_ws); codes
      beyond the generator's num_ws get no gradient and stay as they are.
    paddings: {key: [N, S, S, C]} start maps (the encoder's, or
      apps.generator_paddings), or None / {} for a model without the padding
      space (then only "w" is possible).
    config: ModelConfig or its generator part (static).
    steps: K >= 0 Adam steps (static); 0 returns the start codes.
    lr: Adam learning rate (betas 0.9, 0.999, eps 1e-8).
    lpips_vars: LPIPS variables; None optimises the MSE alone.
    lpips_weight: weight of LPIPS.
    mse_weight: weight of the MSE.
    optimize: "both", "w" (paddings fixed) or "padding" (ws fixed) (static).
    lpips_net: "alex" or "vgg" (static).
    downsample: "avgpool" or "nearest" (static).

  Returns:
    (ws, paddings, losses): the refined codes in the start codes' shapes and
    the batch-mean loss before each step, [steps] float32.
  """
  if optimize not in SPACES:
    raise ValueError(f"optimize must be one of {SPACES}, got {optimize!r}")
  if steps < 0:
    raise ValueError(f"steps must be >= 0, got {steps}")
  paddings = dict(paddings or {})
  if optimize == "padding" and not paddings:
    raise ValueError("optimize='padding' needs padding maps, but none were "
                     "given (a pSp encoder has no padding space); use "
                     "optimize='w'")
  ws = jnp.asarray(ws, jnp.float32)
  paddings = {k: jnp.asarray(v, jnp.float32) for k, v in paddings.items()}
  x = _targets(images)
  free = {"ws": ws if optimize in ("both", "w") else None,
          "pads": paddings if optimize in ("both", "padding") else None}
  fixed_ws, fixed_pads = ws, paddings

  def loss_fn(codes):
    w = fixed_ws if codes["ws"] is None else codes["ws"]
    p = fixed_pads if codes["pads"] is None else codes["pads"]
    per_image = reconstruction_loss(
        gen_params, x, w, p, config=config, lpips_vars=lpips_vars,
        lpips_weight=lpips_weight, mse_weight=mse_weight,
        lpips_net=lpips_net, downsample=downsample)
    # The sum keeps each image's gradient independent of the batch size.
    return jnp.sum(per_image), jnp.mean(per_image)

  tx = optax.adam(lr)
  # Canonical conv order: XLA:CPU would run the loop body's backward convs
  # as naive loops (models/loop_convs.py).
  grad_fn = loop_convs.canonical_convs(jax.grad(loss_fn, has_aux=True))

  def step(carry, _):
    codes, opt_state = carry
    grads, mean_loss = grad_fn(codes)
    updates, opt_state = tx.update(grads, opt_state, codes)
    return (optax.apply_updates(codes, updates), opt_state), mean_loss

  (free, _), losses = jax.lax.scan(step, (free, tx.init(free)), None,
                                   length=int(steps))
  out_ws = fixed_ws if free["ws"] is None else free["ws"]
  out_pads = fixed_pads if free["pads"] is None else free["pads"]
  return out_ws, out_pads, losses
