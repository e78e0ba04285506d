"""NVIDIA's legacy TensorFlow StyleGAN2 pickles (ffhq.pkl & co.), without TF.

Such a file is a tuple (G, D, Gs) of ``dnnlib.tflib.network.Network``
objects; the restricted unpickler turns each into an inert StandIn whose
state holds static_kwargs, components (mapping, synthesis) and
``variables``: a list of (name, numpy array). The embedded build source is
never run. Variables (Gs by default), in TF's layouts:
  dlatent_avg; mapping/Dense{i}/{weight [in, out], bias}
  synthesis/4x4/Const/const [1, C, 4, 4]
  synthesis/{r}x{r}/{Conv, Conv0_up, Conv1, ToRGB}/{weight [kh, kw, I, O],
      bias, mod_weight [w_dim, I], mod_bias, noise_strength}
  synthesis/noise{i} [1, 1, r, r]
Differences from the PyTorch layout (NVIDIA's own legacy.py applies them):
the up-sampling conv weight is stored spatially flipped and the style bias
without its +1. TF already stores conv kernels HWIO and dense [in, out], as
padinv_jax does.
"""

from __future__ import annotations

import re
from typing import Optional

import numpy as np

from padinv_jax.models import config as config_lib
from padinv_jax.convert import common
from padinv_jax.convert import generator_target as gt
from padinv_jax.convert import safe_pickle
from padinv_jax.convert.errors import ConvertError

NAME = "NVIDIA legacy TensorFlow StyleGAN2 pickle"
_NETWORK = "dnnlib.tflib.network.Network"
ENTRIES = {"G_ema": 2, "Gs": 2, "G": 0}


def _is_network(obj) -> bool:
  return isinstance(obj, safe_pickle.StandIn) and obj.qualname() == _NETWORK


def detect(obj) -> Optional[str]:
  if isinstance(obj, tuple) and len(obj) == 3 and all(map(_is_network, obj)):
    return "nvidia"
  return None


def tf_params(net) -> dict[str, np.ndarray]:
  """{'mapping/Dense0/weight': array, ...} over a Network and its components."""
  out = {}

  def walk(prefix, node):
    state = node.state
    for item in state.get("variables") or []:
      if not (isinstance(item, tuple) and len(item) == 2
              and isinstance(item[1], np.ndarray)):
        raise ConvertError("a TF network variable that is not (name, array)")
      out[prefix + str(item[0])] = item[1]
    for name, comp in (state.get("components") or {}).items():
      if not _is_network(comp):
        raise ConvertError(f"TF component {name!r} is not a Network")
      walk(f"{prefix}{name}/", comp)

  walk("", net)
  return out


_KNOWN = {"latent_size", "label_size", "dlatent_size", "resolution",
          "num_channels", "mapping_layers", "mapping_fmaps", "mapping_lrmul",
          "fmap_base", "fmap_max", "num_fp16_res", "conv_clamp",
          "architecture", "resample_kernel", "use_noise", "nonlinearity",
          "mapping_nonlinearity", "truncation_psi", "truncation_cutoff",
          "style_mixing_prob", "structure", "w_avg_beta", "label_fmaps",
          "fmap_decay", "fmap_min", "randomize_noise", "dtype", "is_template_graph",
          "components", "fused_modconv", "func_name"}


