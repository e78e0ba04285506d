"""padinv-convert: official PyTorch weights -> a padinv_jax model directory.

    python convert_weights.py SRC DST [--format auto|nvidia|rosinality|
        hammer|padinv|psp|e4e|arcface|lpips] [--entry G_ema] [--overwrite]
    python convert_weights.py MODEL_DIR OUT.pt --to rosinality

SRC is read through the restricted unpickler (torch itself is never
imported); ``--format auto`` detects the kind from the keys and says what it
found. Any failure prints one line and exits with status 2, leaving DST
untouched. For LPIPS give the torchvision trunk and the lpips linear layers
as ``TRUNK.pth+LIN.pth``.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import Optional, Sequence

from padinv_jax.convert import common
from padinv_jax.convert import torch_files
from padinv_jax.convert.errors import ConvertError
from padinv_jax.storage import interrupts

FORMATS = ("auto", "nvidia", "rosinality", "hammer", "padinv", "psp", "e4e",
           "arcface", "lpips", "inception")


# Format name -> module (imported lazily: they pull in jax and the models).
_MODULES = {"nvidia": "nvidia", "rosinality": "rosinality", "hammer": "hammer",
            "padinv": "hammer", "psp": "psp", "e4e": "psp",
            "arcface": "loss_formats", "lpips": "loss_formats",
            "inception": "inception_fid"}
_DETECT_ORDER = ("nvidia", "hammer", "psp", "rosinality", "loss_formats",
                 "inception_fid")


def _module(name: str):
  import importlib  # pylint: disable=import-outside-toplevel
  return importlib.import_module(f"padinv_jax.convert.{name}")


def detect_format(obj) -> str:
  """The format name for an unpickled file, or a ConvertError saying why not."""
  for name in _DETECT_ORDER:
    mod = _module(name)
    found = mod.detect(obj)
    if found:
      return found
  if isinstance(obj, dict):
    keys = sorted(map(str, obj))[:8]
    raise ConvertError(f"cannot tell what this file is (top-level keys: "
                       f"{keys}); give --format")
  raise ConvertError(f"cannot tell what this file is (a "
                     f"{type(obj).__name__}); give --format")


def load_sources(src: str):
  """Read SRC (or 'A+B' for two files) safely; returns (objects, names)."""
  paths = [src] if os.path.exists(src) or "+" not in src else src.split("+")
  objs = []
  for p in paths:
    if os.path.isdir(p):
      raise ConvertError(f"{p} is a directory; give the weight file itself")
    if not os.path.isfile(p):
      raise ConvertError(f"{p}: no such file")
    objs.append(torch_files.load_file(p)[0])
  return objs, [os.path.basename(p) for p in paths]


def convert_file(src: str, fmt: str = "auto",
                 entry: Optional[str] = None) -> common.Converted:
  """Read and convert one weight file (no writing).

  Args:
    src: the PyTorch / pickle file ('TRUNK+LIN' for two LPIPS files).
    fmt: one of FORMATS.
    entry: which network of a multi-network file (NVIDIA: G_ema | G).

  Returns:
    A common.Converted (what to write, and a description of what was found).
  """
  if fmt not in FORMATS:
    raise ConvertError(f"unknown --format {fmt!r}; one of {FORMATS}")
  objs, _ = load_sources(src)
  explicit = fmt != "auto"
  if fmt == "auto":
    fmt = "lpips" if len(objs) > 1 else detect_format(objs[0])
  if entry and fmt in ("psp", "e4e", "arcface", "lpips", "inception"):
    raise ConvertError(f"--entry is not used by the {fmt} format (the file "
                       "holds one network); drop it")
  mod = _module(_MODULES[fmt])
  if fmt == "lpips":
    return mod.convert_lpips(objs)
  if len(objs) != 1:
    raise ConvertError(f"--format {fmt} takes one file, got {len(objs)}")
  return mod.convert(objs[0], fmt=fmt, entry=entry, explicit=explicit)


def _check_dst(dst: str, overwrite: bool) -> None:
  if os.path.exists(dst) and not overwrite:
    if not os.path.isdir(dst) or os.listdir(dst):
      raise ConvertError(f"{dst} already exists; pass --overwrite to replace "
                         "it, or choose another destination")


def _check_finite(params) -> None:
  """Released weights are finite: inf / NaN means a damaged file."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from padinv_jax.storage import array_store  # pylint: disable=import-outside-toplevel
  for name, leaf in array_store.flatten(params).items():
    x = np.asarray(leaf)
    if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
      raise ConvertError(
          f"{name} holds {int(np.sum(~np.isfinite(x)))} non-finite values "
          f"(inf / NaN): the file is damaged; nothing was written")


