"""NVIDIA StyleGAN1 (TF) variable names -> padinv_jax StyleGAN1 variables.

DESIGN.md section 10: TF variables are [kh, kw, in, out] (= HWIO) and
dense [in, out] (= Flax kernels), so this is a rename apart from the
constant ([1, C, 4, 4] -> [4, 4, C]) and the noise maps ([1, 1, r, r] ->
[r, r]). Names come with component-key prefixes (mapping/..., synthesis/...,
as stylegan2-ada's legacy.py reads them) or network-name prefixes
(G_mapping/..., G_synthesis/..., as tflib stores them): both are accepted.
Only the final lod's ToRGB is used; lod must be 0 (a final network).
"""

from __future__ import annotations

import math
import re
from typing import Mapping, Optional

import numpy as np

from padinv_jax.convert import common
from padinv_jax.convert.errors import ConvertError

_PREFIXES = {"G_mapping/": "mapping/", "G_synthesis/": "synthesis/"}


def normalise_names(variables: Mapping[str, np.ndarray]) -> dict:
  out = {}
  for k, v in variables.items():
    for a, b in _PREFIXES.items():
      if k.startswith(a):
        k = b + k[len(a):]
    out[k] = v
  return out


def layer_names(resolution: int) -> list[str]:
  """padinv_jax layer scope of NVIDIA layer i (noise{i}, ws[:, i])."""
  names = ["4x4_Const", "4x4_Conv"]
  for k in range(3, int(math.log2(resolution)) + 1):
    names += [f"{2 ** k}x{2 ** k}_Conv0_up", f"{2 ** k}x{2 ** k}_Conv1"]
  return names


def rule_for(resolution: int):
  names = layer_names(resolution)

  def rule(path: str) -> Optional[common.Src]:
    if path == "buffers/mapping/w_avg":
      return common.Src("dlatent_avg")
    m = re.match(r"params/mapping/(Dense\d+)/(weight|bias)$", path)
    if m:
      return common.Src(f"mapping/{m.group(1)}/{m.group(2)}")
    m = re.match(r"buffers/synthesis/(\w+)/noise$", path)
    if m:
      return common.Src(f"synthesis/noise{names.index(m.group(1))}",
                        lambda a: np.reshape(a, a.shape[-2:]))
    m = re.match(r"params/synthesis/ToRGB_lod0/(weight|bias)$", path)
    if m:
      return common.Src(f"synthesis/ToRGB_lod0/{m.group(1)}")
    m = re.match(r"params/synthesis/(\d+x\d+)_(\w+?)/(.+)$", path)
    if m:
      key = f"synthesis/{m.group(1)}/{m.group(2)}/{m.group(3)}"
      if m.group(3) == "const":
        return common.Src(key, lambda a: common.chw_to_hwc(np.reshape(
            a, a.shape[-3:])))
      return common.Src(key)
    return None

  return rule


def convert_generator(variables: Mapping[str, np.ndarray], gen_cfg,
                      what: str) -> dict:
  """Strict conversion: every target leaf filled, every source key used."""
  # pylint: disable=import-outside-toplevel
  import jax
  from padinv_jax.models import functional
  sd = normalise_names(variables)
  lod = sd.get("synthesis/lod")
  if lod is not None and float(np.asarray(lod)) != 0.0:
    raise ConvertError(f"{what}: lod {float(np.asarray(lod))} is not a final "
                       "network (lod 0); only trained, final generators are "
                       "supported")
  target = jax.eval_shape(
      lambda k: functional.init_generator(k, gen_cfg), jax.random.PRNGKey(0))
  ignore = lambda k: (k == "synthesis/lod" or
                      re.match(r"synthesis/ToRGB_lod[1-9]\d*/", k) is not None)
  return common.assign(target, sd, rule_for(int(gen_cfg.resolution)),
                       what=what, ignore=ignore)
