"""Directories for the frozen networks training and evaluation read: LPIPS, ArcFace, D, classifier.

A part directory holds one network's variables::

  DIR/config.json  {"format": "padinv_jax-part", "version": 1,
                    "part": "lpips" | "arcface" | "discriminator" |
                            "classifier",
                    "config": {architecture fields}}
  DIR/arrays/      an Orbax PyTree checkpoint of the variables

``padinv-convert`` writes them (``--format lpips``, ``--format arcface``,
``--entry discriminator``); ``load_part`` reads one back, checking every array
against jax.eval_shape of the network's init for the stored config.
"""

from __future__ import annotations

import json
import os
from typing import Mapping

import jax
import numpy as np

from padinv_jax.storage import array_store

FORMAT = "padinv_jax-part"
VERSION = 1
PARTS = ("lpips", "arcface", "discriminator", "classifier", "inception")


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
    from padinv_jax.models import discriminator as d_lib
    d_cfg = d_lib.discriminator_config(**dict(config))
    return jax.eval_shape(lambda k: d_lib.init_discriminator(k, d_cfg), key)
  if part == "classifier":
    from padinv_jax.models import classifier
    c_cfg = classifier.classifier_config(**{
        k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})
    return jax.eval_shape(lambda k: classifier.init_classifier(k, c_cfg), key)
  if part == "inception":
    from padinv_jax.models import inception
    return inception.param_shapes()
  raise ValueError(f"unknown part {part!r}; one of {PARTS}")


def check(part: str, config: Mapping, variables, where: str) -> None:
  """Raise ValueError naming every missing / unexpected / mis-shaped array."""
  array_store.check_tree(expected_shapes(part, config), variables, where,
                         f"the {part} arrays")


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
  meta = {"format": FORMAT, "version": VERSION, "part": part,
          "config": config}
  return array_store.write_dir(path, meta, arrays, overwrite=overwrite,
                               what="part")


def read_config(path: str) -> dict:
  """The config.json of a part directory (format checked)."""
  return array_store.read_meta(
      os.path.abspath(os.fspath(path)), FORMAT, VERSION, "part",
      "a directory written by padinv-convert (--format lpips / arcface, "
      "--entry discriminator / D)")


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
  arrays = array_store.read_arrays(path)
  check(part, meta["config"], arrays, path)
  return arrays
