"""The objects the restricted unpickler may build, and its allow-list.

Each allowed global maps to OUR implementation here (tensor rebuilders that
return numpy arrays, checked numpy scalar / dtype builders, inert
stand-ins); nothing from the file's own modules is ever imported. Used
through padinv_jax.convert.safe_pickle, which holds the policies.
"""

from __future__ import annotations

import collections
import math
import datetime as _dt
import pathlib
import re
from typing import Any

import numpy as np

from padinv_jax.convert.errors import CorruptFileError, UnsafePickleError

# The few builtins a weight pickle uses; every other builtin (eval, exec,
# getattr, __import__, open, compile, ...) is refused.
_SAFE_BUILTINS = {"set": set, "frozenset": frozenset, "slice": slice,
                  "complex": complex, "object": object}

# Python 2 / protocol < 3 module names.
RENAMED_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}

STORAGE_DTYPES = {
    "FloatStorage": "float32", "DoubleStorage": "float64",
    "HalfStorage": "float16", "BFloat16Storage": "bfloat16",
    "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16",
    "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool",
    "ComplexFloatStorage": "complex64", "ComplexDoubleStorage": "complex128",
    "UntypedStorage": "uint8",
}
TORCH_DTYPES = {
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
  numel = math.prod(size)
  if numel > len(storage) - offset:
    # An expanded view (stride 0, torch's expand()) stores one value for a
    # huge shape; every later copy would materialise it. No weight file
    # holds one.
    raise CorruptFileError(
        f"a tensor of size {size} (stride {stride}) has {numel} elements but "
        f"its storage holds {len(storage) - offset} from offset {offset}: an "
        "expanded or overlapping view, which weight files never hold; "
        "re-save it with .contiguous()/.clone()")
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
  if isinstance(dtype, TorchDType) and dtype.name in TORCH_DTYPES:
    want = numpy_dtype(TORCH_DTYPES[dtype.name])
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
  """torch.storage._load_from_bytes: a marker the unpickler intercepts.

  Pickled storages (NVIDIA pickles) are a whole legacy torch file each; the
  unpickler hands them to the reader its caller gave it (torch_files), so
  this table never imports the container code that imports it.
  """
  del data
  raise CorruptFileError("an embedded torch storage where none is expected "
                         "(only torch files and NVIDIA pickles hold them)")


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


class NdarrayMarker:
  """numpy.ndarray as an argument of numpy's _reconstruct (never called)."""


def _np_reconstruct(cls, shape, typecode):
  del shape, typecode
  if cls is not NdarrayMarker:
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
ALLOWED: dict[tuple[str, str], Any] = {
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
    ("numpy", "ndarray"): NdarrayMarker,
    ("_codecs", "encode"): _codecs_encode,
    ("copyreg", "_reconstructor"): _copyreg_reconstructor,
    ("functools", "partial"): _partial,
}
for _name in ("Path", "PosixPath", "WindowsPath", "PurePath", "PurePosixPath",
              "PureWindowsPath"):
  ALLOWED[("pathlib", _name)] = _path_str
for _cls in (_dt.datetime, _dt.date, _dt.time, _dt.timedelta):
  ALLOWED[("datetime", _cls.__name__)] = _datetime_of(_cls)
for _m in _NUMPY_CORE:
  ALLOWED[(_m, "scalar")] = _np_scalar
  ALLOWED[(_m, "_reconstruct")] = _np_reconstruct
for _m in ("numpy.core.numeric", "numpy._core.numeric"):
  ALLOWED[(_m, "_frombuffer")] = _np_frombuffer
for _name, _v in _SAFE_BUILTINS.items():
  ALLOWED[("builtins", _name)] = _v

# What REDUCE may call, and what NEWOBJ may instantiate (besides StandIns).
CALLABLE = frozenset(id(v) for k, v in ALLOWED.items()
                      if v not in (object, NdarrayMarker, EasyDict))
NEWOBJ_CLASSES = (collections.OrderedDict, EasyDict, dict, set, frozenset)


def check_ndarray_state(state):
  if not isinstance(state, tuple) or len(state) not in (4, 5):
    raise CorruptFileError("malformed numpy array state")
  dtype, raw = state[-3], state[-1]
  if not isinstance(dtype, np.dtype) or dtype.hasobject:
    raise UnsafePickleError("numpy array with Python objects refused")
  if not isinstance(raw, (bytes, str)):
    raise UnsafePickleError("numpy array whose data is not raw bytes refused")
