"""The generator's target parameter tree and the layer naming shared by formats.

Our synthesis layers are numbered like the ws they read: layer0 is the 4 px
conv, then per resolution r = 8, 16, ...: an up-sampling conv (odd index) and
a plain conv (even index); torgb{k} belongs to resolution 4 * 2^k.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Optional

import jax

from padinv_jax.convert.errors import ConvertError
from padinv_jax.models import config as config_lib
from padinv_jax.models import functional


def target_shapes(gen_cfg) -> dict:
  """{"params", "buffers"} of jax.ShapeDtypeStruct for this generator."""
  config_lib.validate_generator_config(gen_cfg)
  init = functools.partial(functional.init_generator, config=gen_cfg)
  return jax.eval_shape(init, jax.random.key(0))


def default_pad_layer_num(resolution: int) -> int:
  """4 (the paper's setting), fewer when the generator has fewer plain convs."""
  return min(4, int(round(math.log2(resolution))) - 1)


_LAYER = re.compile(r"^(params|buffers)/synthesis/(layer|torgb)(\d+)/(.+)$")


def split_synthesis_path(path: str) -> Optional[tuple[str, int, int, str]]:
  """'params/synthesis/layer3/affine/affine/weight' -> ('conv0', 8, 3, rest).

  Returns:
    (role, resolution, index, rest) with role in conv0 (up-sampling conv),
    conv1 (plain conv), torgb; or None for other paths.
  """
  m = _LAYER.match(path)
  if not m:
    return None
  _, kind, idx, rest = m.groups()
  idx = int(idx)
  if kind == "torgb":
    return "torgb", 4 * 2 ** idx, idx, rest
  if idx == 0:
    return "conv1", 4, 0, rest
  if idx % 2:
    return "conv0", 4 * 2 ** ((idx + 1) // 2), idx, rest
  return "conv1", 4 * 2 ** (idx // 2), idx, rest


def make_gen_config(resolution, z_dim, w_dim, mapping_layers, channel_base,
                    channel_max, conv_clamp=None, mapping_lr_mul=0.01,
                    pad_layer_num=None, family="stylegan2"):
  """A generator ConfigDict from what a file says (pad_layer_num defaulted).

  Checked against the ranges real networks have before anything is built
  from it (ConvertError naming the field otherwise).
  """
  c = config_lib.generator_config(
      resolution=int(resolution), z_dim=int(z_dim), w_dim=int(w_dim),
      mapping_layers=int(mapping_layers), channel_base=int(channel_base),
      channel_max=int(channel_max),
      conv_clamp=None if conv_clamp is None else float(conv_clamp),
      mapping_lr_mul=float(mapping_lr_mul),
      pad_layer_num=(default_pad_layer_num(resolution) if pad_layer_num is None
                     else int(pad_layer_num)), family=str(family))
  try:
    config_lib.validate_generator_config(c)
  except ValueError as e:
    raise ConvertError(f"the file declares an impossible generator: {e}"
                       ) from None
  return c


def infer_channel_base_max(channels: dict[int, int]) -> tuple[int, int]:
  """(channel_base, channel_max) with min(base // r, max) == C(r) for all r.

  Args:
    channels: {resolution: channels} read from weight shapes.

  Returns:
    The pair; raises ValueError if no pair reproduces every C(r).
  """
  cmax = max(channels.values())
  below = {r: c for r, c in channels.items() if c < cmax}
  if below:
    base = max(r * c for r, c in below.items())
  else:
    base = max(32768, cmax * max(channels))
  if any(min(base // r, cmax) != c for r, c in channels.items()):
    raise ValueError(f"channel counts {dict(sorted(channels.items()))} do not "
                     "follow min(channel_base / r, channel_max)")
  return base, cmax
