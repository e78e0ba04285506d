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
import pathlib
import pickle
import re
from typing import Any, Callable, Optional

import numpy as np

from padinv_jax.convert.errors import CorruptFileError, UnsafePickleError

# Module roots a weight file never needs; naming one is refused at once.
DENIED_ROOTS = frozenset("""
    os posix nt posixpath ntpath subprocess _posixsubprocess sys importlib
    imp zipimport pkgutil runpy code codeop pickle _pickle marshal dill
    cloudpickle joblib types shutil socket ssl pty ctypes multiprocessing
    threading _thread asyncio signal io _io pathlib tempfile glob fcntl
    resource webbrowser platform pdb inspect gc operator functools timeit
    http urllib ftplib smtplib telnetlib xmlrpc setuptools pip site
""".split())

# The few builtins a weight pickle uses; every other builtin (eval, exec,
# getattr, __import__, open, compile, ...) is refused.
_SAFE_BUILTINS = {"set": set, "frozenset": frozenset, "slice": slice,
                  "complex": complex, "object": object}

# Python 2 / protocol < 3 module names.
_RENAMED_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}

_STORAGE_DTYPES = {
    "FloatStorage": "float32", "DoubleStorage": "float64",
    "HalfStorage": "float16", "BFloat16Storage": "bfloat16",
    "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16",
    "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool",
    "ComplexFloatStorage": "complex64", "ComplexDoubleStorage": "complex128",
    "UntypedStorage": "uint8",
}
_TORCH_DTYPES = {
    "float32": "float32", "float": "float32", "float64": "float64",
    "double": "float64", "float16": "float16", "half": "float16",
    "bfloat16": "bfloat16", "int64": "int64", "long": "int64",
    "int32": "int32", "int": "int32", "int16": "int16", "short": "int16",
    "int8": "int8", "uint8": "uint8", "bool": "bool",
    "complex64": "complex64", "complex128": "complex128",
}


def numpy_dtype(name: str) -> np.dtype:
  if name == "bfloat16":
    import ml_dtypes  # pylint: disable=import-outside-toplevel
    return np.dtype(ml_dtypes.bfloat16)
  return np.dtype(name)


class StorageType:
  """torch.FloatStorage & co.: only a dtype to read raw storage bytes with."""

  def __init__(self, name: str, dtype: str):
    self.name, self.dtype = name, dtype

  def __repr__(self):
    return f"StorageType({self.name})"


class TorchDType:
  """torch.float32 & co. as named in a pickle."""

  def __init__(self, name: str):
    self.name = name

  def __repr__(self):
    return f"torch.{self.name}"


class Storage:
  """A flat typed buffer; tensors are strided views of it.

  The legacy torch format stores the bytes AFTER the pickle, so a storage
  may be created empty and filled in place later (``fill``); the views
  made meanwhile see the data because they share memory.
  """

  def __init__(self, dtype: np.dtype, array: np.ndarray):
    self.dtype = dtype
    self.array = array  # 1-D, dtype

  @classmethod
  def empty(cls, dtype_name: str, numel: int) -> "Storage":
    dt = numpy_dtype(dtype_name)
    return cls(dt, np.zeros(int(numel), dt))

  def __len__(self):
    return self.array.shape[0]


class EasyDict(dict):
  """dnnlib.util.EasyDict: a dict with attribute access (data only)."""

  def __getattr__(self, name):
    try:
      return self[name]
    except KeyError:
      raise AttributeError(name) from None


class StandIn:
  """An inert replacement for an instance of a class we never import.

  NEWOBJ creates it (recording the arguments), BUILD records the state
  (for an nn.Module: its __dict__ with _parameters, _buffers, _modules),
  SETITEMS / APPENDS record items. It cannot be called.
  """
  standin_module = "?"
  standin_name = "?"

  def __new__(cls, *args, **kwargs):
    obj = object.__new__(cls)
    obj.standin_args = args
    obj.standin_kwargs = kwargs
    obj.standin_state = None
    obj.standin_items = {}
    obj.standin_list = []
    return obj

  def __init__(self, *args, **kwargs):
    # Only reachable by calling the class, which weight files may not do.
    raise UnsafePickleError(f"refusing to call {self.qualname()}")

  @classmethod
  def qualname(cls) -> str:
    return f"{cls.standin_module}.{cls.standin_name}"

  def __setstate__(self, state):
    self.standin_state = state

  def __setitem__(self, key, value):
    self.standin_items[key] = value

  def append(self, item):
    self.standin_list.append(item)

  def extend(self, items):
    self.standin_list.extend(items)

  def add(self, item):
    self.standin_list.append(item)

  @property
  def state(self) -> dict:
    """The recorded state as a dict ({} when there is none)."""
    s = self.standin_state
    if isinstance(s, tuple) and len(s) == 2 and (s[0] is None or
                                                  isinstance(s[0], dict)):
      merged = dict(s[0] or {})
      merged.update(s[1] or {})
      return merged
    return s if isinstance(s, dict) else {}

  def __repr__(self):
    return f"<inert stand-in for {self.qualname()}>"


