"""Hammer GAN checkpoints and PadInv training checkpoints ({'models': {...}}).

  GAN checkpoint:      {'models': {'generator', 'generator_smooth',
                        'discriminator'}, 'model_kwargs_init': {...}, ...}
  training checkpoint: {'models': {'encoder', 'generator'[, 'discriminator']},
                        'model_kwargs_init', 'loss' (whole nn.Modules), ...}
G = generator_smooth if present, else generator (the message says which);
the encoder's w_avg = models.generator.w_avg (the official runner's load()
sets avg_latent from exactly that entry). The architecture is read from the
weight shapes and cross-checked against model_kwargs_init when present.
Key mappings: padinv_keys (encoder, generator) and d_keys (discriminator).
"""

from __future__ import annotations

import re
from typing import Optional

import numpy as np

from padinv_jax.models import config as config_lib
from padinv_jax.convert import common
from padinv_jax.convert import generator_target as gt
from padinv_jax.convert.errors import ConvertError

GAN_NAME = "Hammer GAN checkpoint"
TRAIN_NAME = "PadInv training checkpoint"


def _models(obj) -> Optional[dict]:
  if isinstance(obj, dict) and isinstance(obj.get("models"), dict):
    return obj["models"]
  # The official loader also accepts a bare {'generator': ..., ...}.
  if isinstance(obj, dict) and any(
      isinstance(obj.get(k), dict) and ("synthesis.early_layer.const" in obj[k]
                                        or "synthesis.layer0.const" in obj[k])
      for k in ("generator", "generator_smooth")):
    return obj
  return None


def detect(obj) -> Optional[str]:
  models = _models(obj)
  if models is None:
    return None
  if models.get("encoder"):
    return "padinv"
  if models.get("generator") or models.get("generator_smooth"):
    return "hammer"
  return None


def _kwargs(obj, name: str) -> dict:
  kw = obj.get("model_kwargs_init") if isinstance(obj, dict) else None
  kw = kw.get(name) if isinstance(kw, dict) else None
  return dict(kw) if isinstance(kw, dict) else {}


def _disagree(what: str, pairs) -> None:
  bad = [f"{k}: model_kwargs_init says {a!r}, the weights say {b!r}"
         for k, a, b in pairs if a is not None and a != b]
  if bad:
    raise ConvertError(f"{what}: model_kwargs_init does not match the "
                       f"weights ({'; '.join(bad)}); the file is inconsistent")


def _unsupported(what: str, kw: dict, defaults: dict) -> None:
  bad = [f"{k}={kw[k]!r}" for k, v in defaults.items()
         if k in kw and kw[k] != v and not (isinstance(v, tuple)
                                            and tuple(kw[k]) == v)]
  if bad:
    raise ConvertError(f"{what} uses options this port does not implement: "
                       f"{', '.join(bad)}")


# --------------------------------------------------------------- generator

_G_FIXED = dict(architecture="skip", label_dim=0, image_channels=3,
                init_res=4, const_input=True, demodulate=True, use_wscale=True,
                wscale_gain=1.0, lr_mul=1.0, mapping_use_wscale=True,
                mapping_wscale_gain=1.0, normalize_z=True, repeat_w=True,
                final_tanh=False, noise_type="spatial",
                filter_kernel=(1, 3, 3, 1))