def config_fields(kw: dict, params: dict) -> dict:
  """Architecture from static_kwargs, checked against the variable shapes."""
  bad = {"label_size": 0, "num_channels": 3, "architecture": "skip",
         "nonlinearity": "lrelu", "mapping_nonlinearity": "lrelu",
         "fmap_decay": 1.0, "use_noise": True}
  wrong = [f"{k}={kw[k]!r}" for k, v in bad.items()
           if k in kw and kw[k] is not None and kw[k] != v]
  rk = kw.get("resample_kernel")
  if rk is not None and list(rk) != [1, 3, 3, 1]:
    wrong.append(f"resample_kernel={rk!r}")
  if wrong:
    raise ConvertError(f"{NAME} with unsupported options: {', '.join(wrong)}")
  unknown = sorted(set(kw) - _KNOWN)
  if unknown:
    raise ConvertError(f"{NAME} with unknown static_kwargs {unknown}; not a "
                       "StyleGAN2 generator this port knows")
  dense = [int(m.group(1)) for k in params
           for m in [re.match(r"mapping/Dense(\d+)/weight$", k)] if m]
  res = [int(m.group(1)) for k in params
         for m in [re.match(r"synthesis/(\d+)x\d+/ToRGB/weight$", k)] if m]
  if not dense or not res or "synthesis/4x4/Const/const" not in params:
    raise ConvertError(f"{NAME}: no mapping/Dense*, synthesis/*/ToRGB or "
                       "4x4/Const variables (a ToRGB_lod* 'orig' network?)")
  channels = {4: params["synthesis/4x4/Const/const"].shape[1]}
  for r in res:
    if r > 4:
      channels[r] = params[f"synthesis/{r}x{r}/Conv1/weight"].shape[-1]
  try:
    base, cmax = gt.infer_channel_base_max(channels)
  except ValueError as e:
    raise ConvertError(f"{NAME}: {e}") from None
  w_dim = params[f"mapping/Dense{max(dense)}/weight"].shape[1]
  fields = dict(resolution=max(res),
                z_dim=params["mapping/Dense0/weight"].shape[0], w_dim=w_dim,
                mapping_layers=max(dense) + 1, channel_base=base,
                channel_max=cmax, conv_clamp=kw.get("conv_clamp"),
                mapping_lr_mul=float(kw.get("mapping_lrmul") or 0.01))
  said = dict(resolution=kw.get("resolution"), z_dim=kw.get("latent_size"),
              w_dim=kw.get("dlatent_size"),
              mapping_layers=kw.get("mapping_layers"))
  diff = [f"{k}: static_kwargs {v}, weights {fields[k]}"
          for k, v in said.items() if v is not None and int(v) != fields[k]]
  if kw.get("mapping_fmaps") not in (None, w_dim):
    diff.append(f"mapping_fmaps {kw['mapping_fmaps']} != w_dim {w_dim}")
  if diff:
    raise ConvertError(f"{NAME}: static_kwargs disagree with the weights "
                       f"({'; '.join(diff)})")
  return fields


def _layer_rule(path: str) -> Optional[common.Src]:
  split = gt.split_synthesis_path(path)
  if split is None:
    return None
  role, r, idx, rest = split
  scope = {"conv0": "Conv0_up", "conv1": "Conv" if r == 4 else "Conv1",
           "torgb": "ToRGB"}[role]
  pre = f"synthesis/{r}x{r}/{scope}/"
  if rest == "noise_const":
    return common.Src(f"synthesis/noise{idx}", lambda a: a[0, 0])
  if rest == "weight":
    # The up-sampling conv kernel is stored flipped in TF.
    flip = (lambda a: a[::-1, ::-1]) if role == "conv0" else common.identity
    return common.Src(pre + "weight", flip)
  table = {"bias": ("bias", common.identity),
           "noise_strength": ("noise_strength", common.identity),
           "affine/affine/weight": ("mod_weight", common.identity),
           "affine/affine/bias": ("mod_bias", lambda a: a + 1.0)}
  if rest not in table:
    return None
  key, t = table[rest]
  return common.Src(pre + key, t)


def rule(path: str) -> Optional[common.Src]:
  """Target path -> TF variable name (+ layout change)."""
  if path == "buffers/mapping/w_avg":
    return common.Src("dlatent_avg")
  m = re.match(r"params/mapping/fc(\d+)/(weight|bias)$", path)
  if m:
    return common.Src(f"mapping/Dense{m.group(1)}/{m.group(2)}")
  if path == "params/synthesis/const":
    return common.Src("synthesis/4x4/Const/const",
                      lambda a: common.chw_to_hwc(a[0]))
  return _layer_rule(path)


