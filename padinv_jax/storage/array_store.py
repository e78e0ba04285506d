"""Directories of arrays + config.json, shared by model and part directories.

    DIR/config.json   {"format": ..., "version": ..., ...}
    DIR/arrays/       an Orbax PyTree checkpoint, stored and restored as host
                      numpy arrays (no device or sharding is recorded)

Writes go to a temporary sibling and are renamed into place, so a failure
never leaves a half-written directory; reads and writes check every array
against the tree the config implies and name each mismatch.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from typing import Any

import jax
import numpy as np

CONFIG_FILE = "config.json"
ARRAYS_DIR = "arrays"


def path_name(path) -> str:
  """A jax tree path as "a/b/c" (the names errors show)."""
  return "/".join(str(getattr(k, "key", k)) for k in path)


def flatten(tree) -> dict[str, Any]:
  """{"a/b/c": leaf} with "/"-joined dict keys (the names errors show)."""
  return {path_name(path): leaf
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def tree_digest(tree) -> str:
  """SHA-256 over every leaf's name, dtype, shape and bytes, in name order."""
  h = hashlib.sha256()
  for k, v in sorted(flatten(tree).items()):
    v = np.ascontiguousarray(np.asarray(v))
    h.update(f"{k}|{v.dtype.str}|{v.shape}|".encode())
    h.update(v.tobytes())
  return h.hexdigest()


def check_tree(want, have, where: str, what: str = "the arrays") -> None:
  """Raise ValueError naming every missing, unexpected or mis-shaped entry.

  Args:
    want: tree of jax.ShapeDtypeStruct (jax.eval_shape of an init).
    have: tree of arrays.
    where: what to name in the message (a directory, "save_model(...)").
    what: what the arrays are, for the message.
  """
  want, have = flatten(want), flatten(have)
  missing = sorted(set(want) - set(have))
  unexpected = sorted(set(have) - set(want))
  wrong = []
  for k in sorted(set(want) & set(have)):
    w, h = want[k], have[k]
    h_shape = tuple(np.shape(h))
    h_dtype = np.dtype(getattr(h, "dtype", np.asarray(h).dtype))
    if h_shape != tuple(w.shape) or h_dtype != np.dtype(w.dtype):
      wrong.append(f"{k}: expected {tuple(w.shape)} {np.dtype(w.dtype)}, "
                   f"found {h_shape} {h_dtype}")
  if not (missing or unexpected or wrong):
    return
  lines = [f"{where}: {what} do not match the config ({len(missing)} "
           f"missing, {len(unexpected)} unexpected, {len(wrong)} mis-shaped)"]
  for title, items in (("missing", missing), ("unexpected", unexpected),
                       ("mis-shaped", wrong)):
    if items:
      shown = items[:20] + ([f"... and {len(items) - 20} more"]
                            if len(items) > 20 else [])
      lines.append(f"  {title}:\n    " + "\n    ".join(shown))
  lines.append("  The config and the arrays must come from the same network; "
               "re-create the directory with save_model / padinv-convert.")
  raise ValueError("\n".join(lines))


def has_format(path: str, fmt: str) -> bool:
  try:
    return read_json(os.path.join(path, CONFIG_FILE)).get("format") == fmt
  except (OSError, ValueError, AttributeError):
    return False


def write_dir(path: str, meta: dict, arrays, *, overwrite: bool,
              what: str) -> str:
  """Write config.json (``meta``, which names its "format") and the arrays.

  An existing non-empty directory is replaced only with ``overwrite`` and
  only when it is a directory of the same format; anything else a user
  wrote is never touched.

  Returns:
    The absolute path written.
  """
  path = os.path.abspath(os.fspath(path))
  if os.path.exists(path):
    if not os.path.isdir(path):
      raise FileExistsError(f"{path} exists and is not a directory; choose "
                            f"another path")
    if os.listdir(path):
      if not overwrite:
        raise FileExistsError(f"{path} exists and is not empty; pass "
                              f"overwrite=True (--overwrite) to replace a "
                              f"{what} directory, or choose another path")
      if not has_format(path, meta["format"]):
        raise FileExistsError(
            f"{path} is not empty and is not a padinv_jax {what} directory, "
            f"so it is not replaced even with overwrite; remove it yourself "
            f"or choose another path")
  parent = os.path.dirname(path)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-", dir=parent)
  try:
    import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
    ocp.PyTreeCheckpointer().save(os.path.join(tmp, ARRAYS_DIR), arrays)
    with open(os.path.join(tmp, CONFIG_FILE), "w") as f:
      json.dump(meta, f, indent=2, sort_keys=True)
      f.write("\n")
    if os.path.exists(path):
      shutil.rmtree(path)
    os.rename(tmp, path)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return path