class PersistentStandIn:
  """An NVIDIA persistent network; ``meta['module_src']`` is never read."""

  def __init__(self, meta):
    if not isinstance(meta, dict) or not isinstance(meta.get("state"), dict):
      raise CorruptFileError("a torch_utils.persistence object without a "
                             "'state' dict")
    self.class_name = str(meta.get("class_name", "?"))
    self.version = meta.get("version")
    self.state = meta["state"]

  def __repr__(self):
    return f"<inert NVIDIA persistent {self.class_name}>"


# ---------------------------------------------------------------- rebuilders

def _check_int(v, what):
  if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
    raise CorruptFileError(f"tensor {what} must be an integer, got {v!r}")
  return int(v)


def _strided_view(storage, offset, size, stride):
  if not isinstance(storage, Storage):
    raise CorruptFileError(f"a tensor's storage is {type(storage).__name__}, "
                           "not a storage")
  offset = _check_int(offset, "offset")
  size = tuple(_check_int(s, "size") for s in size)
  stride = tuple(_check_int(s, "stride") for s in stride)
  if len(size) != len(stride) or offset < 0 or min(size + stride, default=0) < 0:
    raise CorruptFileError(f"bad tensor geometry: offset {offset}, size "
                           f"{size}, stride {stride}")
  if 0 in size:
    return np.zeros(size, storage.dtype)
  last = offset + sum((n - 1) * s for n, s in zip(size, stride))
  if last >= len(storage):
    raise CorruptFileError(f"tensor of size {size} at offset {offset} reads "
                           f"past its storage of {len(storage)} elements")
  item = storage.dtype.itemsize
  view = np.lib.stride_tricks.as_strided(
      storage.array[offset:], shape=size,
      strides=tuple(s * item for s in stride), writeable=False)
  return view


def _rebuild_tensor_v2(storage, storage_offset, size, stride,
                       requires_grad=False, backward_hooks=None,
                       metadata=None):
  del requires_grad, backward_hooks, metadata
  return _strided_view(storage, storage_offset, size, stride)


def _rebuild_tensor(storage, storage_offset, size, stride):
  return _strided_view(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad,
                       backward_hooks, dtype, metadata=None):
  del requires_grad, backward_hooks, metadata
  view = _strided_view(storage, storage_offset, size, stride)
  if isinstance(dtype, TorchDType) and dtype.name in _TORCH_DTYPES:
    want = numpy_dtype(_TORCH_DTYPES[dtype.name])
    if want != view.dtype:
      raise CorruptFileError(f"tensor dtype {dtype} does not match its "
                             f"storage ({view.dtype})")
  return view


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None,
                       state=None):
  del requires_grad, backward_hooks, state
  if not isinstance(data, np.ndarray):
    raise CorruptFileError("a parameter whose data is not a tensor")
  return data


def _rebuild_from_type_v2(func, new_type, args, state):
  del new_type, state  # Parameter / Tensor subclass: the data is enough.
  if func not in (_rebuild_tensor_v2, _rebuild_tensor, _rebuild_tensor_v3,
                  _rebuild_parameter):
    raise UnsafePickleError("torch._tensor._rebuild_from_type_v2 asks to "
                            f"call {func!r}, which is not a tensor rebuilder")
  return func(*args)


def _rebuild_device_tensor_from_numpy(data, dtype, device, requires_grad):
  del dtype, device, requires_grad
  if not isinstance(data, np.ndarray):
    raise CorruptFileError("a device tensor without numpy data")
  return data


def _load_from_bytes(data):
  # Pickled storages (NVIDIA pickles) are a whole legacy torch file each.
  from padinv_jax.convert import torch_files  # pylint: disable=import-outside-toplevel
  if not isinstance(data, (bytes, bytearray)):
    raise CorruptFileError("torch.storage._load_from_bytes without bytes")
  obj = torch_files.read_legacy(io.BytesIO(bytes(data)), "embedded storage")
  if not isinstance(obj, Storage):
    raise CorruptFileError("an embedded storage that is not a storage")
  return obj


