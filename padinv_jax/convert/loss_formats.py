"""Loss-network weight files: ArcFace IR-SE (ID loss) and LPIPS.

  ArcFace: TreB1eN's model_ir_se50.pth (input_layer, body.{k},
    output_layer.{0,3,4}), a plain state dict (a DataParallel 'module.'
    prefix is accepted).
  LPIPS: a torchvision AlexNet / VGG16 state dict (features.{i}) plus the
    lpips linear layers (lin{k}.model.1.weight), given as TRUNK+LIN, or one
    whole lpips.LPIPS state dict (net.slice*, lin*).
Both are written as part directories (padinv_jax.storage.part_dir) that the training
config points at. Key mappings: loss_keys (shared with the loss modules).
"""

from __future__ import annotations

import re
from typing import Optional

import numpy as np

from padinv_jax.convert import common
from padinv_jax.convert.errors import ConvertError


def _as_sd(obj) -> Optional[dict]:
  if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
    obj = obj["state_dict"]
  if isinstance(obj, dict) and obj and all(
      isinstance(k, str) and isinstance(v, np.ndarray) for k, v in obj.items()):
    return {k[len("module."):] if k.startswith("module.") else k: v
            for k, v in obj.items()}
  return None


def _is_arcface(sd) -> bool:
  return "input_layer.0.weight" in sd and "output_layer.3.weight" in sd


def _is_lpips_part(sd) -> bool:
  return any(re.match(r"(features\.\d+|net\.slice\d+\.\d+)\.weight$|"
                      r"lin\d\.model\.1\.weight$", k) for k in sd)


def detect(obj) -> Optional[str]:
  sd = _as_sd(obj)
  if sd is None:
    return None
  if _is_arcface(sd):
    return "arcface"
  if _is_lpips_part(sd):
    return "lpips"
  return None


def convert_arcface(obj) -> common.Converted:
  """model_ir_se50.pth -> an "arcface" part."""
  # pylint: disable=import-outside-toplevel
  from padinv_jax.models import irse
  from padinv_jax.convert import loss_keys
  from padinv_jax.losses import arcface
  sd = _as_sd(obj)
  if sd is None or not _is_arcface(sd):
    raise ConvertError("not an ArcFace IR-SE state dict (expected "
                       "input_layer.*, body.*, output_layer.* tensors)")
  units = len({int(m.group(1)) for k in sd
               for m in [re.match(r"body\.(\d+)\.", k)] if m})
  depth = [d for d, c in irse.UNIT_COUNTS.items() if sum(c) == units]
  if not depth:
    raise ConvertError(f"ArcFace body has {units} units: no IR-SE depth "
                       f"({dict(irse.UNIT_COUNTS)}) matches")
  try:
    variables = loss_keys.arcface_from_official(sd, depth[0])
    arch, input_size = arcface._arch_from_vars(variables)  # pylint: disable=protected-access
  except ValueError as e:
    raise ConvertError(f"ArcFace: {e}") from None
  cfg = dict(arch, input_size=input_size,
             stage_channels=list(arch["stage_channels"]))
  desc = (f"ArcFace IR-SE-{arch['depth']} ({input_size} px input, "
          f"{arch['embedding_dim']}-d embedding)")
  return common.Converted("arcface", cfg, variables, desc)


def _net_of(sd) -> str:
  convs = [k for k in sd if re.match(r"(features\.\d+|net\.slice\d+\.\d+)"
                                     r"\.weight$", k)]
  if len(convs) == 5:
    return "alex"
  if len(convs) == 13:
    return "vgg"
  raise ConvertError(f"the LPIPS trunk has {len(convs)} conv layers: neither "
                     "AlexNet (5) nor VGG16 (13)")


def convert_lpips(objs) -> common.Converted:
  """[trunk, lin] (or one whole LPIPS state dict) -> an "lpips" part."""
  from padinv_jax.convert import loss_keys  # pylint: disable=import-outside-toplevel
  sds = [_as_sd(o) for o in objs]
  if any(sd is None for sd in sds):
    raise ConvertError("LPIPS needs state dicts of tensors (TRUNK+LIN)")
  trunk = [sd for sd in sds if any(k.startswith(("features.", "net.slice"))
                                   for k in sd)]
  lin = [sd for sd in sds if any(re.match(r"(lin)?\d\.(model\.)?1\.weight$", k)
                                 for k in sd)]
  if len(trunk) != 1 or len(lin) != 1:
    raise ConvertError(
        "LPIPS needs one trunk (torchvision alexnet/vgg16 features.* or an "
        "LPIPS net.slice*) and one set of linear layers (lin{k}.model.1."
        "weight): give TRUNK.pth+LIN.pth, or one whole LPIPS state dict")
  net = _net_of(trunk[0])
  try:
    # Torchvision's classifier.* is not used by LPIPS; loss_keys skips it.
    variables = loss_keys.lpips_from_official(trunk[0], lin[0], net)
  except ValueError as e:
    raise ConvertError(f"LPIPS: {e}") from None
  desc = f"LPIPS v0.1 with a {'AlexNet' if net == 'alex' else 'VGG16'} trunk"
  return common.Converted("lpips", {"net": net}, variables, desc)


def convert(obj, fmt: str = "arcface", entry: Optional[str] = None,
            explicit: bool = False) -> common.Converted:
  del entry, explicit
  if fmt == "arcface":
    return convert_arcface(obj)
  return convert_lpips([obj])
