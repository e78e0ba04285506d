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


def is_hammer_stylegan1(sd: Mapping) -> bool:
  return "synthesis.layer0.const" in sd and any(
      k.endswith(".style.weight") for k in sd)


def hammer_to_nvidia(sd: Mapping[str, np.ndarray]) -> dict:
  """Hammer's StyleGAN1 state dict -> NVIDIA TF variable names and layouts.

  DESIGN.md section 10: mapping.dense{i}.weight [out, in] = W^T; layer{i}
  OIHW = TF HWIO permuted (3, 2, 0, 1), no flip; style [2C, w] = StyleMod^T;
  noise_strength [1, C, 1, 1]; noise [1, 1, r, r] = noise{i}; output{b} =
  ToRGB_lod{log2 R - 2 - b}; layer filters are the blur kernel (checked).
  """
  out = {}
  layers = sorted({int(m.group(1)) for k in sd
                   for m in [re.match(r"synthesis\.layer(\d+)\.", k)] if m})
  outputs = sorted({int(m.group(1)) for k in sd
                    for m in [re.match(r"synthesis\.output(\d+)\.", k)] if m})
  if not layers or not outputs:
    raise ConvertError("a Hammer StyleGAN1 generator needs synthesis.layer* "
                       "and synthesis.output* weights")
  resolution = 4 * 2 ** max(outputs)
  names = [n.replace("_", "/", 1) for n in layer_names(resolution)]
  if max(layers) != len(names) - 1:
    raise ConvertError(f"Hammer StyleGAN1: {max(layers) + 1} layers but "
                       f"{len(names)} at {resolution} px")
  blur = np.outer([1, 2, 1], [1, 2, 1]) / 16.0
  for k, v in sd.items():
    v = np.asarray(v)
    m = re.match(r"mapping\.dense(\d+)\.(weight|bias)$", k)
    if m:
      out[f"mapping/Dense{m.group(1)}/{m.group(2)}"] = (
          v.T if m.group(2) == "weight" else v)
      continue
    if k in ("w_avg", "truncation.w_avg", "mapping.w_avg"):
      out["dlatent_avg"] = v
      continue
    if k == "synthesis.lod":
      out["synthesis/lod"] = v
      continue
    m = re.match(r"synthesis\.layer(\d+)\.(.+)$", k)
    if m:
      i, leaf = int(m.group(1)), m.group(2)
      pre = f"synthesis/{names[i]}/"
      table = {"const": ("const", lambda a: a),
               "weight": ("weight", lambda a: a.transpose(2, 3, 1, 0)),
               "bias": ("bias", lambda a: a),
               "style.weight": ("StyleMod/weight", lambda a: a.T),
               "style.bias": ("StyleMod/bias", lambda a: a),
               "noise_strength": ("Noise/weight", lambda a: a.reshape(-1))}
      if leaf == "noise":
        out[f"synthesis/noise{i}"] = v
      elif leaf == "filter":
        f = v.reshape(v.shape[-2:]) if v.ndim >= 2 else v
        if f.shape != (3, 3) or not np.allclose(f / f.sum(), blur, atol=1e-6):
          raise ConvertError(f"{k}: expected the [1, 2, 1] blur kernel")
      elif leaf in table:
        name, t = table[leaf]
        out[pre + name] = t(v)
      else:
        raise ConvertError(f"unexpected Hammer StyleGAN1 key {k}")
      continue
    m = re.match(r"synthesis\.output(\d+)\.(weight|bias)$", k)
    if m:
      lod = max(outputs) - int(m.group(1))
      out[f"synthesis/ToRGB_lod{lod}/{m.group(2)}"] = (
          v.transpose(2, 3, 1, 0) if m.group(2) == "weight" else v)
      continue
    raise ConvertError(f"unexpected Hammer StyleGAN1 key {k}")
  return out


def fields_from_nvidia(sd: Mapping[str, np.ndarray]) -> dict:
  """Architecture of NVIDIA-named StyleGAN1 variables, from their shapes."""
  # pylint: disable=import-outside-toplevel
  from padinv_jax.convert import generator_target as gt
  dense = sorted(int(m.group(1)) for k in sd
                 for m in [re.match(r"mapping/Dense(\d+)/weight$", k)] if m)
  res = sorted(int(m.group(1)) for k in sd
               for m in [re.match(r"synthesis/(\d+)x\d+/Conv1/weight$", k)]
               if m)
  channels = {4: sd["synthesis/4x4/Const/const"].shape[1]}
  channels.update({r: sd[f"synthesis/{r}x{r}/Conv1/weight"].shape[-1]
                   for r in res})
  try:
    base, cmax = gt.infer_channel_base_max(channels)
  except ValueError as e:
    raise ConvertError(str(e)) from None
  return dict(resolution=max(res) if res else 4,
              z_dim=sd["mapping/Dense0/weight"].shape[0],
              w_dim=sd[f"mapping/Dense{dense[-1]}/weight"].shape[1],
              mapping_layers=len(dense), channel_base=base, channel_max=cmax,
              family="stylegan1")
