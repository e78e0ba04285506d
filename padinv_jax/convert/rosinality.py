"""rosinality stylegan2-pytorch generators ({'g_ema', 'latent_avg'}).

As used by pSp, e4e and ReStyle. A pure rename / reshape of NVIDIA's layout
(no flips; same equalised-lr and +1 style bias conventions):
  style.{1..n_mlp}.{weight, bias}           -> mapping/fc{i-1}
  input.input [1, C, 4, 4]                  -> synthesis/const
  conv1.*                                   -> layer0
  convs.{j}.* (even j: up-sampling conv)    -> layer{j+1}
  to_rgb1.*, to_rgbs.{k}.*                  -> torgb0, torgb{k+1}
  noises.noise_{i} [1, 1, r, r]             -> layer{i}/noise_const
  StyledConv: conv.weight [1, O, I, 3, 3], conv.modulation.{weight, bias},
              noise.weight [1] (the noise strength), activate.bias [O]
  ToRGB: conv.weight [1, 3, I, 1, 1], conv.modulation.*, bias [1, 3, 1, 1]
Blur / up-sampling kernels (``*.kernel``) are [1,3,3,1] FIRs times 4 (the
up-sampling gain) and are checked, not converted. ``latent_avg`` becomes the
generator's w_avg (truncation centre).
"""

from __future__ import annotations

import re
from typing import Optional

import numpy as np

from padinv_jax.convert import common
from padinv_jax.convert import generator_target as gt
from padinv_jax.convert.errors import ConvertError

NAME = "rosinality stylegan2-pytorch checkpoint"


def _style_based_gan(obj) -> bool:
  """rosinality/style-based-gan-pytorch (StyleGAN1): train_step-*.model."""
  if not isinstance(obj, dict):
    return False
  nets = [obj.get(k) for k in ("g_running", "generator")] + [obj]
  return any(isinstance(n, dict) and any(
      str(k).startswith(("generator.progression.", "progression."))
      for k in n) for n in nets)


STYLE_BASED_GAN_REFUSED = (
    "rosinality style-based-gan-pytorch (StyleGAN1) checkpoint: not "
    "supported. Its network is not NVIDIA's: the up-sampling conv's bias is "
    "added before the blur (edges get 12/16 of it, corners 9/16, and "
    "instance norm spreads that everywhere), instance norm uses eps 1e-5, "
    "and each block shares one style and one noise map between its two "
    "convs, so no exact conversion to NVIDIA's G_style exists. Convert "
    "NVIDIA's TF pickle or a Hammer StyleGAN1 checkpoint instead")


def detect(obj) -> Optional[str]:
  if _style_based_gan(obj):
    return "rosinality"
  if (isinstance(obj, dict) and "state_dict" not in obj
      and isinstance(obj.get("g_ema"), dict)
      and "input.input" in obj["g_ema"]):
    return "rosinality"
  return None


def check_kernel(key: str, value) -> None:
  """rosinality's blur / up-sampling kernels: outer([1,3,3,1]) / 64 x 4."""
  common.check_fir(key, np.asarray(value, np.float64) / 4.0)


def _sq(shape_from):
  def f(a):
    return np.reshape(a, shape_from(a))
  return f


def _conv_w(a):  # [1, O, I, k, k] -> [k, k, I, O]
  return common.oihw_to_hwio(a[0]) if a.ndim == 5 else common.oihw_to_hwio(a)


def rule(path: str) -> Optional[common.Src]:
  """Target path -> rosinality key (+ layout change)."""
  if path == "buffers/mapping/w_avg":
    return common.Src("latent_avg")
  m = re.match(r"params/mapping/fc(\d+)/(weight|bias)$", path)
  if m:
    t = common.dense_t if m.group(2) == "weight" else common.identity
    return common.Src(f"style.{int(m.group(1)) + 1}.{m.group(2)}", t)
  if path == "params/synthesis/const":
    return common.Src("input.input", lambda a: common.chw_to_hwc(a[0]))
  split = gt.split_synthesis_path(path)
  if split is None:
    return None
  role, _, idx, rest = split
  if role == "torgb":
    pre = "to_rgb1." if idx == 0 else f"to_rgbs.{idx - 1}."
    table = {"weight": ("conv.weight", _conv_w),
             "bias": ("bias", lambda a: np.reshape(a, (-1,))),
             "affine/affine/weight": ("conv.modulation.weight", common.dense_t),
             "affine/affine/bias": ("conv.modulation.bias", common.identity)}
  else:
    pre = "conv1." if idx == 0 else f"convs.{idx - 1}."
    table = {"weight": ("conv.weight", _conv_w),
             "bias": ("activate.bias", common.identity),
             "noise_strength": ("noise.weight", lambda a: np.reshape(a, ())),
             "affine/affine/weight": ("conv.modulation.weight", common.dense_t),
             "affine/affine/bias": ("conv.modulation.bias", common.identity)}
    if rest == "noise_const":
      return common.Src(f"noises.noise_{idx}", lambda a: a[0, 0])
  if rest not in table:
    return None
  key, t = table[rest]
  return common.Src(pre + key, t)


