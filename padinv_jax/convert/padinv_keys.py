"""Official PadInv / Hammer key names -> padinv_jax variables (numpy only).

Two state-dict layouts of the PadInv code base:
  * the encoder (models/padinv_encoder.py): input_layer.{0,1,2},
    backbone_stages.{s}.{u}.{res_layer.{0..5},shortcut_layer.{0,1}},
    fpn.lateral_layers.{i}, latent_heads.{j}.{convs.{2k},linear},
    padding_extractor.{k}.*, padding_modulation_heads.{k};
  * the Hammer StyleGAN2 generator: w_avg, mapping.dense{i},
    synthesis.early_layer.const, synthesis.layer{i}.{weight, bias, noise,
    noise_strength, style.*, filter}, synthesis.output{k}.*, synthesis.filter.
Both converters walk the TARGET variable tree (jax.eval_shape of the model
for the given config) and fail on any missing, unexpected or mis-shaped
entry, naming them all. Layout changes: conv OIHW -> HWIO; dense
[out, in] -> [in, out]; const [1, C, 4, 4] -> [4, 4, C]; noise
[1, 1, r, r] -> [r, r]. Nothing is flipped: both originals store weights the
way padinv_jax does.
"""

from __future__ import annotations

import re
from typing import Callable, Mapping, Optional

import flax
import jax
import numpy as np

from padinv_jax.convert.errors import MismatchError

# Buffers the originals keep that are not variables here.
_IGNORED = re.compile(r"(^|\.)num_batches_tracked$")
_FIR = np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64.0


def _conv(a):
  return np.transpose(a, (2, 3, 1, 0))  # OIHW -> HWIO


def _dense(a):
  return np.transpose(a)  # [out, in] -> [in, out]


def _same(a):
  return a


# ----------------------------------------------------------------- encoder --

# Our IR-SE unit's module names -> the original's Sequential indices.
_UNIT = {"bn1": "res_layer.0", "conv1": "res_layer.1", "prelu": "res_layer.2",
         "conv2": "res_layer.3", "bn2": "res_layer.4", "se": "res_layer.5",
         "shortcut_conv": "shortcut_layer.0",
         "shortcut_bn": "shortcut_layer.1"}
_STEM = {"conv": "0", "bn": "1", "prelu": "2"}
_LEAF = {"kernel": "weight", "scale": "weight", "weight": "weight",
         "bias": "bias", "mean": "running_mean", "var": "running_var"}


def _encoder_key(path: tuple[str, ...]) -> tuple[str, Callable]:
  """Our (collection-less) variable path -> (official key, transform)."""
  *mods, leaf = path
  head, rest = mods[0], mods[1:]
  if head == "stem":
    parts = ["input_layer", _STEM[rest[0]]]
  elif head == "body":
    s, u = re.fullmatch(r"stage(\d+)_unit(\d+)", rest[0]).groups()
    parts = ["backbone_stages", s, u, _UNIT[rest[1]]] + rest[2:]
  elif head.startswith("pad_unit"):
    parts = ["padding_extractor", head[len("pad_unit"):], _UNIT[rest[0]]]
    parts += rest[1:]
  elif head.startswith("pad_head"):
    parts = ["padding_modulation_heads", head[len("pad_head"):]]
  elif head.startswith("fpn_lateral"):
    parts = ["fpn.lateral_layers", head[len("fpn_lateral"):]]
  elif head.startswith("head"):
    parts = ["latent_heads", head[len("head"):]]
    if rest[0] == "linear":
      parts.append("linear")
    else:
      parts += ["convs", str(2 * int(rest[0][len("conv"):]))]
  else:
    raise KeyError(path)
  key = ".".join(parts + [_LEAF[leaf]])
  if leaf == "kernel":
    return key, _conv
  if head.startswith("head") and rest[0] == "linear" and leaf == "weight":
    return key, _dense
  return key, _same


def _fill(target_shapes, lookup, source_keys, ignore, what):
  """Walks the target tree; ``lookup(path) -> (key, array or None)``."""
  flat = flax.traverse_util.flatten_dict(target_shapes)
  out, missing, misshaped, used = {}, [], [], set()
  for path, shape_struct in flat.items():
    key, value = lookup(path)
    if value is None:
      missing.append(key)
      continue
    used.add(key)
    # A copy: the result must not alias the caller's (e.g. torch) buffers.
    value = np.array(value, np.float32)
    if tuple(value.shape) != tuple(shape_struct.shape):
      misshaped.append(f"{key}: file {tuple(value.shape)} (after layout "
                       f"change) vs model {tuple(shape_struct.shape)} at "
                       f"{'/'.join(path)}")
      continue
    out[path] = value
  unexpected = sorted(k for k in source_keys
                      if k not in used and not ignore(k))
  if missing or unexpected or misshaped:
    lines = [f"the {what} weights do not fit the configured network:"]
    if missing:
      lines.append(f"  missing ({len(missing)}): {', '.join(missing[:20])}")
    if unexpected:
      lines.append(f"  unexpected ({len(unexpected)}): "
                   f"{', '.join(unexpected[:20])}")
    if misshaped:
      lines.append(f"  mis-shaped ({len(misshaped)}): "
                   f"{'; '.join(misshaped[:10])}")
    lines.append("  check the config (depth, widths, codes_per_level, "
                 "use_padding_space, pad_layer_num) against the file.")
    raise MismatchError("\n".join(lines))
  return flax.traverse_util.unflatten_dict(out)