def generator_config(sd: dict, kw: dict, what: str, pad_layer_num=None):
  """Generator ConfigDict from a Hammer state dict (+ its init kwargs)."""
  _unsupported(what, kw, _G_FIXED)
  outs = [int(m.group(1)) for k in sd
          for m in [re.match(r"synthesis\.output(\d+)\.weight$", k)] if m]
  dense = [int(m.group(1)) for k in sd
           for m in [re.match(r"mapping\.dense(\d+)\.weight$", k)] if m]
  if not outs or not dense or "synthesis.early_layer.const" not in sd:
    raise ConvertError(f"{what} is not a Hammer StyleGAN2 generator (no "
                       "synthesis.output*/mapping.dense*/early_layer.const)")
  resolution = 4 * 2 ** max(outs)
  channels = {4: sd["synthesis.early_layer.const"].shape[1]}
  for k in range(1, max(outs) + 1):
    key = f"synthesis.layer{2 * k}.weight"
    if key not in sd:
      raise ConvertError(f"{what}: {key} is missing")
    channels[4 * 2 ** k] = sd[key].shape[0]
  try:
    base, cmax = gt.infer_channel_base_max(channels)
  except ValueError as e:
    raise ConvertError(f"{what}: {e}") from None
  z_dim = sd["mapping.dense0.weight"].shape[1]
  w_dim = sd[f"mapping.dense{max(dense)}.weight"].shape[0]
  if "fmaps_base" in kw:  # any base giving the same channels is equivalent
    kb = int(kw["fmaps_base"])
    kmax = int(kw.get("fmaps_max", 512))
    if any(min(kb // r, kmax) != c for r, c in channels.items()):
      _disagree(what, [("fmaps_base/fmaps_max", (kb, kmax), (base, cmax))])
    base, cmax = kb, kmax
  _disagree(what, [("resolution", kw.get("resolution"), resolution),
                   ("z_dim", kw.get("z_dim"), z_dim),
                   ("w_dim", kw.get("w_dim"), w_dim),
                   ("mapping_layers", kw.get("mapping_layers"),
                    max(dense) + 1)])
  if int(kw.get("mapping_fmaps", w_dim)) != w_dim:
    raise ConvertError(f"{what}: mapping_fmaps={kw['mapping_fmaps']} != "
                       f"w_dim={w_dim} is not supported")
  return gt.make_gen_config(
      resolution, z_dim, w_dim, max(dense) + 1, base, cmax,
      conv_clamp=kw.get("conv_clamp"),
      mapping_lr_mul=kw.get("mapping_lr_mul", 0.01),
      pad_layer_num=pad_layer_num)


def pick_generator(models: dict, entry: Optional[str]):
  """(name, state dict): generator_smooth if present, else generator."""
  if entry:
    if not models.get(entry):
      raise ConvertError(f"the checkpoint has no (non-empty) models.{entry} "
                         f"(it has {sorted(map(str, models))})")
    return entry, models[entry]
  for name in ("generator_smooth", "generator"):
    if models.get(name):
      return name, models[name]
  raise ConvertError("the checkpoint has neither models.generator_smooth nor "
                     "models.generator")


def convert_generator(obj, models, entry, pad_layer_num=None):
  from padinv_jax.convert import padinv_keys  # pylint: disable=import-outside-toplevel
  name, sd = pick_generator(models, entry)
  sd = common.as_state_dict(sd, f"models.{name}")
  from padinv_jax.convert import stylegan1_keys  # pylint: disable=import-outside-toplevel
  if stylegan1_keys.is_hammer_stylegan1(sd):
    nv = stylegan1_keys.hammer_to_nvidia(sd)
    gen_cfg = gt.make_gen_config(**stylegan1_keys.fields_from_nvidia(nv),
                                 pad_layer_num=pad_layer_num)
    return name, gen_cfg, stylegan1_keys.convert_generator(
        nv, gen_cfg, f"Hammer StyleGAN1 models.{name}")
  gen_cfg = generator_config(sd, _kwargs(obj, name) or _kwargs(
      obj, "generator"), f"models.{name}", pad_layer_num)
  return name, gen_cfg, padinv_keys.generator_from_hammer(sd, gen_cfg)


# ----------------------------------------------------------------- encoder

_E_FIXED = dict(image_channels=3, final_res=4, use_se=True, se_reduction=16,
                encode_const_input=True, only_pad_even=True,
                use_padding_modulation_head=True, inplanes=64)


def _count(sd, pattern) -> list[int]:
  return sorted({int(m.group(1)) for k in sd
                 for m in [re.match(pattern, k)] if m})


def encoder_config(sd: dict, kw: dict, what: str):
  """Encoder ConfigDict from PadInv encoder weights (+ init kwargs)."""
  _unsupported(what, kw, _E_FIXED)
  if "input_layer.0.weight" not in sd or not _count(sd, r"latent_heads\.(\d+)\."):
    raise ConvertError(f"{what} is not a PadInv encoder (no input_layer / "
                       "latent_heads)")
  stages = _count(sd, r"backbone_stages\.(\d+)\.")
  units = tuple(len(_count(sd, rf"backbone_stages\.{s}\.(\d+)\."))
                for s in stages)
  depth = [d for d, c in config_lib_units().items() if c == units]
  if not depth:
    raise ConvertError(f"{what}: {units} IR-SE units per stage match no "
                       f"supported depth ({config_lib_units()})")
  widths = tuple(int(sd[f"backbone_stages.{s}.0.res_layer.1.weight"].shape[0])
                 for s in stages)
  heads = _count(sd, r"latent_heads\.(\d+)\.")
  convs = [len(_count(sd, rf"latent_heads\.{j}\.convs\.(\d+)\.weight"))
           for j in heads]
  if convs != sorted(convs):
    raise ConvertError(f"{what}: latent heads are not ordered by level")
  levels = sorted(set(convs))
  codes = tuple(convs.count(n) for n in levels)
  input_size = 16 * 2 ** levels[0]
  use_pad = "padding_extractor.0.res_layer.0.weight" in sd
  fields = dict(
      depth=depth[0], input_size=input_size,
      stem_channels=int(sd["input_layer.0.weight"].shape[0]),
      stage_channels=widths,
      fpn_channels=int(sd["fpn.lateral_layers.0.weight"].shape[0]),
      w_dim=int(sd["latent_heads.0.linear.weight"].shape[0]),
      codes_per_level=codes, encoder_type="psp", use_padding_space=use_pad)
  if use_pad:
    fields["pad_layer_num"] = len(_count(sd, r"padding_modulation_heads\.(\d+)\."))
    fields["pad_units"] = len(_count(sd, r"padding_extractor\.(\d+)\."))
  latent_dim = kw.get("latent_dim")
  if isinstance(latent_dim, (list, tuple)):
    if len(set(latent_dim)) != 1:
      raise ConvertError(f"{what}: codes of different widths {latent_dim} are "
                         "not supported")
    latent_dim = latent_dim[0]
  nlpl = kw.get("num_latents_per_level")
  _disagree(what, [
      ("resolution", kw.get("resolution"), input_size),
      ("network_depth", kw.get("network_depth"), depth[0]),
      ("fpn_channels", kw.get("fpn_channels"), fields["fpn_channels"]),
      ("latent_dim", latent_dim, fields["w_dim"]),
      ("num_latents_per_level", tuple(nlpl) if nlpl else None, codes),
      ("use_padding_space", kw.get("use_padding_space"), use_pad)] + ([
          ("pad_layer_num", kw.get("pad_layer_num"), fields["pad_layer_num"]),
          ("depth_padding_extractor", kw.get("depth_padding_extractor"),
           fields["pad_units"])] if use_pad else []))
  return config_lib.encoder_config(**fields)


def config_lib_units():
  from padinv_jax.models import irse  # pylint: disable=import-outside-toplevel
  return dict(irse.UNIT_COUNTS)


# ----------------------------------------------------------------- convert

def _discriminator(obj, models):
  from padinv_jax.models import discriminator as d_lib  # pylint: disable=import-outside-toplevel
  from padinv_jax.convert import d_keys  # pylint: disable=import-outside-toplevel
  sd = common.as_state_dict(models["discriminator"], "models.discriminator")
  kw = _kwargs(obj, "discriminator")
  _unsupported("models.discriminator", kw, dict(
      architecture="resnet", label_dim=0, image_channels=3, init_res=4,
      use_wscale=True, wscale_gain=1.0, lr_mul=1.0, mapping_layers=0,
      filter_kernel=(1, 3, 3, 1)))
  layers = _count(sd, r"layer(\d+)\.weight$")
  if "input0.weight" not in sd or not layers:
    raise ConvertError("models.discriminator is not a Hammer StyleGAN2 "
                       "discriminator (no input0 / layer*)")
  resolution = 4 * 2 ** ((max(layers) - 1) // 2)
  channels = {resolution: int(sd["input0.weight"].shape[0]),
              4: int(sd[f"layer{max(layers) - 1}.weight"].shape[0])}
  for i in range(0, max(layers) - 1, 2):
    channels[resolution >> (i // 2 + 1)] = int(sd[f"layer{i + 1}.weight"].shape[0])
  try:
    base, cmax = gt.infer_channel_base_max(channels)
  except ValueError as e:
    raise ConvertError(f"models.discriminator: {e}") from None
  if "fmaps_base" in kw:
    base, cmax = int(kw["fmaps_base"]), int(kw.get("fmaps_max", 512))
  _disagree("models.discriminator",
            [("resolution", kw.get("resolution"), resolution)])
  cfg = dict(resolution=resolution, channel_base=base, channel_max=cmax,
             conv_clamp=kw.get("conv_clamp"),
             mbstd_group_size=int(kw.get("mbstd_groups", 4)),
             mbstd_num_channels=int(kw.get("mbstd_channels", 1)))
  d_cfg = d_lib.discriminator_config(**cfg)
  try:
    params = d_keys.discriminator_from_hammer(sd, d_cfg)
  except ValueError as e:
    raise ConvertError(f"models.discriminator: {e}") from None
  desc = (f"{GAN_NAME}, models.discriminator: {resolution} px, channels "
          f"{base}/{cmax}, minibatch-stddev groups {cfg['mbstd_group_size']}")
  return common.Converted("discriminator", cfg, params, desc)


def convert(obj, fmt: str = "hammer", entry: Optional[str] = None,
            explicit: bool = False) -> common.Converted:
  """A Hammer GAN / PadInv training checkpoint -> a model (or D) directory.

  Args:
    obj: the unpickled checkpoint.
    fmt: "hammer" (GAN checkpoint: generator only) or "padinv" (training
      checkpoint: encoder + generator).
    entry: generator_smooth | generator (which generator), or discriminator
      (write the D as a part directory for training).
    explicit: the user named the format.

  Returns:
    common.Converted.
  """
  del explicit
  models = _models(obj)
  if models is None:
    raise ConvertError("not a Hammer / PadInv checkpoint: no 'models' dict")
  other = sorted(k for k in map(str, models) if models.get(k))
  if entry == "discriminator":
    if not models.get("discriminator"):
      raise ConvertError("the checkpoint has no models.discriminator")
    return _discriminator(obj, models)
  notes = []
  if models.get("discriminator"):
    notes.append("the file also holds a discriminator: convert it with "
                 "--entry discriminator (training's loss.discriminator_dir)")
  if fmt == "hammer":
    name, gen_cfg, g_vars = convert_generator(obj, models, entry)
    desc = (f"{GAN_NAME} (models: {other}); using models.{name}: "
            f"{gen_cfg.resolution} px, z {gen_cfg.z_dim}, w {gen_cfg.w_dim}, "
            f"channels {gen_cfg.channel_base}/{gen_cfg.channel_max}")
    return common.Converted("model", common.generator_model_config(gen_cfg),
                            {"generator": g_vars}, desc, notes)
  if fmt != "padinv":
    raise ConvertError(f"hammer.convert cannot read format {fmt!r}")
  from padinv_jax.convert import padinv_keys  # pylint: disable=import-outside-toplevel
  if not models.get("encoder"):
    raise ConvertError("--format padinv needs a training checkpoint with "
                       "models.encoder; for a GAN checkpoint use --format "
                       "hammer")
  e_sd = common.as_state_dict(models["encoder"], "models.encoder")
  e_kw = _kwargs(obj, "encoder")
  enc_cfg = encoder_config(e_sd, e_kw, "models.encoder")
  if not models.get("generator") or "w_avg" not in models["generator"]:
    raise ConvertError("the encoder adds models.generator.w_avg to its codes, "
                       "but the checkpoint has no models.generator.w_avg")
  w_avg = np.asarray(models["generator"]["w_avg"], np.float32)
  if e_kw.get("start_from_latent_avg") is False:
    w_avg = np.zeros_like(w_avg)
    notes.append("start_from_latent_avg=False: the encoder adds no w_avg")
  name, gen_cfg, g_vars = convert_generator(
      obj, models, entry, enc_cfg.pad_layer_num if enc_cfg.use_padding_space
      else None)
  try:
    e_vars = padinv_keys.encoder_from_official(e_sd, enc_cfg, w_avg)
  except ValueError as e:
    raise ConvertError(f"models.encoder: {e}") from None
  cfg = config_lib.model_config(with_encoder=True)
  cfg.generator = gen_cfg
  cfg.encoder = enc_cfg
  ignored = sorted(k for k in map(str, obj) if k not in ("models",))
  notes.append(f"not converted (training state): {ignored}")
  pad = (f"padding space P={enc_cfg.pad_layer_num}" if enc_cfg.use_padding_space
         else "no padding space (pSp baseline)")
  desc = (f"{TRAIN_NAME}: encoder IR-SE-{enc_cfg.depth} "
          f"({enc_cfg.input_size} px, codes {tuple(enc_cfg.codes_per_level)}, "
          f"{pad}) with w_avg = models.generator.w_avg; generator "
          f"models.{name}: {gen_cfg.resolution} px, w {gen_cfg.w_dim}, "
          f"num_ws {config_lib.num_ws(gen_cfg)}")
  return common.Converted("model", cfg, {"generator": g_vars,
                                         "encoder": e_vars}, desc, notes)
