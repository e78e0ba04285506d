"""NVIDIA stylegan2-ada-pytorch (and stylegan3-repo StyleGAN2) network pickles.

A pickle is {'G', 'D', 'G_ema', ...}; each network is an NVIDIA persistent
object whose ``meta['state']`` is the module's __dict__ (the embedded source
is never run, see safe_pickle). Official keys:
  mapping.fc{i}.{weight [out, in], bias}, mapping.w_avg
  synthesis.b4.const [C, 4, 4]
  synthesis.b{r}.{conv0, conv1}.{weight, bias, affine.*, noise_const,
                                  noise_strength, resample_filter}
  synthesis.b{r}.torgb.{weight, bias, affine.*}, synthesis.b{r}.resample_filter
The architecture comes from the pickle's ``_init_kwargs`` and is cross-checked
against the weights by the strict assignment.
"""

from __future__ import annotations

import re
from typing import Optional

from padinv_jax.models import config as config_lib
from padinv_jax.convert import common
from padinv_jax.convert import generator_target as gt
from padinv_jax.convert import nvidia_tf
from padinv_jax.convert import safe_pickle
from padinv_jax.convert.errors import ConvertError

ENTRIES = ("G_ema", "G", "D")
NAME = "NVIDIA stylegan2-ada-pytorch pickle"


def detect(obj) -> Optional[str]:
  if nvidia_tf.detect(obj):
    return "nvidia"
  if isinstance(obj, dict) and any(
      isinstance(obj.get(k), safe_pickle.PersistentStandIn) for k in ENTRIES):
    return "nvidia"
  return None


def _refuse_unsupported(sd: dict, kw: dict, entry: str) -> None:
  if any(k.startswith("synthesis.input.") or re.match(r"synthesis\.L\d+_", k)
         for k in sd):
    raise ConvertError(
        f"{entry} is a StyleGAN3 (alias-free, T/R) generator; only StyleGAN2 "
        "generators can take PadInv's padding space")
  if "mapping.embed.weight" in sd or int(kw.get("c_dim", 0) or 0) > 0:
    raise ConvertError(
        f"{entry} is a conditional generator (c_dim="
        f"{kw.get('c_dim')}); only unconditional StyleGAN2 is supported")
  if int(kw.get("img_channels", 3)) != 3:
    raise ConvertError(f"{entry} makes {kw.get('img_channels')}-channel "
                       "images; only RGB generators are supported")
  arch = (kw.get("synthesis_kwargs") or {}).get("architecture", "skip")
  if arch != "skip":
    raise ConvertError(f"{entry} uses the '{arch}' synthesis architecture; "
                       "only 'skip' (config-F) is supported")


def config_from_weights(sd: dict) -> dict:
  """Architecture read from weight shapes (when _init_kwargs is absent)."""
  res = {int(m.group(1)): sd[k].shape[0] for k in sd
         for m in [re.match(r"synthesis\.b(\d+)\.conv1\.weight$", k)] if m}
  fcs = [int(m.group(1)) for k in sd
         for m in [re.match(r"mapping\.fc(\d+)\.weight$", k)] if m]
  if not res or not fcs:
    raise ConvertError("cannot find synthesis.b*.conv1 / mapping.fc* weights:"
                       " not an NVIDIA StyleGAN2 generator")
  try:
    base, cmax = gt.infer_channel_base_max(res)
  except ValueError as e:
    raise ConvertError(str(e)) from None
  return dict(resolution=max(res), z_dim=sd["mapping.fc0.weight"].shape[1],
              w_dim=sd[f"mapping.fc{max(fcs)}.weight"].shape[0],
              mapping_layers=max(fcs) + 1, channel_base=base,
              channel_max=cmax, conv_clamp=None)


