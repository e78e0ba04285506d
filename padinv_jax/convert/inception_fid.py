"""pytorch-fid's FID Inception weights (pt_inception-2015-12-05-6726825d.pth).

A plain state dict with torchvision Inception3 key names ({block}.conv.weight,
{block}.bn.{weight, bias, running_mean, running_var}, fc.* with 1008 classes).
It becomes an "inception" part directory (padinv_jax.models.inception):

  padinv-convert pt_inception-2015-12-05-6726825d.pth weights/inception

torchvision's ImageNet Inception-v3 has the same blocks but other weights
(1000 classes, AuxLogits): FIDs made with it are not comparable with any
published FID, so it is refused by name.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from padinv_jax.convert import common
from padinv_jax.convert.errors import ConvertError

FID_FILE = "pt_inception-2015-12-05-6726825d.pth"
_BN = ("weight", "bias", "running_mean", "running_var")


def _as_sd(obj) -> Optional[dict]:
  if isinstance(obj, dict) and obj and all(
      isinstance(k, str) and isinstance(v, np.ndarray) for k, v in obj.items()):
    return obj
  return None


def detect(obj) -> Optional[str]:
  sd = _as_sd(obj)
  if sd and "Mixed_7c.branch_pool.conv.weight" in sd and (
      "Conv2d_1a_3x3.conv.weight" in sd):
    return "inception"
  return None


def convert(obj, fmt: str = "inception", entry: Optional[str] = None,
            explicit: bool = False) -> common.Converted:
  """The FID Inception state dict -> the "inception" part's variables."""
  # pylint: disable=import-outside-toplevel
  from padinv_jax.models import inception
  del fmt, entry, explicit
  sd = _as_sd(obj)
  if sd is None or not detect(sd):
    raise ConvertError("not an Inception-v3 state dict (expected "
                       "Conv2d_1a_3x3.* ... Mixed_7c.* tensors)")
  if any(k.startswith("AuxLogits.") for k in sd) or (
      "fc.weight" in sd and sd["fc.weight"].shape[0] != 1008):
    raise ConvertError(
        "this is torchvision's ImageNet Inception-v3 (AuxLogits / 1000 "
        f"classes), not the FID Inception: FIDs from it are not comparable "
        f"with published ones; convert {FID_FILE} (pytorch-fid's release)")
  variables, used, wrong = {}, set(), []
  for name, cin, cout, kh, kw in inception.conv_table():
    node = variables
    for part in name.split("."):
      node = node.setdefault(part, {})
    want = {"conv": {"weight": (cout, cin, kh, kw)},
            "bn": {k: (cout,) for k in _BN}}
    for sub, leaves in want.items():
      node[sub] = {}
      for leaf, shape in leaves.items():
        key = f"{name}.{sub}.{leaf}"
        if key not in sd:
          wrong.append(f"missing {key}")
          continue
        v = np.asarray(sd[key], np.float32)
        if v.shape != shape:
          wrong.append(f"{key}: expected {shape}, found {v.shape}")
        node[sub][leaf] = v
        used.add(key)
  ignored = {k for k in sd if k.startswith("fc.")
             or k.endswith(".num_batches_tracked")}
  unexpected = sorted(set(sd) - used - ignored)
  wrong += [f"unexpected {k}" for k in unexpected]
  if wrong:
    more = f" (and {len(wrong) - 5} more)" if len(wrong) > 5 else ""
    raise ConvertError(f"FID Inception: {'; '.join(wrong[:5])}{more}")
  return common.Converted(
      "inception", {"net": "fid_inception_v3"}, variables,
      "pytorch-fid FID Inception-v3 (2048-d pool features)",
      notes=["fc.* (the 1008-class logits) is not used for FID"])