def _torch_device(*args):
  return "device:" + ":".join(str(a) for a in args)


def _torch_size(dims=()):
  return tuple(_check_int(d, "size") for d in dims)


def _reconstruct_persistent_obj(meta):
  return PersistentStandIn(meta)


def _path_str(*parts):
  # Paths in run options (pathlib objects) are kept as plain strings: the
  # path is never opened.
  if not all(isinstance(p, str) for p in parts):
    raise UnsafePickleError("a pathlib path with non-string parts")
  return str(pathlib.PurePath(*parts))


def _datetime_of(cls):
  def make(*args):
    if not all(isinstance(a, (int, float, bytes, str, type(None)))
               for a in args):
      raise UnsafePickleError(f"{cls.__name__} with unexpected arguments")
    return cls(*args)
  return make


class PartialStandIn(StandIn):
  """functools.partial in run options: recorded, never callable."""
  standin_module = "functools"
  standin_name = "partial"


def _partial(*args):
  return PartialStandIn.__new__(PartialStandIn, *args)


_SAFE_DTYPE = re.compile(r"^[<>|=]?(?:[fiucb]\d{1,2}|\?|bool|float\d*|"
                         r"int\d*|uint\d*|complex\d*|[US]\d*)$")


def _np_dtype(obj, align=False, copy=False):
  del align, copy
  if not isinstance(obj, str) or not _SAFE_DTYPE.match(obj):
    raise UnsafePickleError(f"numpy.dtype({obj!r}) is not a plain numeric "
                            "dtype")
  return np.dtype(obj)


def _np_scalar(dtype, data=None):
  if not isinstance(dtype, np.dtype) or dtype.hasobject:
    raise UnsafePickleError(f"numpy scalar of dtype {dtype!r} refused")
  if isinstance(data, str):
    data = data.encode("latin1")
  if not isinstance(data, bytes) or len(data) != dtype.itemsize:
    raise CorruptFileError("numpy scalar with malformed data")
  return np.frombuffer(data, dtype, count=1)[0]


class _NdarrayMarker:
  """numpy.ndarray as an argument of numpy's _reconstruct (never called)."""


def _np_reconstruct(cls, shape, typecode):
  del shape, typecode
  if cls is not _NdarrayMarker:
    raise UnsafePickleError("numpy _reconstruct of a class other than "
                            "numpy.ndarray refused")
  return np.ndarray((0,), np.uint8)


def _np_frombuffer(buf, dtype, shape, order):
  if not isinstance(dtype, np.dtype) or dtype.hasobject:
    raise UnsafePickleError(f"numpy array of dtype {dtype!r} refused")
  shape = tuple(_check_int(s, "shape") for s in shape)
  return np.frombuffer(bytes(buf), dtype).reshape(shape, order=order)


def _codecs_encode(text, encoding="utf-8"):
  # Protocol-2 pickles written by Python 3 spell bytes this way.
  if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
    raise UnsafePickleError("_codecs.encode is only allowed for latin1 "
                            "bytes")
  return text.encode("latin1")


def _copyreg_reconstructor(cls, base, state):
  # Protocol 0/1 spelling of "make an instance without calling __init__".
  if not (isinstance(cls, type) and issubclass(cls, StandIn)) or (
      base is not object) or state is not None:
    raise UnsafePickleError("copyreg._reconstructor is only allowed for "
                            "plain objects")
  return cls.__new__(cls)


_NUMPY_CORE = ("numpy.core.multiarray", "numpy._core.multiarray")
_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("dnnlib", "EasyDict"): EasyDict,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"):
        _reconstruct_persistent_obj,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._utils", "_rebuild_device_tensor_from_numpy"):
        _rebuild_device_tensor_from_numpy,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch.storage", "_load_from_bytes"): _load_from_bytes,
    ("torch", "device"): _torch_device,
    ("torch", "Size"): _torch_size,
    ("numpy", "dtype"): _np_dtype,
    ("numpy", "ndarray"): _NdarrayMarker,
    ("_codecs", "encode"): _codecs_encode,
    ("copyreg", "_reconstructor"): _copyreg_reconstructor,
    ("functools", "partial"): _partial,
}
for _name in ("Path", "PosixPath", "WindowsPath", "PurePath", "PurePosixPath",
              "PureWindowsPath"):
  _ALLOWED[("pathlib", _name)] = _path_str
