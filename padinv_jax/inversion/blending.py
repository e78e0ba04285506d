"""Blending (layout of one image, style of another) and the from-average sequence.

DESIGN.md section 4; pure and jit-able (close over ``config``).
"""

from __future__ import annotations

from typing import Optional, Sequence

import jax.numpy as jnp

from padinv_jax.inversion.interpolation import interpolate
from padinv_jax.models import config as config_lib
from padinv_jax.models import functional


def blend(gen_params, ws_details, pads_contour, *, config,
          noise_mode: str = "const", rng=None):
  """Face blending (the paper's): G(W+ of details B, paddings of contour A).

  The padding space carries the spatial layout (pose, contour, background)
  and W+ the style (identity, colours), so this keeps image A's layout with
  image B's details.

  Args:
    gen_params: generator variables ({"params", "buffers"}).
    ws_details: [N, L, w_dim] codes of the details images (B).
    pads_contour: padding maps of the contour images (A), [N or 1, S, S, C].
    config: ModelConfig or its generator part (static).
    noise_mode: passed to synthesize (static).
    rng: PRNG key for noise_mode="random".

  Returns:
    [N, R, R, 3] float32 images.
  """
  return functional.synthesize(gen_params, ws_details, dict(pads_contour),
                               config=config, noise_mode=noise_mode, rng=rng)


def generator_paddings(gen_params, n: int, *, config,
                       size: Optional[int] = None,
                       keys: Optional[Sequence[str]] = None):
  """The generator's own constants as padding maps: exactly the plain generator.

  p0 ("const") is zeros with the learned 4 x 4 const in its centre and every
  layer map is zeros, so synthesize with these maps equals synthesize with
  no maps (DESIGN.md section 1).

  Args:
    gen_params: generator variables.
    n: batch size N (static).
    config: ModelConfig or its generator part (static).
    size: map side S (static); default 2^(P+1) + 2, the encoder's.
    keys: which maps (static); default all of the config's
      ("const", "layer0", ..., "layer{2(P-1)}").

  Returns:
    {key: [N, S, S, C]} float32.
  """
  g = config_lib.gen_part(config)
  size = int(size or config_lib.padding_size(g.pad_layer_num))
  keys = tuple(keys or config_lib.padding_keys(g.pad_layer_num))
  syn = gen_params["params"]["synthesis"]
  # StyleGAN1 keeps its learned constant under NVIDIA's 4x4/Const scope.
  const = jnp.asarray(syn["4x4_Const"]["const"] if "4x4_Const" in syn
                      else syn["const"], jnp.float32)
  out = {}
  for key in keys:
    if key == "const":
      c = config_lib.channels(g, 4)
      o = (size - 4) // 2
      p0 = jnp.zeros((size, size, c), jnp.float32).at[o:o + 4, o:o + 4].set(
          const)
      out[key] = jnp.broadcast_to(p0[None], (n, size, size, c))
    else:
      res = 4 * 2 ** (int(key[len("layer"):]) // 2)
      c = config_lib.channels(g, res)
      out[key] = jnp.zeros((n, size, size, c), jnp.float32)
  return out


def average_ws(gen_params, n: int, *, config, num_codes: Optional[int] = None):
  """The generator's mapping w_avg broadcast to [N, num_codes, w_dim].

  Args:
    gen_params: generator variables (w_avg in buffers/mapping/w_avg).
    n: batch size (static).
    config: ModelConfig or its generator part (static).
    num_codes: code axis length (static); default the generator's num_ws.

  Returns:
    [N, num_codes, w_dim] float32.
  """
  g = config_lib.gen_part(config)
  num_codes = int(num_codes or config_lib.num_ws(g))
  w_avg = jnp.asarray(gen_params["buffers"]["mapping"]["w_avg"], jnp.float32)
  return jnp.broadcast_to(w_avg[None, None], (n, num_codes, w_avg.shape[-1]))


def from_average(gen_params, pads_target, steps: int, *, config,
                 num_codes: Optional[int] = None):
  """Plain generator at w_avg -> an image's paddings (supp. Fig. S2/S3).

  ws stay the generator's w_avg throughout; the padding maps go from the
  generator's own constants (:func:`generator_paddings`) to
  ``pads_target``, so step 0 is exactly StyleGAN2's image at w_avg and the
  last step shows what the image's paddings alone carry.

  Args:
    gen_params: generator variables.
    pads_target: {key: [N, S, S, C]} padding maps of the images.
    steps: K >= 2 (static).
    config: ModelConfig or its generator part (static).
    num_codes: code axis length of the result (static; default num_ws).

  Returns:
    (ws [K, N, L, D], paddings {key: [K, N, S, S, C]}).
  """
  if not pads_target:
    raise ValueError("from_average needs padding maps; this encoder has no "
                     "padding space")
  any_map = next(iter(pads_target.values()))
  n, size = any_map.shape[0], any_map.shape[1]
  start = generator_paddings(gen_params, n, config=config, size=size,
                             keys=tuple(pads_target))
  ws = average_ws(gen_params, n, config=config, num_codes=num_codes)
  return interpolate((ws, start), (ws, dict(pads_target)), steps,
                     space="padding")