def encoder_from_official(state_dict: Mapping[str, np.ndarray], enc_cfg,
                          w_avg: Optional[np.ndarray] = None) -> dict:
  """Official PadInv encoder state dict -> padinv_jax encoder variables.

  Args:
    state_dict: {official key: numpy array} (models.encoder of a PadInv
      checkpoint; pSp-style files renamed to these keys first).
    enc_cfg: ``config.encoder`` (or a whole ModelConfig) describing it.
    w_avg: the code offset the encoder adds ([w_dim] or [num_codes, w_dim]).
      PadInv stores it outside the encoder, as the GAN checkpoint's
      non-smooth ``generator.w_avg``; required unless the state dict has a
      "w_avg" entry.

  Returns:
    {"params", "batch_stats", "buffers": {"w_avg"}} as numpy float32.

  Raises:
    MismatchError listing every missing, unexpected and mis-shaped key.
  """
  from padinv_jax.models import encoder as encoder_lib  # models sit above convert
  shapes = encoder_lib.encoder_shapes(enc_cfg)
  sd = dict(state_dict)
  if w_avg is None:
    if "w_avg" not in sd:
      raise MismatchError(
          "the PadInv encoder adds w_avg to every code but it is not in the "
          "encoder's state dict: pass w_avg= (models.generator.w_avg of the "
          "GAN checkpoint, the NON-smooth generator)")
    w_avg = sd["w_avg"]
  sd["w_avg"] = np.asarray(w_avg, np.float32)
  if shapes["buffers"]["w_avg"].ndim == 2 and sd["w_avg"].ndim == 1:
    sd["w_avg"] = np.broadcast_to(sd["w_avg"],
                                  shapes["buffers"]["w_avg"].shape).copy()

  def lookup(path):
    coll, rest = path[0], path[1:]
    if coll == "buffers":
      return "w_avg", sd.get("w_avg")
    key, fn = _encoder_key(rest)
    return key, (fn(sd[key]) if key in sd else None)

  return _fill(shapes, lookup, sd.keys(),
               lambda k: bool(_IGNORED.search(k)), "PadInv encoder")


# --------------------------------------------------------------- generator --


def _generator_key(path: tuple[str, ...]) -> tuple[str, Callable]:
  coll, net, *mods, leaf = path
  if coll == "buffers":
    if net == "mapping":
      return "w_avg", _same
    return f"synthesis.{mods[0]}.noise", lambda a: np.reshape(
        a, a.shape[-2:])
  if net == "mapping":
    i = mods[0][len("fc"):]
    return f"mapping.dense{i}.{leaf}", _dense if leaf == "weight" else _same
  if not mods:  # synthesis/const
    return "synthesis.early_layer.const", lambda a: np.transpose(
        a[0], (1, 2, 0))
  m = mods[0]
  name = m if m.startswith("layer") else "output" + m[len("torgb"):]
  if len(mods) > 1:  # affine/affine/{weight, bias}: the style dense
    return f"synthesis.{name}.style.{leaf}", (
        _dense if leaf == "weight" else _same)
  return f"synthesis.{name}.{leaf}", _conv if leaf == "weight" else _same


def generator_from_hammer(state_dict: Mapping[str, np.ndarray],
                          gen_cfg) -> dict:
  """Hammer / PadInv StyleGAN2 generator state dict -> generator variables.

  Args:
    state_dict: {key: numpy array} of models.generator or
      models.generator_smooth of a Hammer/PadInv checkpoint.
    gen_cfg: ``config.generator`` (or a whole ModelConfig) describing it.

  Returns:
    {"params", "buffers"} as numpy float32 (noise buffers become the const
    noise; w_avg the mapping's truncation centre).

  Raises:
    MismatchError for missing / unexpected / mis-shaped keys, or FIR filter
    buffers other than outer([1, 3, 3, 1]) / 64.
  """
  from padinv_jax.models import functional  # models sit above convert
  shapes = jax.eval_shape(lambda r: functional.init_generator(r, gen_cfg),
                          jax.random.key(0))
  sd = dict(state_dict)
  for k, v in sd.items():
    if k.endswith("filter") and not np.allclose(np.asarray(v), _FIR,
                                                atol=1e-7):
      raise MismatchError(
          f"{k} is not the [1, 3, 3, 1] FIR filter StyleGAN2 uses (got "
          f"{np.asarray(v).round(4).tolist()}); this generator variant is not "
          f"supported")

  def lookup(path):
    key, fn = _generator_key(path)
    return key, (fn(np.asarray(sd[key])) if key in sd else None)

  def ignore(k):
    return k.endswith("filter") or bool(_IGNORED.search(k))

  return _fill(shapes, lookup, sd.keys(), ignore, "Hammer StyleGAN2 generator")
