"""pSp / e4e checkpoints ({'state_dict', 'latent_avg', 'opts'}).

state_dict holds encoder.* (GradualStyleEncoder or Encoder4Editing) and
decoder.* (a rosinality generator). The encoder keys are renamed onto the
official PadInv names and converted by padinv_keys (one mapping for both):
  encoder.input_layer.*        -> input_layer.*
  encoder.body.{k}.*           -> backbone_stages.{s}.{u}.* (units [3,4,14,3])
  encoder.styles.{i}.*         -> latent_heads.{i}.*
  encoder.latlayer2 (128->512) -> fpn.lateral_layers.0
  encoder.latlayer1 (256->512) -> fpn.lateral_layers.1   (note the order)
pSp and e4e have the same keys but different semantics (e4e: w_i = w_0 +
delta_i), decided from opts['encoder_type'] or an explicit --format.
latent_avg ([n_styles, w_dim]) is added to every code (start_from_latent_avg)
and its first row is the generator's truncation centre.
"""

from __future__ import annotations

import re
from typing import Optional

import numpy as np

from padinv_jax.models import config as config_lib
from padinv_jax.convert import common
from padinv_jax.convert import hammer
from padinv_jax.convert import rosinality
from padinv_jax.convert.errors import ConvertError

NAME = "pSp / e4e checkpoint"
_TYPES = {"GradualStyleEncoder": "psp", "Encoder4Editing": "e4e"}


def _state_dict(obj) -> Optional[dict]:
  if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
    sd = obj["state_dict"]
    if any(str(k).startswith("encoder.") for k in sd):
      return sd
  return None


def _opts(obj) -> dict:
  opts = obj.get("opts") if isinstance(obj, dict) else None
  if isinstance(opts, dict):
    return opts
  state = getattr(opts, "state", None)  # an argparse.Namespace stand-in
  return dict(state) if isinstance(state, dict) else {}


def detect(obj) -> Optional[str]:
  if _state_dict(obj) is None:
    return None
  enc_type = _opts(obj).get("encoder_type")
  if enc_type is None:
    raise ConvertError(f"a {NAME} whose opts do not say the encoder_type: "
                       "give --format psp or --format e4e (they read the "
                       "same weights differently)")
  if enc_type not in _TYPES:
    raise ConvertError(f"a {NAME} with encoder_type {enc_type!r}; only "
                       f"{sorted(_TYPES)} encoders are supported")
  return _TYPES[enc_type]


def _unit_counts(n_units: int) -> tuple[int, ...]:
  from padinv_jax.models import irse  # pylint: disable=import-outside-toplevel
  for counts in irse.UNIT_COUNTS.values():
    if sum(counts) == n_units:
      return counts
  raise ConvertError(f"encoder.body has {n_units} IR-SE units: no supported "
                     f"depth ({dict(irse.UNIT_COUNTS)})")


def rename_encoder(sd: dict) -> dict:
  """pSp encoder.* keys -> official PadInv encoder keys (values unchanged)."""
  enc = common.strip_prefix(sd, "encoder.")
  units = sorted({int(m.group(1)) for k in enc
                  for m in [re.match(r"body\.(\d+)\.", k)] if m})
  counts = _unit_counts(len(units))
  where = []
  for s, n in enumerate(counts):
    where += [(s, u) for u in range(n)]
  out = {}
  for k, v in enc.items():
    m = re.match(r"body\.(\d+)\.(.*)$", k)
    if m:
      s, u = where[int(m.group(1))]
      out[f"backbone_stages.{s}.{u}.{m.group(2)}"] = v
      continue
    m = re.match(r"styles\.(\d+)\.(.*)$", k)
    if m:
      out[f"latent_heads.{m.group(1)}.{m.group(2)}"] = v
      continue
    m = re.match(r"latlayer([12])\.(.*)$", k)
    if m:
      out[f"fpn.lateral_layers.{2 - int(m.group(1))}.{m.group(2)}"] = v
      continue
    out[k if k.startswith("input_layer.") else f"encoder.{k}"] = v
  return out


