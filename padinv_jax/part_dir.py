"""Directories for the frozen networks training reads: LPIPS, ArcFace, D.

A part directory holds one network's variables::

  DIR/config.json  {"format": "padinv_jax-part", "version": 1,
                    "part": "lpips" | "arcface" | "discriminator",
                    "config": {architecture fields}}
  DIR/arrays/      an Orbax PyTree checkpoint of the variables

``padinv-convert`` writes them (``--format lpips``, ``--format arcface``,
``--entry discriminator``); ``load_part`` reads one back, checking every array
against jax.eval_shape of the network's init for the stored config.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Mapping

import jax
import numpy as np

FORMAT = "padinv_jax-part"
VERSION = 1
PARTS = ("lpips", "arcface", "discriminator")


def expected_shapes(part: str, config: Mapping) -> dict:
  """The variable tree (ShapeDtypeStructs) a part with this config has."""
  # pylint: disable=import-outside-toplevel
  key = jax.random.key(0)
  if part == "lpips":
    from padinv_jax.losses import lpips
    return jax.eval_shape(lambda k: lpips.init_lpips(k, config["net"]), key)
  if part == "arcface":
    from padinv_jax.losses import arcface
    arch = dict(config)
    size = arch.pop("input_size")
    arch["stage_channels"] = tuple(arch["stage_channels"])
    return jax.eval_shape(
        lambda k: arcface.init_arcface(k, input_size=size, **arch), key)
  if part == "discriminator":
    from padinv_jax import discriminator as d_lib
    d_cfg = d_lib.discriminator_config(**dict(config))
    return jax.eval_shape(lambda k: d_lib.init_discriminator(k, d_cfg), key)
  raise ValueError(f"unknown part {part!r}; one of {PARTS}")


def _flatten(tree, prefix=""):
  out = {}
  for k, v in tree.items():
    path = f"{prefix}/{k}" if prefix else str(k)
    out.update(_flatten(v, path) if isinstance(v, Mapping) else {path: v})
  return out


def check(part: str, config: Mapping, variables, where: str) -> None:
  """Raise ValueError naming every missing / unexpected / mis-shaped array."""
  want = _flatten(expected_shapes(part, config))
  have = _flatten(variables)
  missing = sorted(set(want) - set(have))
  unexpected = sorted(set(have) - set(want))
  wrong = [f"{k}: expected {tuple(want[k].shape)}, found "
           f"{tuple(np.shape(have[k]))}" for k in sorted(set(want) & set(have))
           if tuple(np.shape(have[k])) != tuple(want[k].shape)]
  if missing or unexpected or wrong:
    raise ValueError(
        f"{where}: the {part} arrays do not match its config: missing "
        f"{missing[:10]}, unexpected {unexpected[:10]}, mis-shaped "
        f"{wrong[:10]}")


def save_part(path: str, part: str, config: Mapping, variables, *,
              overwrite: bool = False) -> str:
  """Write a part directory (checked first, renamed into place at the end).

  Args:
    path: the directory to create.
    part: "lpips", "arcface" or "discriminator".
    config: JSON-able architecture fields (see expected_shapes).
    variables: the network's variables.
    overwrite: replace an existing part directory.

  Returns:
    The absolute path written.
  """
  path = os.path.abspath(os.fspath(path))
  config = json.loads(json.dumps(dict(config)))
  arrays = jax.tree_util.tree_map(np.asarray, dict(variables))
  check(part, config, arrays, f"save_part({path!r})")
  if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
    if not overwrite:
      raise FileExistsError(f"{path} exists; pass overwrite=True (--overwrite)"
                            " or choose another path")
    if not _is_part_dir(path):
      raise FileExistsError(f"{path} is not a padinv_jax part directory, so "
                            "it is not replaced; remove it yourself")
  parent = os.path.dirname(path)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-", dir=parent)
  try:
    import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
    ocp.PyTreeCheckpointer().save(os.path.join(tmp, "arrays"), arrays)
    with open(os.path.join(tmp, "config.json"), "w") as f:
      json.dump({"format": FORMAT, "version": VERSION, "part": part,
                 "config": config}, f, indent=2, sort_keys=True)
      f.write("\n")
    if os.path.exists(path):
      shutil.rmtree(path)
    os.rename(tmp, path)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return path


def _is_part_dir(path: str) -> bool:
  try:
    with open(os.path.join(path, "config.json")) as f:
      return json.load(f).get("format") == FORMAT
  except (OSError, ValueError, AttributeError):
    return False


def read_config(path: str) -> dict:
  """The config.json of a part directory (format checked)."""
  cfg_path = os.path.join(path, "config.json")
  try:
    with open(cfg_path) as f:
      meta = json.load(f)
  except (OSError, ValueError) as e:
    raise ValueError(f"{path} is not a padinv_jax part directory ({e}); "
                     "write one with padinv-convert") from e
  if not isinstance(meta, dict) or meta.get("format") != FORMAT:
    raise ValueError(f"{cfg_path} is not a padinv_jax part config")
  if meta.get("version") != VERSION:
    raise ValueError(f"{cfg_path} has version {meta.get('version')!r}; this "
                     f"padinv_jax reads version {VERSION}")
  return meta


def load_part(path: str, part: str) -> dict:
  """Read a part directory's variables (host numpy arrays), checked.

  Args:
    path: the directory written by save_part / padinv-convert.
    part: which network it must hold.

  Returns:
    The variables tree.
  """
  path = os.path.abspath(os.fspath(path))
  meta = read_config(path)
  if meta.get("part") != part:
    raise ValueError(f"{path} holds {meta.get('part')!r} weights, not "
                     f"{part!r}")
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  ckpt = ocp.PyTreeCheckpointer()
  arrays_path = os.path.join(path, "arrays")
  try:
    tree = ckpt.metadata(arrays_path).item_metadata.tree
    args = jax.tree_util.tree_map(
        lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    arrays = ckpt.restore(arrays_path,
                          args=ocp.args.PyTreeRestore(restore_args=args))
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f"the arrays in {arrays_path} could not be read "
                     f"({type(e).__name__}: {e}); re-create {path}") from e
  check(part, meta["config"], arrays, path)
  return arrays