def config_from_weights(sd: dict, lr_mul: float = 0.01) -> dict:
  """Architecture from shapes: size, style_dim, n_mlp, channel multiplier."""
  if "input.input" not in sd or "style.1.weight" not in sd:
    raise ConvertError("no input.input / style.1.weight: not a rosinality "
                       "StyleGAN2 generator")
  n_mlp = len([k for k in sd if re.match(r"style\.\d+\.weight$", k)])
  n_rgbs = len([k for k in sd if re.match(r"to_rgbs\.\d+\.conv\.weight$", k)])
  resolution = 4 * 2 ** n_rgbs
  channels = {4: sd["input.input"].shape[1]}
  for j in range(n_rgbs):
    key = f"convs.{2 * j + 1}.conv.weight"
    if key not in sd:
      raise ConvertError(f"{key} is missing: the generator is incomplete")
    channels[8 * 2 ** j] = sd[key].shape[1]
  try:
    base, cmax = gt.infer_channel_base_max(channels)
  except ValueError as e:
    raise ConvertError(str(e)) from None
  w_dim = sd["style.1.weight"].shape[0]
  return dict(resolution=resolution, z_dim=sd["style.1.weight"].shape[1],
              w_dim=w_dim, mapping_layers=n_mlp, channel_base=base,
              channel_max=cmax, conv_clamp=None, mapping_lr_mul=lr_mul)


def ignore(key: str) -> bool:
  return key.endswith(".kernel")


def convert_generator(sd: dict, what: str, latent_avg=None, pad_layer_num=None):
  """rosinality state dict (+ latent_avg) -> (gen_cfg, variables, notes)."""
  sd = dict(sd)
  notes = []
  fields = config_from_weights(sd)
  gen_cfg = gt.make_gen_config(**fields, pad_layer_num=pad_layer_num)
  if latent_avg is not None:
    la = np.asarray(latent_avg, np.float32)
    if la.ndim == 2:  # pSp stores [n_styles, w_dim]: rows are equal
      if not np.allclose(la, la[:1], atol=1e-6):
        notes.append("latent_avg rows differ; using the first as w_avg")
      la = la[0]
    sd["latent_avg"] = la
  else:
    sd["latent_avg"] = None
  target = gt.target_shapes(gen_cfg)
  if sd["latent_avg"] is None:
    sd["latent_avg"] = np.zeros(target["buffers"]["mapping"]["w_avg"].shape,
                                np.float32)
    notes.append("no latent_avg in the file: w_avg estimated as the mean of "
                 "4096 mapped z (seed 0), as rosinality's mean_latent does")
    estimate = True
  else:
    estimate = False
  variables = common.assign(target, sd, rule, what=what, ignore=ignore,
                            check={r"\.kernel$": check_kernel})
  if estimate:
    variables["buffers"]["mapping"]["w_avg"] = mean_latent(variables, gen_cfg)
  return gen_cfg, variables, notes


def mean_latent(variables, gen_cfg, n: int = 4096, seed: int = 0):
  import jax  # pylint: disable=import-outside-toplevel
  from padinv_jax.models import functional  # pylint: disable=import-outside-toplevel
  z = jax.random.normal(jax.random.key(seed), (n, gen_cfg.z_dim))
  ws = functional.mapping(variables, z, config=gen_cfg)
  return np.asarray(ws[:, 0].mean(axis=0), np.float32)


def convert(obj, fmt: str = "rosinality", entry: Optional[str] = None,
            explicit: bool = False) -> common.Converted:
  """A rosinality checkpoint -> a generator-only model (g_ema by default)."""
  del fmt, explicit
  if _style_based_gan(obj):
    raise ConvertError(STYLE_BASED_GAN_REFUSED)
  entry = entry or "g_ema"
  if not isinstance(obj, dict) or entry not in obj:
    found = sorted(map(str, obj)) if isinstance(obj, dict) else type(obj)
    raise ConvertError(f"not a {NAME} with entry {entry!r} (found {found})")
  sd = common.as_state_dict(obj[entry], entry)
  gen_cfg, variables, notes = convert_generator(sd, entry,
                                                obj.get("latent_avg"))
  desc = (f"{NAME}, entry {entry}: {gen_cfg.resolution} px, style dim "
          f"{gen_cfg.w_dim}, {gen_cfg.mapping_layers} mapping layers, channels "
          f"{gen_cfg.channel_base}/{gen_cfg.channel_max}, latent_avg "
          f"{'kept as w_avg' if obj.get('latent_avg') is not None else 'absent'}")
  return common.Converted("model", common.generator_model_config(gen_cfg),
                          {"generator": variables}, desc, notes)
