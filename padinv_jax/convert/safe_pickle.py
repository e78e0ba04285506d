"""THE restricted unpickler: the only way this project reads a pickle.

A pickle is a program: unpickling calls whatever callables the file names.
Weight files only need a handful (tensor and storage rebuilders, OrderedDict,
numpy scalars), so this unpickler runs two policies (DESIGN.md section 5):

(a) REDUCE / NEWOBJ / BUILD may only reach objects on an allow-list, each
    replaced by our own implementation that builds numpy arrays; anything
    else is refused, naming the global. Modules such as os, posix,
    subprocess, sys, importlib and builtins' eval / exec / getattr /
    __import__ are refused as soon as the file names them.
(b) Classes that real checkpoints instantiate with NEWOBJ + BUILD under
    non-weight entries (a PadInv training checkpoint's 'loss' holds whole
    nn.Modules: LPIPS, ArcFace, MSELoss) become inert ``StandIn`` objects
    that only record their state; their code is never imported or run.

NVIDIA's ``torch_utils.persistence._reconstruct_persistent_obj(meta)`` would
exec ``meta['module_src']``; here it becomes a ``PersistentStandIn`` that
keeps ``meta['state']`` and never looks at the source.

Nothing here imports torch: tensors come back as numpy arrays.
"""

from __future__ import annotations

import collections
import io
import pickle
from typing import Callable, Optional

import numpy as np

from padinv_jax.convert import pickle_objects as po
from padinv_jax.convert.errors import CorruptFileError, UnsafePickleError
# Re-exported: the types callers inspect.
from padinv_jax.convert.pickle_objects import (  # pylint: disable=unused-import
    EasyDict, PartialStandIn, PersistentStandIn, StandIn, Storage,
    StorageType, TorchDType, numpy_dtype)

# Module roots a weight file never needs; naming one is refused at once.
DENIED_ROOTS = frozenset("""
    os posix nt posixpath ntpath subprocess _posixsubprocess sys importlib
    imp zipimport pkgutil runpy code codeop pickle _pickle marshal dill
    cloudpickle joblib types shutil socket ssl pty ctypes multiprocessing
    threading _thread asyncio signal io _io pathlib tempfile glob fcntl
    resource webbrowser platform pdb inspect gc operator functools timeit
    http urllib ftplib smtplib telnetlib xmlrpc setuptools pip site
""".split())


def _refuse_call(func) -> UnsafePickleError:
  if isinstance(func, type) and issubclass(func, StandIn):
    name = func.qualname()
  else:
    name = getattr(func, "__qualname__", repr(func))
  return UnsafePickleError(
      f"the pickle asks to call {name}, which is not on the allow-list of "
      "functions a weight file may call (tensor rebuilders, OrderedDict, "
      "numpy scalars); refused. If you trust the file, load it with PyTorch "
      "yourself and save a plain state_dict")


class SafeUnpickler(pickle._Unpickler):  # pylint: disable=protected-access
  """The restricted unpickler (pure-Python, so every opcode is ours).

  Args:
    file: a binary file object.
    persistent_load: callable for persistent ids (torch storages), or None
      to refuse them.
    load_from_bytes: callable for storages pickled as bytes (a legacy torch
      file each, in NVIDIA pickles), or None to refuse them.
  """

  dispatch = dict(pickle._Unpickler.dispatch)  # pylint: disable=protected-access

  def __init__(self, file, persistent_load: Optional[Callable] = None,
               load_from_bytes: Optional[Callable] = None):
    super().__init__(file, encoding="latin1")
    self._pid_loader = persistent_load
    self._bytes_loader = load_from_bytes
    self._standins: dict[tuple[str, str], type] = {}

  # -- globals
  def find_class(self, module, name):
    if not isinstance(module, str) or not isinstance(name, str):
      raise CorruptFileError("a global whose name is not a string")
    module = po.RENAMED_MODULES.get(module, module)
    qual = f"{module}.{name}"
    if (module, name) in po.ALLOWED:
      return po.ALLOWED[(module, name)]
    root = module.split(".")[0]
    if root in DENIED_ROOTS or name.startswith("__"):
      raise UnsafePickleError(
          f"the pickle references {qual}, which no weight file needs (it "
          "could run arbitrary code); refused")
    if module in ("torch", "torch.cuda") and name in po.STORAGE_DTYPES:
      return StorageType(name, po.STORAGE_DTYPES[name])
    if module == "torch" and name in po.TORCH_DTYPES:
      return TorchDType(name)
    key = (module, name)
    if key not in self._standins:
      self._standins[key] = type(f"StandIn[{qual}]", (StandIn,), {
          "standin_module": module, "standin_name": name})
    return self._standins[key]

  def persistent_load(self, pid):
    if self._pid_loader is None:
      raise CorruptFileError("a persistent id outside a torch file")
    return self._pid_loader(pid)

  # -- opcodes that create or mutate objects
  def load_reduce(self):
    args = self.stack.pop()
    func = self.stack[-1]
    if id(func) not in po.CALLABLE:
      raise _refuse_call(func)
    if not isinstance(args, tuple):
      raise CorruptFileError("REDUCE arguments are not a tuple")
    if func is po.ALLOWED[("torch.storage", "_load_from_bytes")]:
      if self._bytes_loader is not None:
        func = self._bytes_loader
    self.stack[-1] = func(*args)
  dispatch[pickle.REDUCE[0]] = load_reduce

  def _new(self, cls, args, kwargs):
    if isinstance(cls, type) and issubclass(cls, StandIn):
      return cls.__new__(cls, *args, **kwargs)
    if cls in po.NEWOBJ_CLASSES and not kwargs:
      return cls.__new__(cls, *args)
    raise _refuse_call(cls)

  def load_newobj(self):
    args = self.stack.pop()
    cls = self.stack.pop()
    self.append(self._new(cls, args, {}))
  dispatch[pickle.NEWOBJ[0]] = load_newobj

  def load_newobj_ex(self):
    kwargs = self.stack.pop()
    args = self.stack.pop()
    cls = self.stack.pop()
    self.append(self._new(cls, args, kwargs))
  dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex

  def _instantiate(self, klass, args):
    # INST / OBJ (protocols 0, 1): only argument-less StandIns.
    if args or not (isinstance(klass, type) and issubclass(klass, StandIn)):
      raise _refuse_call(klass)
    self.append(klass.__new__(klass))

  def load_build(self):
    state = self.stack.pop()
    inst = self.stack[-1]
    if isinstance(inst, StandIn):
      inst.__setstate__(state)
    elif isinstance(inst, (collections.OrderedDict, EasyDict)):
      if not isinstance(state, dict):
        raise CorruptFileError("BUILD of a dict with a non-dict state")
      inst.__dict__.update({str(k): v for k, v in state.items()})
    elif isinstance(inst, np.dtype):
      inst.__setstate__(state)
      if inst.hasobject:
        raise UnsafePickleError("numpy dtype with Python objects refused")
    elif isinstance(inst, np.ndarray):
      po.check_ndarray_state(state)
      inst.__setstate__(state)
    else:
      raise UnsafePickleError(f"the pickle asks to set the state of "
                              f"{type(inst).__name__}; refused")
  dispatch[pickle.BUILD[0]] = load_build