import datetime as _dt  # pylint: disable=g-import-not-at-top,wrong-import-position
for _cls in (_dt.datetime, _dt.date, _dt.time, _dt.timedelta):
  _ALLOWED[("datetime", _cls.__name__)] = _datetime_of(_cls)
for _m in _NUMPY_CORE:
  _ALLOWED[(_m, "scalar")] = _np_scalar
  _ALLOWED[(_m, "_reconstruct")] = _np_reconstruct
for _m in ("numpy.core.numeric", "numpy._core.numeric"):
  _ALLOWED[(_m, "_frombuffer")] = _np_frombuffer
for _name, _v in _SAFE_BUILTINS.items():
  _ALLOWED[("builtins", _name)] = _v

# What REDUCE may call, and what NEWOBJ may instantiate (besides StandIns).
_CALLABLE = frozenset(id(v) for k, v in _ALLOWED.items()
                      if v not in (object, _NdarrayMarker, EasyDict))
_NEWOBJ_CLASSES = (collections.OrderedDict, EasyDict, dict, set, frozenset)


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
  """

  dispatch = dict(pickle._Unpickler.dispatch)  # pylint: disable=protected-access

  def __init__(self, file, persistent_load: Optional[Callable] = None):
    super().__init__(file, encoding="latin1")
    self._pid_loader = persistent_load
    self._standins: dict[tuple[str, str], type] = {}

  # -- globals
  def find_class(self, module, name):
    if not isinstance(module, str) or not isinstance(name, str):
      raise CorruptFileError("a global whose name is not a string")
    module = _RENAMED_MODULES.get(module, module)
    qual = f"{module}.{name}"
    if (module, name) in _ALLOWED:
      return _ALLOWED[(module, name)]
    root = module.split(".")[0]
    if root in DENIED_ROOTS or name.startswith("__"):
      raise UnsafePickleError(
          f"the pickle references {qual}, which no weight file needs (it "
          "could run arbitrary code); refused")
    if module in ("torch", "torch.cuda") and name in _STORAGE_DTYPES:
      return StorageType(name, _STORAGE_DTYPES[name])
    if module == "torch" and name in _TORCH_DTYPES:
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
    if id(func) not in _CALLABLE:
      raise _refuse_call(func)
    if not isinstance(args, tuple):
      raise CorruptFileError("REDUCE arguments are not a tuple")
    self.stack[-1] = func(*args)
  dispatch[pickle.REDUCE[0]] = load_reduce

  def _new(self, cls, args, kwargs):
    if isinstance(cls, type) and issubclass(cls, StandIn):
      return cls.__new__(cls, *args, **kwargs)
    if cls in _NEWOBJ_CLASSES and not kwargs:
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
      _check_ndarray_state(state)
      inst.__setstate__(state)
    else:
      raise UnsafePickleError(f"the pickle asks to set the state of "
                              f"{type(inst).__name__}; refused")
  dispatch[pickle.BUILD[0]] = load_build


def _check_ndarray_state(state):
  if not isinstance(state, tuple) or len(state) not in (4, 5):
    raise CorruptFileError("malformed numpy array state")
  dtype, raw = state[-3], state[-1]
  if not isinstance(dtype, np.dtype) or dtype.hasobject:
    raise UnsafePickleError("numpy array with Python objects refused")
  if not isinstance(raw, (bytes, str)):
    raise UnsafePickleError("numpy array whose data is not raw bytes refused")


def load(file, persistent_load: Optional[Callable] = None):
  """Unpickle one object from ``file`` under the two policies.

  Args:
    file: binary file object positioned at a pickle.
    persistent_load: handler for persistent ids (torch storages) or None.

  Returns:
    The object, with tensors as numpy arrays and foreign classes as StandIns.

  Raises:
    UnsafePickleError: the file asks for something not allowed.
    CorruptFileError: the bytes are not a valid pickle.
  """
  try:
    return SafeUnpickler(file, persistent_load).load()
  except (UnsafePickleError, CorruptFileError):
    raise
  except RecursionError:
    raise CorruptFileError("the pickle nests too deeply") from None
  except Exception as e:  # pylint: disable=broad-except
    # Nothing foreign ran, so any other failure means damaged bytes.
    raise CorruptFileError(f"not a valid pickle ({type(e).__name__}: "
                           f"{str(e)[:200]})") from None


def loads(data: bytes, persistent_load: Optional[Callable] = None):
  return load(io.BytesIO(data), persistent_load)


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
