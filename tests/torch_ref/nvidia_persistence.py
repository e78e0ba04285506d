"""Write NVIDIA-layout network pickles in tests, without NVIDIA's code.

stylegan2-ada-pytorch pickles every network as
``torch_utils.persistence._reconstruct_persistent_obj(meta)`` with meta =
{type: 'class', version: 6, module_src, class_name, state}, where state is
the module's __dict__ (_parameters, _buffers, _modules, _init_kwargs, ...)
and sub-networks are persistent objects themselves. ``dumps`` reproduces
that layout by registering a stand-in ``torch_utils.persistence`` module in
sys.modules only while pickling (the stand-in is never called).
"""

from __future__ import annotations

import collections
import pickle
import sys
from typing import Mapping, Optional

import torch


def _reconstruct_persistent_obj(meta):  # what the pickle names; never run here
  raise AssertionError("the stand-in persistence hook was called")


_reconstruct_persistent_obj.__module__ = "torch_utils.persistence"


class Persistent:
  """One persistent network: class name, its __dict__ and module source."""

  def __init__(self, class_name: str, state: dict, module_src: str = "# none\n"):
    self.class_name, self.state, self.module_src = class_name, state, module_src

  def __reduce__(self):
    meta = dict(type="class", version=6, module_src=self.module_src,
                class_name=self.class_name, state=self.state)
    return _reconstruct_persistent_obj, (meta,)


def module_state(params: Mapping[str, torch.Tensor],
                 buffers: Mapping[str, torch.Tensor],
                 modules: Optional[Mapping[str, object]] = None,
                 init_kwargs: Optional[dict] = None) -> dict:
  """An nn.Module-like __dict__ with the fields NVIDIA's modules carry."""
  state = {"training": False,
           "_parameters": collections.OrderedDict(
               (k, torch.nn.Parameter(v, requires_grad=False))
               for k, v in params.items()),
           "_buffers": collections.OrderedDict(buffers),
           "_non_persistent_buffers_set": set(),
           "_modules": collections.OrderedDict(modules or {})}
  if init_kwargs is not None:
    state["_init_args"] = ()
    state["_init_kwargs"] = dict(init_kwargs)
  return state


def tree_from_state_dict(sd: Mapping[str, torch.Tensor], class_names=None,
                         init_kwargs=None, module_src: str = "# none\n"):
  """Nest a flat {dotted key: tensor} into persistent modules.

  Args:
    sd: official keys, e.g. 'synthesis.b4.conv1.weight'.
    class_names: {module path ('' = root): class name}; default 'Module'.
    init_kwargs: constructor kwargs recorded on the root.
    module_src: the source embedded in every persistent object.

  Returns:
    The root Persistent object.
  """
  class_names = class_names or {}
  tree: dict = {}
  for key, v in sd.items():
    *mods, leaf = key.split(".")
    node = tree
    for m in mods:
      node = node.setdefault(m, {})
    node[leaf] = v

  def build(node, path):
    subs = {k: build(v, f"{path}.{k}" if path else k)
            for k, v in node.items() if isinstance(v, dict)}
    params = {k: v for k, v in node.items()
              if not isinstance(v, dict) and not _is_buffer(k)}
    buffers = {k: v for k, v in node.items()
               if not isinstance(v, dict) and _is_buffer(k)}
    state = module_state(params, buffers, subs,
                         init_kwargs if path == "" else None)
    return Persistent(class_names.get(path, "Module"), state, module_src)

  return build(tree, "")


def _is_buffer(name: str) -> bool:
  return name in ("w_avg", "noise_const", "resample_filter")


def dumps(obj) -> bytes:
  """pickle.dumps with torch_utils.persistence importable as a stand-in."""
  mod = type(sys)("torch_utils.persistence")
  mod._reconstruct_persistent_obj = _reconstruct_persistent_obj
  names = ("torch_utils", "torch_utils.persistence")
  saved = {k: sys.modules.get(k) for k in names}
  sys.modules["torch_utils"] = type(sys)("torch_utils")
  sys.modules["torch_utils.persistence"] = mod
  try:
    return pickle.dumps(obj, protocol=4)
  finally:
    for k, v in saved.items():
      if v is None:
        sys.modules.pop(k, None)
      else:
        sys.modules[k] = v