def load(file, persistent_load: Optional[Callable] = None,
         load_from_bytes: Optional[Callable] = None):
  """Unpickle one object from ``file`` under the two policies.

  Args:
    file: binary file object positioned at a pickle.
    persistent_load: handler for persistent ids (torch storages) or None.
    load_from_bytes: handler for storages pickled as bytes, or None.

  Returns:
    The object, with tensors as numpy arrays and foreign classes as StandIns.

  Raises:
    UnsafePickleError: the file asks for something not allowed.
    CorruptFileError: the bytes are not a valid pickle.
  """
  try:
    return SafeUnpickler(file, persistent_load, load_from_bytes).load()
  except (UnsafePickleError, CorruptFileError):
    raise
  except RecursionError:
    raise CorruptFileError("the pickle nests too deeply") from None
  except Exception as e:  # pylint: disable=broad-except
    # Nothing foreign ran, so any other failure means damaged bytes.
    raise CorruptFileError(f"not a valid pickle ({type(e).__name__}: "
                           f"{str(e)[:200]})") from None


def loads(data: bytes, persistent_load: Optional[Callable] = None,
          load_from_bytes: Optional[Callable] = None):
  return load(io.BytesIO(data), persistent_load, load_from_bytes)


# ------------------------------------------------------ module-state helpers

def module_dict(obj) -> Optional[dict]:
  """The __dict__ of a (stood-in) nn.Module, or None if obj is not one."""
  if isinstance(obj, PersistentStandIn):
    return obj.state
  if isinstance(obj, StandIn):
    state = obj.state
    if "_parameters" in state or "_modules" in state:
      return state
    return None
  if isinstance(obj, dict) and ("_parameters" in obj or "_modules" in obj):
    return obj
  return None


def module_state_dict(obj, prefix: str = "") -> dict[str, np.ndarray]:
  """Flatten a stood-in nn.Module into {official dotted key: array}.

  Args:
    obj: a StandIn / PersistentStandIn of an nn.Module (or its __dict__).
    prefix: prepended to every key.

  Returns:
    Parameters and buffers (persistent or not), as the module tree names them.
  """
  d = module_dict(obj)
  if d is None:
    raise CorruptFileError(f"expected a network at {prefix or 'top level'!r},"
                           f" found {type(obj).__name__}")
  out: dict[str, np.ndarray] = {}
  for col in ("_parameters", "_buffers"):
    for k, v in (d.get(col) or {}).items():
      if v is not None:
        if not isinstance(v, np.ndarray):
          raise CorruptFileError(f"{prefix}{k} is {type(v).__name__}, not a "
                                 "tensor")
        out[prefix + k] = v
  for k, sub in (d.get("_modules") or {}).items():
    if sub is not None:
      out.update(module_state_dict(sub, f"{prefix}{k}."))
  return out


def init_kwargs(obj) -> dict:
  """An NVIDIA network's constructor kwargs (``_init_kwargs``) as a dict."""
  d = module_dict(obj) or {}
  kw = d.get("_init_kwargs") or {}
  return dict(kw) if isinstance(kw, dict) else {}