def config_from_kwargs(kw: dict, sd: dict) -> dict:
  """Architecture from _init_kwargs, NVIDIA's defaults where a key is absent."""
  if "img_resolution" not in kw:
    return config_from_weights(sd)
  syn = dict(kw.get("synthesis_kwargs") or {})
  mp = dict(kw.get("mapping_kwargs") or {})
  lf = mp.get("layer_features")
  if lf is not None and int(lf) != int(kw["w_dim"]):
    raise ConvertError(f"mapping layer_features={lf} differs from w_dim="
                       f"{kw['w_dim']}: not supported")
  return dict(resolution=int(kw["img_resolution"]), z_dim=int(kw["z_dim"]),
              w_dim=int(kw["w_dim"]),
              mapping_layers=int(mp.get("num_layers", 8)),
              mapping_lr_mul=float(mp.get("lr_multiplier", 0.01)),
              channel_base=int(syn.get("channel_base", 32768)),
              channel_max=int(syn.get("channel_max", 512)),
              conv_clamp=syn.get("conv_clamp"))


def generator_rule(path: str) -> Optional[common.Src]:
  """Target path -> official NVIDIA key (+ layout change)."""
  if path == "buffers/mapping/w_avg":
    return common.Src("mapping.w_avg")
  m = re.match(r"params/mapping/(fc\d+)/(weight|bias)$", path)
  if m:
    t = common.dense_t if m.group(2) == "weight" else common.identity
    return common.Src(f"mapping.{m.group(1)}.{m.group(2)}", t)
  if path == "params/synthesis/const":
    return common.Src("synthesis.b4.const", common.chw_to_hwc)
  split = gt.split_synthesis_path(path)
  if split is None:
    return None
  role, res, _, rest = split
  pre = f"synthesis.b{res}.{role}."
  table = {"weight": ("weight", common.oihw_to_hwio),
           "bias": ("bias", common.identity),
           "noise_strength": ("noise_strength", common.identity),
           "noise_const": ("noise_const", common.identity),
           "affine/affine/weight": ("affine.weight", common.dense_t),
           "affine/affine/bias": ("affine.bias", common.identity)}
  if rest not in table:
    return None
  key, t = table[rest]
  return common.Src(pre + key, t)


def convert_generator(sd: dict, cfg_fields: dict, what: str):
  """Official NVIDIA generator state dict -> (gen_cfg, variables)."""
  gen_cfg = gt.make_gen_config(**cfg_fields)
  variables = common.assign(
      gt.target_shapes(gen_cfg), sd, generator_rule, what=what,
      ignore=lambda k: k.endswith("resample_filter"),
      check={r"resample_filter$": common.check_fir})
  return gen_cfg, variables


def convert_discriminator(net, entry: str) -> common.Converted:
  """An NVIDIA D -> a "discriminator" part directory (for training)."""
  # pylint: disable=import-outside-toplevel
  from padinv_jax.models import discriminator as d_lib
  from padinv_jax.convert import d_keys
  sd = safe_pickle.module_state_dict(net)
  kw = safe_pickle.init_kwargs(net)
  if int(kw.get("c_dim", 0) or 0) > 0:
    raise ConvertError(f"{entry} is a conditional discriminator (c_dim="
                       f"{kw['c_dim']}); only unconditional ones are supported")
  if kw.get("architecture", "resnet") != "resnet" or int(
      kw.get("img_channels", 3)) != 3:
    raise ConvertError(f"{entry}: only RGB 'resnet' discriminators are "
                       f"supported (architecture {kw.get('architecture')!r})")
  epi = dict(kw.get("epilogue_kwargs") or {})
  if "img_resolution" in kw:
    res = int(kw["img_resolution"])
    base = int(kw.get("channel_base", 32768))
    cmax = int(kw.get("channel_max", 512))
  else:
    blocks = {int(m.group(1)): sd[k].shape[0] for k in sd
              for m in [re.match(r"b(\d+)\.conv0\.weight$", k)] if m}
    if not blocks:
      raise ConvertError(f"{entry} has no b*.conv0 weights: not a StyleGAN2 "
                         "discriminator")
    res = max(blocks)
    try:
      base, cmax = gt.infer_channel_base_max(blocks)
    except ValueError as e:
      raise ConvertError(f"{entry}: {e}") from None
  cfg = dict(resolution=res, channel_base=base, channel_max=cmax,
             conv_clamp=kw.get("conv_clamp"),
             mbstd_group_size=int(epi.get("mbstd_group_size", 4) or 4),
             mbstd_num_channels=int(epi.get("mbstd_num_channels", 1)))
  try:
    params = d_keys.discriminator_from_nvidia(
        sd, d_lib.discriminator_config(**cfg))
  except ValueError as e:
    raise ConvertError(f"{entry}: {' '.join(str(e).split())}") from None
  desc = (f"{NAME}, entry {entry}: StyleGAN2 discriminator, {res} px, "
          f"channels {base}/{cmax}, minibatch-stddev group "
          f"{cfg['mbstd_group_size']}")
  return common.Converted("discriminator", cfg, params, desc)