MAX_JSON_BYTES = 1 << 20


def read_json(path: str):
  """A small JSON file, bounded: at most 1 MiB, no absurd nesting or NaN.

  Raises:
    ValueError: too large, not JSON, nested too deeply, or holding
      NaN / Infinity (which json accepts and no config means).
  """
  size = os.path.getsize(path)
  if size > MAX_JSON_BYTES:
    raise ValueError(f"{size} bytes, more than a config ever holds "
                     f"({MAX_JSON_BYTES})")
  def no_constants(name):
    raise ValueError(f"{name} is not a valid config value")
  with open(path, "rb") as f:
    text = f.read(MAX_JSON_BYTES + 1)
  try:
    return json.loads(text, parse_constant=no_constants)
  except RecursionError:
    raise ValueError("nested too deeply to be a config") from None
  except UnicodeDecodeError as e:
    raise ValueError(f"not UTF-8 text ({e.reason})") from None


def read_meta(path: str, fmt: str, version: int, what: str,
              how_to: str) -> dict:
  """config.json of a directory, with errors that say what to do."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"{what} directory {path} does not exist; give "
                            f"{how_to}")
  if not os.path.isdir(path):
    raise ValueError(f"{path} is a file, not a {what} directory; give "
                     f"{how_to}")
  cfg_path = os.path.join(path, CONFIG_FILE)
  if not os.path.isfile(cfg_path):
    raise ValueError(f"{path} is not a padinv_jax {what} directory (no "
                     f"{CONFIG_FILE}); give {how_to}")
  try:
    meta = read_json(cfg_path)
  except (OSError, ValueError) as e:
    raise ValueError(f"{cfg_path} could not be read as JSON ({e}); the "
                     f"directory is corrupt: re-create it") from e
  if not isinstance(meta, dict) or meta.get("format") != fmt:
    found = meta.get("format") if isinstance(meta, dict) else type(meta)
    raise ValueError(f"{cfg_path} is not a padinv_jax {what} config (format "
                     f"{found!r}, expected {fmt!r})")
  if meta.get("version") != version:
    raise ValueError(f"{cfg_path} has format version {meta.get('version')!r};"
                     f" this padinv_jax reads version {version}: update "
                     f"padinv_jax or re-create the directory")
  if not isinstance(meta.get("config"), dict):
    raise ValueError(f"{cfg_path} has no 'config' object; the directory is "
                     f"corrupt: re-create it")
  return meta


def read_arrays(path: str) -> dict:
  """The arrays/ checkpoint of a directory as host numpy arrays."""
  arrays_path = os.path.join(path, ARRAYS_DIR)
  if not os.path.isdir(arrays_path):
    raise ValueError(f"{path} has no {ARRAYS_DIR}/ directory; it is "
                     f"incomplete: re-create it with save_model or "
                     f"padinv-convert")
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  ckpt = ocp.PyTreeCheckpointer()
  try:
    tree = ckpt.metadata(arrays_path).item_metadata.tree
    restore_args = jax.tree_util.tree_map(
        lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    return ckpt.restore(arrays_path,
                        args=ocp.args.PyTreeRestore(restore_args=restore_args))
  except Exception as e:  # Orbax/TensorStore raise many types for bad files.
    raise ValueError(f"the arrays in {arrays_path} could not be read "
                     f"({type(e).__name__}: {e}); the directory is corrupt "
                     f"or incomplete: re-create it") from e


