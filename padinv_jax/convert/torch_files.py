"""Read PyTorch files without torch, through the restricted unpickler.

Three containers hold pickles of weights:
  * the zip format (torch >= 1.6): ``<dir>/data.pkl`` whose persistent ids
    ('storage', type, key, location, numel) name raw little-endian storage
    bytes in ``<dir>/data/<key>`` (``<dir>/byteorder`` may say 'big');
  * the legacy format: pickled magic number, protocol 1001 and sys_info, the
    main pickle (persistent ids ('storage', type, key, location, numel,
    view)), the pickled list of storage keys, then per key an int64 element
    count and the raw bytes (also what torch.storage._load_from_bytes holds
    inside NVIDIA network pickles);
  * plain pickles (NVIDIA network pickles, legacy TF pickles).
Tensors come back as read-only numpy arrays.
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib
from typing import Any, BinaryIO

import numpy as np

from padinv_jax.convert import safe_pickle
from padinv_jax.convert.errors import ConvertError, CorruptFileError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001


def _storage_dtype(storage_type) -> str:
  if not isinstance(storage_type, safe_pickle.StorageType):
    raise CorruptFileError(f"unknown storage type {storage_type!r}")
  return storage_type.dtype


def _pid_fields(pid):
  if not isinstance(pid, tuple) or not pid:
    raise CorruptFileError(f"malformed persistent id {pid!r:.80}")
  return pid[0], pid[1:]


def _storage_from_bytes(data):
  """torch.storage._load_from_bytes: a storage pickled as a legacy torch file."""
  if not isinstance(data, (bytes, bytearray)):
    raise CorruptFileError("torch.storage._load_from_bytes without bytes")
  obj = read_legacy(io.BytesIO(bytes(data)), "embedded storage")
  if not isinstance(obj, safe_pickle.Storage):
    raise CorruptFileError("an embedded storage that is not a storage")
  return obj


def read_legacy(f: BinaryIO, name: str, header_read: bool = False) -> Any:
  """Read a legacy (non-zip) torch file from ``f``.

  Args:
    f: binary file positioned at the start (or just after the magic number
      when ``header_read``).
    name: for messages.
    header_read: the magic number was already consumed.

  Returns:
    The saved object, tensors as numpy arrays.
  """
  start = f.tell()
  f.seek(0, os.SEEK_END)
  size = f.tell()
  f.seek(start)
  if not header_read:
    magic = safe_pickle.load(f)
    if magic != LEGACY_MAGIC:
      raise CorruptFileError(f"{name}: not a torch file (bad magic number)")
  protocol = safe_pickle.load(f)
  if protocol != LEGACY_PROTOCOL:
    raise CorruptFileError(f"{name}: unsupported legacy torch protocol "
                           f"{protocol!r} (expected {LEGACY_PROTOCOL})")
  sys_info = safe_pickle.load(f)
  if isinstance(sys_info, dict) and sys_info.get("little_endian") is False:
    raise CorruptFileError(f"{name}: written on a big-endian machine; "
                           "re-save it on a little-endian one")

  roots: dict[str, safe_pickle.Storage] = {}
  views: dict[str, safe_pickle.Storage] = {}

  def persistent_load(pid):
    kind, rest = _pid_fields(pid)
    if kind == "module":
      # nn.Module classes are saved with their source for a version check;
      # the class (already a StandIn) is all we keep, the source is ignored.
      cls = rest[0] if rest else None
      if not (isinstance(cls, type) and issubclass(cls, safe_pickle.StandIn)):
        raise CorruptFileError(f"{name}: malformed module persistent id")
      return cls
    if kind != "storage" or len(rest) != 5:
      raise CorruptFileError(f"{name}: unknown persistent id {kind!r:.40}")
    storage_type, key, _, numel, view = rest
    key = str(key)
    dtype = _storage_dtype(storage_type)
    if key not in roots:
      numel = int(numel)
      nbytes = numel * safe_pickle.numpy_dtype(dtype).itemsize
      if numel < 0 or nbytes > size:
        raise CorruptFileError(f"{name}: a storage of {numel} elements does "
                               f"not fit in a {size}-byte file")
      roots[key] = safe_pickle.Storage.empty(dtype, numel)
    root = roots[key]
    if view is None:
      return root
    view_key, offset, view_size = view
    if view_key not in views:
      offset, view_size = int(offset), int(view_size)
      if offset < 0 or offset + view_size > len(root):
        raise CorruptFileError(f"{name}: a storage view outside its storage")
      views[view_key] = safe_pickle.Storage(
          root.dtype, root.array[offset:offset + view_size])
    return views[view_key]

  obj = safe_pickle.load(f, persistent_load, _storage_from_bytes)
  keys = safe_pickle.load(f)
  if not isinstance(keys, list):
    raise CorruptFileError(f"{name}: malformed storage key list")
  for key in keys:
    key = str(key)
    if key not in roots:
      raise CorruptFileError(f"{name}: data for unknown storage {key!r}")
    storage = roots[key]
    head = f.read(8)
    if len(head) != 8:
      raise CorruptFileError(f"{name}: truncated (storage {key} missing)")
    (numel,) = struct.unpack("<q", head)
    if numel != len(storage):
      raise CorruptFileError(f"{name}: storage {key} holds {numel} elements,"
                             f" the pickle says {len(storage)}")
    nbytes = numel * storage.dtype.itemsize
    raw = f.read(nbytes)
    if len(raw) != nbytes:
      raise CorruptFileError(f"{name}: truncated (storage {key} is short by "
                             f"{nbytes - len(raw)} bytes)")
    storage.array[:] = np.frombuffer(raw, storage.dtype.newbyteorder("<"))
  missing = set(roots) - {str(k) for k in keys}
  if missing:
    raise CorruptFileError(f"{name}: truncated (no data for storages "
                           f"{sorted(missing)[:5]})")
  return obj


# torch.save stores its zip members uncompressed. A compressed member may
# inflate at most this many times its stored size (plus 1 MiB): weights
# compress ~1.1x and pickles ~10x, while a "zip bomb" inflates ~1000x, so
# one is refused from its header before anything is inflated.
MAX_INFLATION = 50


def _read_member(zf: zipfile.ZipFile, member: str, name: str) -> bytes:
  info = zf.getinfo(member)
  if (info.compress_type != zipfile.ZIP_STORED and
      info.file_size > MAX_INFLATION * info.compress_size + (1 << 20)):
    raise CorruptFileError(
        f"{name}: zip member {member} would inflate from "
        f"{info.compress_size} to {info.file_size} bytes (more than "
        f"{MAX_INFLATION}x); refused as a possible zip bomb. torch.save "
        "writes members uncompressed: re-save the checkpoint with torch")
  # Read in chunks: one zf.read() inflates the whole member in one call, so a
  # member whose header understates its size costs its real size in memory
  # before the CRC check fails. Chunks bound each inflate step, and nothing
  # beyond the declared size is accepted.
  out = bytearray()
  try:
    with zf.open(info) as f:
      while True:
        chunk = f.read(1 << 20)
        if not chunk:
          break
        out += chunk
        if len(out) > info.file_size:
          raise CorruptFileError(f"{name}: zip member {member} holds more "
                                 f"than its declared {info.file_size} bytes")
  except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError,
          OverflowError, ValueError, OSError, RuntimeError) as e:
    # RuntimeError: a damaged flag marking the member encrypted.
    # A damaged header can name an unknown zip version or compression method
    # (NotImplementedError) or an offset past any file (OverflowError).
    raise CorruptFileError(f"{name}: zip member {member} is damaged ({e})"
                           ) from None
  return bytes(out)


def read_zip(path_or_file, name: str) -> Any:
  """Read a torch zip-format file (``torch.save`` since torch 1.6)."""
  try:
    zf = zipfile.ZipFile(path_or_file)
  except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError,
          OverflowError) as e:
    raise CorruptFileError(f"{name}: truncated or damaged torch zip file "
                           f"({e})") from None
  with zf:
    names = zf.namelist()
    pkls = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
    if len(pkls) != 1:
      raise CorruptFileError(f"{name}: a zip file without exactly one "
                             f"<dir>/data.pkl (found {pkls[:3]}); not a "
                             "torch checkpoint")
    prefix = pkls[0][:-len("data.pkl")]
    big = False
    if prefix + "byteorder" in names:
      big = _read_member(zf, prefix + "byteorder", name).strip() == b"big"
    cache: dict[str, safe_pickle.Storage] = {}

    def persistent_load(pid):
      kind, rest = _pid_fields(pid)
      if kind != "storage" or len(rest) < 4:
        raise CorruptFileError(f"{name}: unknown persistent id {kind!r:.40}")
      storage_type, key, _, numel = rest[:4]
      key = str(key)
      if key not in cache:
        dt = safe_pickle.numpy_dtype(_storage_dtype(storage_type))
        member = f"{prefix}data/{key}"
        if member not in names:
          raise CorruptFileError(f"{name}: storage {member} is missing")
        raw = _read_member(zf, member, name)
        numel = int(numel)
        if len(raw) < numel * dt.itemsize:
          raise CorruptFileError(f"{name}: storage {member} is truncated")
        arr = np.frombuffer(raw, dt.newbyteorder(">" if big else "<"),
                            count=numel)
        if big:
          arr = arr.astype(dt)
        cache[key] = safe_pickle.Storage(dt, arr)
      return cache[key]

    try:
      data = _read_member(zf, pkls[0], name)
      return safe_pickle.loads(data, persistent_load, _storage_from_bytes)
    except zipfile.BadZipFile as e:
      raise CorruptFileError(f"{name}: damaged torch zip file ({e})") from None


def load_file(path: str) -> tuple[Any, str]:
  """Read any PyTorch / pickle weight file safely.

  Args:
    path: the file.

  Returns:
    (object, container) with container one of "torch-zip", "torch-legacy",
    "pickle".

  Raises:
    ConvertError (UnsafePickleError / CorruptFileError) with a one-line
    message that names the file.
  """
  name = os.path.basename(path)
  try:
    with open(path, "rb") as f:
      head = f.read(512)
      if head[:4] == b"PK\x03\x04" or zipfile.is_zipfile(f):
        f.seek(0)
        return read_zip(f, name), "torch-zip"
      if len(head) > 262 and head[257:262] == b"ustar":
        raise CorruptFileError(f"{name}: the tar-based torch format (torch < "
                               "0.4) is not supported; re-save it with a "
                               "newer torch")
      if not head:
        raise CorruptFileError(f"{name}: the file is empty")
      f.seek(0)
      first = safe_pickle.load(f, load_from_bytes=_storage_from_bytes)
      if isinstance(first, int) and first == LEGACY_MAGIC:
        return read_legacy(f, name, header_read=True), "torch-legacy"
      return first, "pickle"
  except ConvertError as e:
    msg = str(e)
    if not msg.startswith(name):
      msg = f"{name}: {msg}"
    raise type(e)(msg) from None
  except OSError as e:
    raise ConvertError(f"cannot read {path}: {e.strerror or e}") from None


def load_bytes(data: bytes, name: str = "<bytes>") -> Any:
  """Like load_file for in-memory data (tests, embedded files)."""
  if data[:4] == b"PK\x03\x04":
    return read_zip(io.BytesIO(data), name)
  f = io.BytesIO(data)
  first = safe_pickle.load(f, load_from_bytes=_storage_from_bytes)
  if isinstance(first, int) and first == LEGACY_MAGIC:
    return read_legacy(f, name, header_read=True)
  return first