def convert(obj, entry: Optional[str] = None) -> common.Converted:
  """(G, D, Gs) -> a generator-only model from Gs (or G with --entry G)."""
  entry = entry or "G_ema"
  if entry not in ENTRIES:
    raise ConvertError(f"a TF pickle holds G, D and Gs; --entry must be one "
                       f"of {sorted(ENTRIES)}, got {entry!r}")
  net = obj[ENTRIES[entry]]
  state = net.state
  params = tf_params(net)
  if is_stylegan1(params):
    return convert_stylegan1(state, params, entry)
  if int(state.get("version", 0) or 0) < 4:
    raise ConvertError(f"{NAME} version {state.get('version')} is too old "
                       "and holds no StyleGAN1 G_style variables")
  kw = dict(state.get("static_kwargs") or {})
  fields = config_fields(kw, params)
  gen_cfg = gt.make_gen_config(**fields)
  ignore = common.any_match([r"(^|/)lod$", r"^mapping/.*LabelEmbed"])
  variables = common.assign(gt.target_shapes(gen_cfg), params, rule,
                            what=f"TF {state.get('name', entry)}",
                            ignore=ignore)
  desc = (f"{NAME}, network {state.get('name', '?')} ({entry}): "
          f"{gen_cfg.resolution} px, z {gen_cfg.z_dim}, w {gen_cfg.w_dim}, "
          f"channels {gen_cfg.channel_base}/{gen_cfg.channel_max}, num_ws "
          f"{config_lib.num_ws(gen_cfg)}")
  return common.Converted("model", common.generator_model_config(gen_cfg),
                          {"generator": variables}, desc,
                          notes=["the embedded TF build source was not run"])


# ----------------------------------------------------------------- StyleGAN1

SG1_NAME = "NVIDIA TensorFlow StyleGAN1 pickle"


def is_stylegan1(params) -> bool:
  """G_style variables: AdaIN StyleMod layers and a ToRGB per lod."""
  return ("synthesis/ToRGB_lod0/weight" in params and
          any(k.endswith("/StyleMod/weight") for k in params))


def stylegan1_fields(kw: dict, params: dict) -> dict:
  dense = [int(m.group(1)) for k in params
           for m in [re.match(r"mapping/Dense(\d+)/weight$", k)] if m]
  res = [int(m.group(1)) for k in params
         for m in [re.match(r"synthesis/(\d+)x\d+/Conv1/weight$", k)] if m]
  if not dense or "synthesis/4x4/Const/const" not in params:
    raise ConvertError(f"{SG1_NAME}: no mapping/Dense* or 4x4/Const")
  for k, want in (("label_size", 0), ("num_channels", 3),
                  ("structure", None), ("use_noise", True),
                  ("use_pixel_norm", False), ("use_instance_norm", True),
                  ("use_styles", True), ("nonlinearity", "lrelu")):
    v = kw.get(k)
    if v is not None and want is not None and v != want:
      raise ConvertError(f"{SG1_NAME} with unsupported option {k}={v!r}")
  channels = {4: params["synthesis/4x4/Const/const"].shape[1]}
  for r in res:
    channels[r] = params[f"synthesis/{r}x{r}/Conv1/weight"].shape[-1]
  try:
    base, cmax = gt.infer_channel_base_max(channels)
  except ValueError as e:
    raise ConvertError(f"{SG1_NAME}: {e}") from None
  resolution = max(res) if res else 4
  said = kw.get("resolution")
  if said is not None and int(said) != resolution:
    raise ConvertError(f"{SG1_NAME}: static_kwargs resolution {said} but "
                       f"weights up to {resolution} px")
  return dict(resolution=resolution,
              z_dim=params["mapping/Dense0/weight"].shape[0],
              w_dim=params[f"mapping/Dense{max(dense)}/weight"].shape[1],
              mapping_layers=max(dense) + 1, channel_base=base,
              channel_max=cmax, conv_clamp=None,
              mapping_lr_mul=float(kw.get("mapping_lrmul") or 0.01),
              family="stylegan1")


def convert_stylegan1(state, params, entry) -> common.Converted:
  # pylint: disable=import-outside-toplevel
  from padinv_jax.convert import stylegan1_keys
  kw = dict(state.get("static_kwargs") or {})
  gen_cfg = gt.make_gen_config(**stylegan1_fields(kw, params))
  variables = stylegan1_keys.convert_generator(
      params, gen_cfg, f"TF {state.get('name', entry)}")
  desc = (f"{SG1_NAME}, network {state.get('name', '?')} ({entry}): "
          f"{gen_cfg.resolution} px, z {gen_cfg.z_dim}, w {gen_cfg.w_dim}, "
          f"{gen_cfg.mapping_layers} mapping layers, channels "
          f"{gen_cfg.channel_base}/{gen_cfg.channel_max}")
  notes = ["the embedded TF build source was not run",
           "NVIDIA's inference defaults truncate (psi 0.7, cutoff 8): pass "
           "them explicitly; padinv_jax's mapping default psi 1 does not"]
  return common.Converted("model", common.generator_model_config(gen_cfg),
                          {"generator": variables}, desc, notes=notes)
