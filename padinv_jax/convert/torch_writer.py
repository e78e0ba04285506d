"""Writing torch.save's zip format without torch: nested dicts of float32 arrays.

torch >= 1.6 saves a zip of ``NAME/data.pkl`` (a protocol-2 pickle whose
tensors are ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
requires_grad, OrderedDict())`` with each storage a persistent id
``('storage', torch.FloatStorage, key, 'cpu', numel)``), ``NAME/data/KEY``
(the raw little-endian bytes of each storage), ``NAME/byteorder`` and
``NAME/version``. The pickle is emitted opcode by opcode from a fixed
vocabulary (dicts, OrderedDicts, strings, numbers, tensors), so nothing here
can smuggle an object in, and torch.load(weights_only=True) reads it.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import tempfile
import zipfile
from typing import Any, Mapping

import numpy as np


class _Writer:
  """A minimal protocol-2 pickler for the vocabulary above."""

  def __init__(self):
    self.out = io.BytesIO()
    self.storages: list[np.ndarray] = []
    self.out.write(pickle.PROTO + b"\x02")

  def _op(self, b: bytes):
    self.out.write(b)

  def _global(self, module: str, name: str):
    self._op(pickle.GLOBAL + f"{module}\n{name}\n".encode())

  def _str(self, s: str):
    data = s.encode("utf-8")
    self._op(pickle.BINUNICODE + struct.pack("<I", len(data)) + data)

  def _int(self, v: int):
    if 0 <= v < 256:
      self._op(pickle.BININT1 + bytes([v]))
    elif -2 ** 31 <= v < 2 ** 31:
      self._op(pickle.BININT + struct.pack("<i", v))
    else:
      raise ValueError(f"integer {v} does not fit a 4-byte pickle int")

  def _tuple(self, items):
    self._op(pickle.MARK)
    for it in items:
      self.save(it)
    self._op(pickle.TUPLE)

  def _tensor(self, a: np.ndarray):
    a = np.ascontiguousarray(a, np.float32)
    key = str(len(self.storages))
    self.storages.append(a)
    self._global("torch._utils", "_rebuild_tensor_v2")
    self._op(pickle.MARK)
    # The storage: a persistent id tuple.
    self._op(pickle.MARK)
    self._str("storage")
    self._global("torch", "FloatStorage")
    self._str(key)
    self._str("cpu")
    self._int(int(a.size))
    self._op(pickle.TUPLE + pickle.BINPERSID)
    self._int(0)
    self._tuple(tuple(int(d) for d in a.shape))
    strides = tuple(int(s) // a.itemsize for s in a.strides)
    self._tuple(strides)
    self._op(pickle.NEWFALSE)
    self._global("collections", "OrderedDict")
    self._op(pickle.EMPTY_TUPLE + pickle.REDUCE)
    self._op(pickle.TUPLE + pickle.REDUCE)

  def _dict(self, d: Mapping, ordered: bool):
    if ordered:
      self._global("collections", "OrderedDict")
      self._op(pickle.EMPTY_TUPLE + pickle.REDUCE)
    else:
      self._op(pickle.EMPTY_DICT)
    if d:
      self._op(pickle.MARK)
      for k, v in d.items():
        if not isinstance(k, str):
          raise TypeError(f"dict keys must be strings, got {k!r}")
        self._str(k)
        self.save(v)
      self._op(pickle.SETITEMS)

  def save(self, obj: Any):
    if isinstance(obj, np.ndarray):
      self._tensor(obj)
    elif isinstance(obj, collections.OrderedDict):
      self._dict(obj, ordered=True)
    elif isinstance(obj, dict):
      self._dict(obj, ordered=False)
    elif isinstance(obj, bool):
      self._op(pickle.NEWTRUE if obj else pickle.NEWFALSE)
    elif isinstance(obj, int):
      self._int(obj)
    elif isinstance(obj, float):
      self._op(pickle.BINFLOAT + struct.pack(">d", obj))
    elif isinstance(obj, str):
      self._str(obj)
    elif obj is None:
      self._op(pickle.NONE)
    elif isinstance(obj, (tuple, list)):
      if isinstance(obj, list):
        self._op(pickle.EMPTY_LIST)
        if obj:
          self._op(pickle.MARK)
          for it in obj:
            self.save(it)
          self._op(pickle.APPENDS)
      else:
        self._tuple(obj)
    else:
      raise TypeError(f"cannot write a {type(obj).__name__} to a torch file")

  def finish(self) -> bytes:
    self._op(pickle.STOP)
    return self.out.getvalue()


def save(obj: Mapping, path: str, *, overwrite: bool = False,
         archive_name: str = "archive") -> str:
  """Write ``obj`` (dicts of float32 arrays, numbers, strings) as a torch zip.

  Written under a temporary name and renamed into place; an existing file
  is kept unless ``overwrite``.
  """
  if os.path.exists(path) and not overwrite:
    raise FileExistsError(f"{path} already exists; pass --overwrite to "
                          "replace it, or choose another destination")
  w = _Writer()
  w.save(obj)
  data = w.finish()
  folder = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=".padinv-tmp-",
                             suffix=".pt")
  os.close(fd)
  try:
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:
      z.writestr(f"{archive_name}/data.pkl", data)
      z.writestr(f"{archive_name}/byteorder", "little")
      for i, a in enumerate(w.storages):
        z.writestr(f"{archive_name}/data/{i}", a.astype("<f4").tobytes())
      z.writestr(f"{archive_name}/version", "3\n")
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return path