def write(result: common.Converted, dst: str, overwrite: bool) -> str:
  """Write a conversion result to DST (a model or loss-network directory)."""
  # pylint: disable=import-outside-toplevel
  _check_finite(result.params)
  if result.kind == "model":
    from padinv_jax.storage import model_dir
    return model_dir.save_model(dst, result.config, result.params,
                                overwrite=overwrite)
  from padinv_jax.storage import part_dir
  return part_dir.save_part(dst, result.kind, result.config, result.params,
                            overwrite=overwrite)


def _one_line(e: BaseException) -> str:
  return " ".join(str(e).split()) or type(e).__name__


def build_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog="padinv-convert",
      description="Convert official PyTorch weights (NVIDIA, rosinality, "
                  "Hammer/PadInv, pSp/e4e, ArcFace, LPIPS) into a padinv_jax "
                  "directory, without running any code from the file.")
  p.add_argument("src", help="the PyTorch / pickle file (LPIPS: TRUNK+LIN)")
  p.add_argument("dst", help="the directory to write")
  p.add_argument("--format", default="auto", choices=FORMATS,
                 help="what SRC is (default: detect it from its keys)")
  p.add_argument("--entry", default=None,
                 help="which network of a multi-network file (NVIDIA: "
                      "G_ema (default), G, or D for training; rosinality: g_ema (default) or "
                      "g; Hammer / PadInv: generator_smooth (default) or "
                      "generator, or discriminator to write the D for "
                      "training)")
  p.add_argument("--overwrite", action="store_true",
                 help="replace DST if it exists")
  p.add_argument("--to", default=None, choices=("rosinality",),
                 help="the reverse direction: SRC is a padinv_jax model "
                      "directory, DST the .pt to write (rosinality "
                      "stylegan2-pytorch {g_ema, latent_avg}, as pSp / e4e / "
                      "ReStyle load it)")
  return p


def run(argv: Optional[Sequence[str]] = None) -> int:
  """The padinv-convert command; returns the exit status (0 ok, 2 error)."""
  args = build_parser().parse_args(argv)
  try:
    with interrupts.terminate_as_interrupt():
      return _run(args)
  except KeyboardInterrupt:
    print(f"padinv-convert: interrupted; {args.dst} was not written",
          file=sys.stderr)
    return interrupts.EXIT_INTERRUPTED


def _run(args) -> int:
  try:
    if args.to:
      from padinv_jax.convert import export_rosinality  # pylint: disable=import-outside-toplevel
      path, notes = export_rosinality.export(args.src, args.dst,
                                             overwrite=args.overwrite)
      for note in notes:
        print(f"note: {note}")
      print(f"wrote {path}")
      return 0
    _check_dst(args.dst, args.overwrite)
    result = convert_file(args.src, args.format, args.entry)
    print(f"found: {result.description}")
    for note in result.notes:
      print(f"note: {note}")
    path = write(result, args.dst, args.overwrite)
    print(f"wrote {path}")
    return 0
  except (ConvertError, ValueError, FileExistsError, FileNotFoundError,
          OSError) as e:
    print(f"padinv-convert: error: {_one_line(e)}", file=sys.stderr)
  except Exception as e:  # pylint: disable=broad-except
    if os.environ.get("PADINV_CONVERT_DEBUG"):
      traceback.print_exc()
    print(f"padinv-convert: error: could not convert {args.src} "
          f"({type(e).__name__}: {_one_line(e)}); set PADINV_CONVERT_DEBUG=1 "
          "for a traceback", file=sys.stderr)
  return 2


if __name__ == "__main__":
  sys.exit(run())
