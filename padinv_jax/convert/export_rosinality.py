"""The reverse direction: a padinv_jax generator as a rosinality stylegan2-pytorch .pt.

What pSp / e4e / ReStyle load: {"g_ema": state dict, "latent_avg": [w_dim]}
(DESIGN.md section 11), float32, written by convert.torch_writer (no torch
needed; torch.load(weights_only=True) reads it). The key table is
convert/rosinality.py's, read backwards; the blur and up-sampling kernels
are outer([1, 3, 3, 1]) / 16 as rosinality registers them.

rosinality's Generator(size, style_dim, n_mlp, channel_multiplier) builds
512 channels up to 32 px and 2^(14 - log2 r) x multiplier above; a generator
with other widths (the small ones trained here) exports all the same, but
only code that sizes its layers from the state dict loads it, which the
notes say. pSp / e4e hard-code n_mlp 8.
"""

from __future__ import annotations

import collections
import math

import numpy as np

from padinv_jax.convert.errors import ConvertError


def _kernel():
  k = np.outer([1.0, 3.0, 3.0, 1.0], [1.0, 3.0, 3.0, 1.0])
  return (k / k.sum() * 4.0).astype(np.float32)


def _rosinality_channels(gen_cfg):
  """The channel_multiplier rosinality would need, or None if none fits."""
  r = int(gen_cfg.resolution)
  ours = {4 * 2 ** k: min(gen_cfg.channel_base // (4 * 2 ** k),
                          gen_cfg.channel_max)
          for k in range(int(math.log2(r)) - 1)}
  for cm in (1, 2, 4):
    theirs = {res: 512 if res <= 32 else int(2 ** (14 - math.log2(res)) * cm)
              for res in ours}
    theirs = {res: min(c, 512) for res, c in theirs.items()}
    if theirs == ours:
      return cm
  return None


def to_rosinality(gen_cfg, variables):
  """(state dict of float32 arrays, latent_avg, notes) for a generator."""
  p, b = variables["params"], variables["buffers"]
  sd = collections.OrderedDict()
  notes = []
  num_ws = 2 * int(round(math.log2(gen_cfg.resolution))) - 2
  a = lambda x: np.asarray(x, np.float32)
  for i in range(int(gen_cfg.mapping_layers)):
    fc = p["mapping"][f"fc{i}"]
    sd[f"style.{i + 1}.weight"] = a(fc["weight"]).T.copy()
    sd[f"style.{i + 1}.bias"] = a(fc["bias"])
  syn = p["synthesis"]
  sd["input.input"] = a(syn["const"]).transpose(2, 0, 1)[None].copy()

  def styled(pre, layer):
    q = syn[layer]
    sd[pre + "conv.weight"] = a(q["weight"]).transpose(3, 2, 0, 1)[None].copy()
    sd[pre + "conv.modulation.weight"] = a(
        q["affine"]["affine"]["weight"]).T.copy()
    sd[pre + "conv.modulation.bias"] = a(q["affine"]["affine"]["bias"])
    sd[pre + "noise.weight"] = a(q["noise_strength"]).reshape(1)
    sd[pre + "activate.bias"] = a(q["bias"])

  def rgb(pre, k):
    q = syn[f"torgb{k}"]
    sd[pre + "conv.weight"] = a(q["weight"]).transpose(3, 2, 0, 1)[None].copy()
    sd[pre + "conv.modulation.weight"] = a(
        q["affine"]["affine"]["weight"]).T.copy()
    sd[pre + "conv.modulation.bias"] = a(q["affine"]["affine"]["bias"])
    sd[pre + "bias"] = a(q["bias"]).reshape(1, 3, 1, 1)

  styled("conv1.", "layer0")
  rgb("to_rgb1.", 0)
  n_blocks = int(math.log2(gen_cfg.resolution)) - 2
  for k in range(n_blocks):
    styled(f"convs.{2 * k}.", f"layer{2 * k + 1}")
    sd[f"convs.{2 * k}.conv.blur.kernel"] = _kernel()
    styled(f"convs.{2 * k + 1}.", f"layer{2 * k + 2}")
    rgb(f"to_rgbs.{k}.", k + 1)
    sd[f"to_rgbs.{k}.upsample.kernel"] = _kernel()
  for i in range(num_ws - 1):
    nc = b["synthesis"][f"layer{i}"]["noise_const"]
    sd[f"noises.noise_{i}"] = a(nc)[None, None].copy()
  latent_avg = a(b["mapping"]["w_avg"])
  if gen_cfg.get("conv_clamp") is not None:
    notes.append(f"conv_clamp {gen_cfg.conv_clamp} is lost: rosinality never "
                 "clamps")
  if abs(float(gen_cfg.mapping_lr_mul) - 0.01) > 1e-12:
    raise ConvertError(f"mapping_lr_mul {gen_cfg.mapping_lr_mul}: rosinality "
                       "fixes lr_mlp 0.01 at load time, the weights would "
                       "change meaning")
  cm = _rosinality_channels(gen_cfg)
  if cm is None:
    notes.append(f"channels (base {gen_cfg.channel_base}, max "
                 f"{gen_cfg.channel_max}) are not a rosinality "
                 "Generator(channel_multiplier) layout: load it with code that "
                 "sizes its layers from the state dict (the weights and keys "
                 "are rosinality's)")
  else:
    notes.append(f"rosinality Generator({gen_cfg.resolution}, "
                 f"{gen_cfg.w_dim}, {gen_cfg.mapping_layers}, "
                 f"channel_multiplier={cm})")
  if int(gen_cfg.mapping_layers) != 8:
    notes.append(f"{gen_cfg.mapping_layers} mapping layers: pSp / e4e "
                 "hard-code n_mlp 8 and will not load it")
  if int(gen_cfg.z_dim) != int(gen_cfg.w_dim):
    raise ConvertError(f"z_dim {gen_cfg.z_dim} != w_dim {gen_cfg.w_dim}: "
                       "rosinality's mapping has one style_dim for both")
  return sd, latent_avg, notes


def export(model_path: str, dst: str, *, overwrite: bool = False):
  """A model directory's generator -> DST.pt; returns (path, notes)."""
  # pylint: disable=import-outside-toplevel
  from padinv_jax.convert import torch_writer
  from padinv_jax.storage import model_dir
  model = model_dir.load(model_path)
  sd, latent_avg, notes = to_rosinality(model.config.generator,
                                        model.params["generator"])
  sd = collections.OrderedDict(
      (k, np.asarray(v, np.float32)) for k, v in sd.items())
  path = torch_writer.save({"g_ema": sd, "latent_avg": latent_avg}, dst,
                           overwrite=overwrite)
  return path, notes
