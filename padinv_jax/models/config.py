"""Model configuration: one ml_collections ConfigDict with .generator and .encoder.

The pure functions take the part they need (``config.generator`` for mapping
and synthesis, the whole config for inversion) and accept either the whole
ModelConfig or the part, so notebooks can pass what they have.
"""

from __future__ import annotations

import math
from typing import Any

import ml_collections


def override(c: ml_collections.ConfigDict, overrides: dict,
             what: str) -> ml_collections.ConfigDict:
  """Sets known fields of ``c``; an unknown name is an error, not a no-op."""
  for k, v in overrides.items():
    if k not in c:
      raise ValueError(f"unknown {what} config field {k!r}; "
                       f"known: {sorted(c.keys())}")
    c[k] = v
  return c


def generator_config(**overrides: Any) -> ml_collections.ConfigDict:
  """StyleGAN2 config-F generator (1024 px) with the padding space.

  Args:
    **overrides: any field below, e.g. ``resolution=256``.

  Returns:
    A ConfigDict; ``num_ws`` is derived from ``resolution`` (2 log2 R - 2).
  """
  c = ml_collections.ConfigDict()
  # "stylegan2" (config-F, models/stylegan2.py) or "stylegan1" (G_style,
  # models/stylegan1.py: channel_base 16384 gives NVIDIA's 8192 / 2^stage).
  c.family = "stylegan2"
  c.resolution = 1024
  c.z_dim = 512
  c.w_dim = 512
  c.mapping_layers = 8
  c.mapping_lr_mul = 0.01
  c.channel_base = 32768
  c.channel_max = 512
  c.conv_clamp = ml_collections.FieldReference(None, field_type=float)
  # Number of padded layers P (1..5): "const" and layer0 .. layer{2(P-1)}.
  c.pad_layer_num = 4
  return override(c, overrides, "generator")


def encoder_config(**overrides: Any) -> ml_collections.ConfigDict:
  """PadInv IR-SE-50 encoder (input 256 px, FPN 512, codes [3, 4, 11])."""
  c = ml_collections.ConfigDict()
  c.depth = 50  # 50 | 100 | 152 -> unit counts, see encoder.UNITS
  c.input_size = 256
  c.stem_channels = 64
  c.stage_channels = (64, 128, 256, 512)
  c.fpn_channels = 512
  c.w_dim = 512
  c.codes_per_level = (3, 4, 11)
  c.encoder_type = "psp"  # psp | e4e (w_i = w_0 + delta_i)
  c.use_padding_space = True
  c.pad_layer_num = 4
  c.pad_units = 2  # IR-SE units in the padding branch
  # Unit counts per stage overriding depth (tiny test/demo networks only).
  c.units = ml_collections.FieldReference(None, field_type=tuple)
  c.w_avg_per_code = False  # w_avg of shape [w_dim] or [num_codes, w_dim]
  return override(c, overrides, "encoder")


def model_config(generator: dict | None = None,
                 encoder: dict | None = None,
                 with_encoder: bool = True) -> ml_collections.ConfigDict:
  """The whole model: ``.generator`` and (optionally) ``.encoder``."""
  c = ml_collections.ConfigDict()
  c.generator = generator_config(**(generator or {}))
  if with_encoder:
    c.encoder = encoder_config(**(encoder or {}))
  return c


def tiny_model_config(resolution: int = 32, with_encoder: bool = True):
  """A small random-weights model for tests and the demo (seconds on a CPU)."""
  gen = dict(resolution=resolution, z_dim=32, w_dim=32, mapping_layers=2,
             channel_base=1024, channel_max=32)
  enc = dict(stem_channels=8, stage_channels=(8, 16, 32, 32), fpn_channels=32,
             w_dim=32, units=(1, 1, 1, 1), pad_units=1)
  return model_config(gen, enc, with_encoder)


def gen_part(config) -> ml_collections.ConfigDict:
  """Accept a ModelConfig or its generator part."""
  return config.generator if "generator" in config else config


def num_ws(gen_cfg) -> int:
  return 2 * int(round(math.log2(gen_cfg.resolution))) - 2


def channels(gen_cfg, res: int) -> int:
  return min(gen_cfg.channel_base // res, gen_cfg.channel_max)


def padding_size(pad_layer_num: int) -> int:
  """S = 2^(P+1) + 2: the side of the padding maps the encoder makes."""
  return 2 ** (pad_layer_num + 1) + 2


def padding_keys(pad_layer_num: int) -> tuple[str, ...]:
  return ("const",) + tuple(f"layer{2 * i}" for i in range(pad_layer_num))


# What real networks have (NVIDIA, rosinality, Hammer, pSp configs), with
# room: a value outside is a damaged or hostile file, refused before anything
# is built from it (a 10**7-layer mapping costs minutes and gigabytes).
FAMILIES = ("stylegan2", "stylegan1")
LIMITS = {"z_dim": (1, 4096), "w_dim": (1, 4096), "mapping_layers": (1, 32),
          "channel_base": (1, 1 << 20), "channel_max": (1, 4096),
          "pad_layer_num": (1, 5)}


def _int_in(c, name, lo, hi):
  v = c.get(name)
  if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
    raise ValueError(f"generator {name} must be an integer in {lo}..{hi}, "
                     f"got {v!r}")


def _positive_finite(v, name, allow_none=False):
  if v is None and allow_none:
    return
  if (isinstance(v, bool) or not isinstance(v, (int, float))
      or not math.isfinite(v) or v <= 0):
    raise ValueError(f"generator {name} must be a positive finite number"
                     f"{' or null' if allow_none else ''}, got {v!r}")


def validate_generator_config(c) -> None:
  """Raise ValueError unless every field is in the range real networks have."""
  r = c.resolution
  if (isinstance(r, bool) or not isinstance(r, int) or r < 16 or r > 1024
      or (r & (r - 1))):
    raise ValueError(f"generator resolution must be a power of two in "
                     f"[16, 1024], got {r!r}")
  for name, (lo, hi) in LIMITS.items():
    _int_in(c, name, lo, hi)
  family = c.get("family", "stylegan2")
  if family not in FAMILIES:
    raise ValueError(f"generator family must be one of {FAMILIES}, got "
                     f"{family!r}")
  if family == "stylegan1" and c.get("conv_clamp") is not None:
    raise ValueError("StyleGAN1 has no conv_clamp; set it to null")
  _positive_finite(c.get("mapping_lr_mul"), "mapping_lr_mul")
  _positive_finite(c.get("conv_clamp"), "conv_clamp", allow_none=True)
  if not 1 <= c.pad_layer_num <= 5:
    raise ValueError(f"pad_layer_num must be in 1..5, got {c.pad_layer_num}")
