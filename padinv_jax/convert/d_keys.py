"""StyleGAN2 discriminator key mapping (numpy only, no torch).

  discriminator_from_nvidia   stylegan2-ada-pytorch ``D`` state dict
                              (b{r}.fromrgb/conv0/conv1/skip, b4.conv/fc/out)
  discriminator_from_hammer   Hammer StyleGAN2Discriminator (input0,
                              layer{i}, residual{i}, output), as held in
                              PadInv / Hammer GAN checkpoints
The FIR buffers (``*.resample_filter``, Hammer's ``*.filter``) are not
parameters: they must equal outer([1,3,3,1]) / 64 or the file is refused.
Conditional (mapping.* / embedding.*) and skip-architecture discriminators
are refused by name.
"""

from __future__ import annotations

import math
import re
from typing import Mapping

import jax
import numpy as np

from padinv_jax.models import discriminator as d_lib
from padinv_jax.models import ops
from padinv_jax.convert.loss_keys import (check_against, chw_dense_to_hwc,
                                          flatten_tree, oihw_to_hwio,
                                          unflatten_tree)

_FIR = ops.fir_filter((1, 3, 3, 1))


def _check_filter(key: str, v) -> None:
  v = np.asarray(v, np.float32)
  if v.shape != _FIR.shape or not np.allclose(v, _FIR, atol=1e-7):
    raise ValueError(f"discriminator buffer {key} is not the [1,3,3,1] FIR "
                     f"filter this implementation supports (shape "
                     f"{v.shape}); refusing the file")


def discriminator_from_nvidia(sd: Mapping, d_cfg) -> dict:
  """NVIDIA stylegan2-ada-pytorch D state dict -> padinv_jax D variables.

  Args:
    sd: {key: array}, e.g. the D entry's ``_parameters`` / ``_buffers``
      gathered under their dotted names.
    d_cfg: discriminator_config() describing the file (resolution, widths,
      mbstd channels); a config with a .discriminator part is accepted.

  Returns:
    {"params": ...} for padinv_jax.models.discriminator.
  """
  d_cfg = d_lib.disc_part(d_cfg)
  bad = sorted(k for k in sd if k.startswith(("mapping.", "b4.fromrgb")))
  if bad:
    raise ValueError("conditional or skip-architecture discriminators are "
                     f"not supported; found {', '.join(bad[:5])}")
  flat, unexpected = {}, []
  c4 = d_lib.channels(d_cfg, 4)
  for key, v in sd.items():
    if key.endswith("resample_filter"):
      _check_filter(key, v)
      continue
    m = re.fullmatch(r"(b\d+)\.(fromrgb|conv0|conv1|skip|conv|fc|out)\."
                     r"(weight|bias)", key)
    if not m:
      unexpected.append(key)
      continue
    block, layer, kind = m.groups()
    v = np.asarray(v, np.float32)
    if kind == "weight" and v.ndim == 4:
      v = oihw_to_hwio(v)
    elif kind == "weight" and layer == "fc":
      # NVIDIA flattens NCHW; our dense input axis is (h, w, c).
      if v.shape != (c4, c4 * 16):
        raise ValueError(f"discriminator {key} has shape {v.shape}, "
                         f"expected {(c4, c4 * 16)}")
      v = chw_dense_to_hwc(v, c4, 4, 4)
    elif kind == "weight":
      v = np.ascontiguousarray(v.T)
    flat[f"params/{block}/{layer}/{kind}"] = v
  if unexpected:
    raise ValueError(f"discriminator: unexpected keys ({len(unexpected)}): "
                     + ", ".join(sorted(unexpected)[:20]))
  expected = {k: tuple(v.shape) for k, v in flatten_tree(jax.eval_shape(
      lambda: d_lib.init_discriminator(jax.random.key(0), d_cfg))).items()}
  check_against(flat, expected,
                f"StyleGAN2 discriminator ({d_cfg.resolution} px)")
  return unflatten_tree(flat)


def hammer_to_nvidia_keys(sd: Mapping, resolution: int) -> dict:
  """Rename Hammer StyleGAN2Discriminator keys to NVIDIA's (values kept).

  Hammer numbers blocks from the top: block i works at R / 2^i; its layers
  are layer{2i} (conv0), layer{2i+1} (conv1, down) and residual{i} (skip);
  input0 is the top FromRGB. The last block L = log2(R) - 2 is the 4 px
  epilogue: layer{2L} (conv), layer{2L+1} (fc), then ``output``.
  """
  last = int(math.log2(resolution)) - 2
  bad = sorted(k for k in sd if k.startswith(("embedding.", "mapping"))
               or re.match(r"input[1-9]", k))
  if bad:
    raise ValueError("conditional or skip-architecture Hammer "
                     f"discriminators are not supported; found "
                     f"{', '.join(bad[:5])}")
  out = {}
  for key, v in sd.items():
    m = re.fullmatch(r"(input0|layer(\d+)|residual(\d+)|output)\."
                     r"(weight|bias|filter)", key)
    if not m:
      out[key] = v  # reported as unexpected by the NVIDIA mapping
      continue
    name, li, ri, kind = m.groups()
    kind = "resample_filter" if kind == "filter" else kind
    if name == "input0":
      new = f"b{resolution}.fromrgb"
    elif name == "output":
      new = "b4.out"
    elif ri is not None:
      new = f"b{resolution >> int(ri)}.skip"
    else:
      i, second = divmod(int(li), 2)
      if i == last:
        new = "b4." + ("fc" if second else "conv")
      else:
        new = f"b{resolution >> i}." + ("conv1" if second else "conv0")
    out[f"{new}.{kind}"] = v
  return out


def discriminator_from_hammer(sd: Mapping, d_cfg) -> dict:
  """Hammer / PadInv StyleGAN2Discriminator state dict -> D variables.

  Args:
    sd: {key: array} of ``models['discriminator']``.
    d_cfg: discriminator_config() for the network (Hammer's fmaps_base /
      fmaps_max are channel_base / channel_max, mbstd_groups /
      mbstd_channels the minibatch-stddev settings).

  Returns:
    {"params": ...} for padinv_jax.models.discriminator.
  """
  d_cfg = d_lib.disc_part(d_cfg)
  return discriminator_from_nvidia(
      hammer_to_nvidia_keys(sd, d_cfg.resolution), d_cfg)
