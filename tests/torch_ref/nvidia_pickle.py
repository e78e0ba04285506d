"""A test-only restricted reader for stylegan2-ada-pytorch network pickles.

NVIDIA pickles store each network through
``torch_utils.persistence._reconstruct_persistent_obj(meta)``, which a normal
unpickle would answer by EXECUTING ``meta['module_src']``. Here that global is
a stand-in that returns ``meta['state']`` (the module's __dict__) untouched,
and only the globals the golden README lists are allowed; anything else is
refused by name. Tensor storages are read with ``torch.load(...,
weights_only=True)``. The real loader lives in padinv_jax/convert/; this copy
only lets the generator tests read the golden pickle on their own.
"""

from __future__ import annotations

import collections
import io
import pickle

import numpy as np
import torch


class _EasyDict(dict):
  """Stand-in for dnnlib.util.EasyDict (a dict with attribute access)."""


def _persistent_state(meta):
  return meta["state"]


def _load_storage(data: bytes):
  return torch.load(io.BytesIO(data), weights_only=True)


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"):
        _persistent_state,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch.storage", "_load_from_bytes"): _load_storage,
    ("numpy._core.multiarray", "scalar"): np._core.multiarray.scalar,
    ("numpy.core.multiarray", "scalar"): np._core.multiarray.scalar,
    ("numpy", "dtype"): np.dtype,
}


class _Unpickler(pickle.Unpickler):

  def find_class(self, module, name):
    try:
      return _ALLOWED[(module, name)]
    except KeyError:
      raise pickle.UnpicklingError(
          f"global {module}.{name} is not allowed in a network pickle "
          f"(allowed: {sorted('.'.join(k) for k in _ALLOWED)})") from None


def _flatten(state, prefix, out):
  for k, v in state.get("_parameters", {}).items():
    if v is not None:
      out[prefix + k] = v.detach().numpy()
  for k, v in state.get("_buffers", {}).items():
    if v is not None:
      out[prefix + k] = v.detach().numpy()
  for k, sub in state.get("_modules", {}).items():
    if sub is not None:
      _flatten(sub, f"{prefix}{k}.", out)
  return out


def load_network(path: str, key: str = "G_ema"):
  """Read one network of an NVIDIA pickle without running its code.

  Args:
    path: the .pkl file.
    key: "G_ema", "G" or "D".

  Returns:
    (state_dict, init_kwargs): {official key: float32 numpy array} and the
    network's constructor kwargs as a plain dict.
  """
  with open(path, "rb") as f:
    top = _Unpickler(f).load()
  net = top[key]
  return _flatten(net, "", {}), dict(net.get("_init_kwargs", {}))