def convert(obj, fmt: str = "nvidia", entry: Optional[str] = None,
            explicit: bool = False) -> common.Converted:
  """An NVIDIA pickle -> a generator-only model.

  Args:
    obj: the unpickled top-level dict.
    fmt: "nvidia".
    entry: "G_ema" (default), "G", or "D" (written as a discriminator part
      directory for training). Legacy TF
      pickles (G, D, Gs) are handled by nvidia_tf (G_ema means Gs).
    explicit: the user named the format (unused: the layout is unambiguous).

  Returns:
    common.Converted of kind "model".
  """
  del fmt, explicit
  if nvidia_tf.detect(obj):
    return nvidia_tf.convert(obj, entry)
  if not detect(obj):
    raise ConvertError(f"not an {NAME}: expected a dict with G / G_ema "
                       "networks stored by torch_utils.persistence")
  entry = entry or "G_ema"
  if entry not in obj:
    raise ConvertError(f"the pickle has no entry {entry!r} (it has "
                       f"{sorted(map(str, obj))}); pick one with --entry")
  net = obj[entry]
  if not isinstance(net, safe_pickle.PersistentStandIn):
    raise ConvertError(f"entry {entry!r} is not an NVIDIA network")
  if net.class_name == "Discriminator":
    return convert_discriminator(net, entry)
  if net.class_name != "Generator":
    raise ConvertError(f"entry {entry!r} is a {net.class_name}, not a "
                       "Generator; pick G_ema or G with --entry")
  sd = safe_pickle.module_state_dict(net)
  kw = safe_pickle.init_kwargs(net)
  _refuse_unsupported(sd, kw, entry)
  fields = config_from_kwargs(kw, sd)
  gen_cfg, variables = convert_generator(sd, fields, f"{entry}")
  desc = (f"{NAME}, entry {entry}: {gen_cfg.resolution} px, z {gen_cfg.z_dim},"
          f" w {gen_cfg.w_dim}, {gen_cfg.mapping_layers} mapping layers, "
          f"channels {gen_cfg.channel_base}/{gen_cfg.channel_max}, conv_clamp "
          f"{gen_cfg.conv_clamp}, num_ws "
          f"{config_lib.num_ws(gen_cfg)}")
  notes = [f"other entries not converted: "
           f"{sorted(k for k in map(str, obj) if k != entry)}"]
  fp16 = int((kw.get("synthesis_kwargs") or {}).get("num_fp16_res", 0) or 0)
  if fp16:
    notes.append(f"num_fp16_res={fp16}: the original ran its top {fp16} "
                 "resolutions in float16 on GPU; this port computes in "
                 "float32, so outputs differ slightly from theirs")
  return common.Converted(
      "model", common.generator_model_config(gen_cfg),
      {"generator": variables}, desc, notes=notes)