def convert(obj, fmt: str = "psp", entry: Optional[str] = None,
            explicit: bool = False) -> common.Converted:
  """A pSp / e4e checkpoint -> a model directory (pSp-mode encoder + G).

  Args:
    obj: the unpickled checkpoint.
    fmt: "psp" or "e4e" (how to read the encoder's codes).
    entry: unused (one encoder, one decoder).
    explicit: the user gave --format (then it wins over opts, with a note).

  Returns:
    common.Converted of kind "model".
  """
  del entry
  sd = _state_dict(obj)
  if sd is None:
    raise ConvertError(f"not a {NAME}: no state_dict with encoder.* keys")
  sd = common.as_state_dict(sd, "state_dict")
  opts = _opts(obj)
  notes = []
  said = _TYPES.get(opts.get("encoder_type"))
  if explicit and said and said != fmt:
    notes.append(f"opts say encoder_type={opts['encoder_type']!r} but "
                 f"--format {fmt} was given: reading the codes as {fmt}")
  if int(opts.get("input_nc", 3)) != 3 or (
      "encoder.input_layer.0.weight" in sd
      and sd["encoder.input_layer.0.weight"].shape[1] != 3):
    raise ConvertError("this pSp encoder does not take RGB images (input_nc "
                       f"{opts.get('input_nc')}); only inversion encoders are "
                       "supported")
  e_sd = rename_encoder(sd)
  enc_cfg = hammer.encoder_config(e_sd, {}, "encoder")
  latent_avg = obj.get("latent_avg")
  if latent_avg is None:
    raise ConvertError(f"the {NAME} has no latent_avg (the encoder adds it to "
                       "its codes)")
  latent_avg = np.asarray(latent_avg, np.float32)
  if latent_avg.ndim == 3:  # [1, n, w]
    latent_avg = latent_avg[0]
  enc_cfg.encoder_type = fmt
  enc_cfg.w_avg_per_code = latent_avg.ndim == 2
  w_avg = latent_avg
  if opts.get("start_from_latent_avg", True) is False:
    w_avg = np.zeros_like(latent_avg)
    notes.append("opts.start_from_latent_avg=False: the encoder adds no "
                 "latent_avg")
  n_styles = int(sum(enc_cfg.codes_per_level))
  if "n_styles" in opts and int(opts["n_styles"]) != n_styles:
    raise ConvertError(f"opts.n_styles={opts['n_styles']} but the encoder has "
                       f"{n_styles} style heads")
  from padinv_jax.convert import padinv_keys  # pylint: disable=import-outside-toplevel
  try:
    e_vars = padinv_keys.encoder_from_official(e_sd, enc_cfg, w_avg)
  except ValueError as e:
    raise ConvertError(f"pSp encoder: {e}") from None
  gen_cfg, g_vars, g_notes = rosinality.convert_generator(
      common.strip_prefix(sd, "decoder."), "decoder",
      latent_avg[0] if latent_avg.ndim == 2 else latent_avg)
  notes += g_notes
  if "output_size" in opts and int(opts["output_size"]) != gen_cfg.resolution:
    raise ConvertError(f"opts.output_size={opts['output_size']} but the "
                       f"decoder is {gen_cfg.resolution} px")
  cfg = config_lib.model_config(with_encoder=True)
  cfg.generator = gen_cfg
  cfg.encoder = enc_cfg
  notes.append("pSp's inference uses random noise by default; this model "
               "uses the decoder's noises buffers (noise_mode='const')")
  desc = (f"{NAME} read as {fmt} (opts encoder_type "
          f"{opts.get('encoder_type')!r}): IR-SE-{enc_cfg.depth} encoder, "
          f"{n_styles} codes {tuple(enc_cfg.codes_per_level)}, decoder "
          f"{gen_cfg.resolution} px (rosinality layout), latent_avg "
          f"{tuple(latent_avg.shape)} added to every code")
  return common.Converted("model", cfg, {"generator": g_vars,
                                         "encoder": e_vars}, desc, notes)
