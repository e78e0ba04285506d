"""Public pure functions over the generator: mapping, synthesize, init.

These take parameters explicitly and hold no state, so they compose with
jax.jit / vmap / grad. ``config`` may be a whole ModelConfig or its
``.generator`` part; it is read at trace time (close over it, or pass it with
functools.partial, when jitting).
"""

from __future__ import annotations

import math
from typing import Mapping, Optional

import jax
import jax.numpy as jnp

from padinv_jax.models import config as config_lib
from padinv_jax.models import stylegan1
from padinv_jax.models import stylegan2


def _generator(config, dtype=jnp.float32, remat=False):
  gen_cfg = config_lib.gen_part(config)
  config_lib.validate_generator_config(gen_cfg)
  if gen_cfg.get("family", "stylegan2") == "stylegan1":
    # StyleGAN1 layers are not rematerialised (its synthesis is cheaper).
    return gen_cfg, stylegan1.build_generator(gen_cfg, dtype)
  return gen_cfg, stylegan2.build_generator(gen_cfg, dtype, remat)


def init_generator(rng, config):
  """Random generator variables {"params", "buffers"} for ``config``.

  Weights follow the originals' initialisers (N(0, 1) stored weights, style
  bias 1, zero biases, random const noise), so a random generator is usable
  for tests and demos.
  """
  gen_cfg, g = _generator(config)
  z = jnp.zeros((1, gen_cfg.z_dim), jnp.float32)
  return g.init({"params": rng}, z)


def mapping(gen_params, z, *, config, psi=1.0, cutoff: Optional[int] = None):
  """z [N, z_dim] -> ws [N, num_ws, w_dim], with optional truncation.

  Args:
    gen_params: generator variables ({"params", "buffers"}).
    z: [N, z_dim] latents.
    config: ModelConfig or its generator part.
    psi: truncation psi (1.0 = none); may be a traced scalar.
    cutoff: truncate the first ``cutoff`` ws; None truncates ALL ws
      (NVIDIA's meaning of truncation_cutoff=None).

  Returns:
    ws [N, num_ws, w_dim] float32.
  """
  gen_cfg, g = _generator(config)
  if z.ndim != 2 or z.shape[1] != gen_cfg.z_dim:
    raise ValueError(f"mapping expects z of shape [N, {gen_cfg.z_dim}], got "
                     f"{tuple(z.shape)}")
  return g.apply(gen_params, z, psi, cutoff, method="map")


def validate_paddings(paddings: Mapping, n: int, gen_cfg) -> None:
  """Raise ValueError unless every padding map fits the generator."""
  r = gen_cfg.resolution
  num_layers = config_lib.num_ws(gen_cfg) - 1
  valid = config_lib.padding_keys(gen_cfg.pad_layer_num)
  for key, p in paddings.items():
    if key not in valid:
      raise ValueError(
          f"unknown padding key {key!r}; valid keys for pad_layer_num="
          f"{gen_cfg.pad_layer_num} are {list(valid)}")
    if key == "const":
      res, cin = 4, config_lib.channels(gen_cfg, 4)
    else:
      i = int(key[len("layer"):])
      if i >= num_layers:
        raise ValueError(f"padding key {key!r}: a {r} px generator has only "
                         f"layers 0..{num_layers - 1}")
      res = 4 * 2 ** (i // 2)
      cin = config_lib.channels(gen_cfg, res)
    need = res if key == "const" else res + 2
    shape = tuple(p.shape)
    ok = (len(shape) == 4 and shape[0] in (1, n) and shape[1] == shape[2]
          and shape[3] == cin and shape[1] >= need
          and (shape[1] - res) % 2 == 0)
    if not ok:
      raise ValueError(
          f"padding map {key!r} (layer at {res} px) must be [N={n} or 1, S, S,"
          f" {cin}] with S >= {need} and S - {res} even (S = "
          f"{config_lib.padding_size(gen_cfg.pad_layer_num)} from the "
          f"encoder), got {shape}")


def synthesize(gen_params, ws, paddings: Optional[Mapping] = None, *, config,
               noise_mode: str = "const", rng=None, dtype=jnp.float32,
               remat: bool = False):
  """ws (+ padding maps) -> images [N, R, R, 3], float32, nominally [-1, 1].

  Args:
    gen_params: generator variables ({"params", "buffers"}).
    ws: [N, >= num_ws, w_dim]; trailing extra codes are ignored.
    paddings: optional dict {"const": p0, "layer0": p1, "layer2": p3, ...} of
      [N, S, S, C] maps; absent keys keep the original behaviour (learned
      const, zero padding).
    config: ModelConfig or its generator part.
    noise_mode: "const" | "random" | "none".
    rng: PRNG key, required for noise_mode="random" (one stream per layer).
    dtype: compute dtype of the convolutions (params stay float32).
    remat: recompute each synthesis layer's activations in the backward
      pass (jax.checkpoint) instead of keeping them: less memory for
      gradients through G, the same values.

  Returns:
    [N, R, R, 3] float32 images (not clamped).
  """
  gen_cfg, g = _generator(config, dtype, remat)
  nws = config_lib.num_ws(gen_cfg)
  if ws.ndim != 3:
    raise ValueError(f"ws must be [N, num_ws={nws}, w_dim={gen_cfg.w_dim}], "
                     f"got rank {ws.ndim} shape {tuple(ws.shape)}")
  if ws.shape[1] < nws:
    raise ValueError(f"a {gen_cfg.resolution} px generator needs at least "
                     f"{nws} ws, got {ws.shape[1]}")
  if ws.shape[2] != gen_cfg.w_dim:
    raise ValueError(f"ws must have w_dim={gen_cfg.w_dim}, got {ws.shape[2]}")
  paddings = dict(paddings or {})
  validate_paddings(paddings, ws.shape[0], gen_cfg)
  return g.apply(gen_params, ws[:, :nws], paddings, noise_mode, rng,
                 method="synthesize")


def num_params(tree) -> int:
  return sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(tree))
