"""Strict assignment of official weights onto a padinv_jax parameter tree.

Every converter describes, for each leaf of the TARGET tree (made with
jax.eval_shape of the flax init, so nothing is guessed), which official key
feeds it and how the array is laid out. ``assign`` then fails with the full
list of missing, unexpected and mis-shaped keys, never half-loading.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Callable, Iterable, Mapping, Optional, Sequence

import numpy as np

from padinv_jax.convert.errors import ConvertError, MismatchError

FIR_1331 = np.outer([1.0, 3.0, 3.0, 1.0], [1.0, 3.0, 3.0, 1.0]) / 64.0


# ----------------------------------------------------------------- layouts

def oihw_to_hwio(a: np.ndarray) -> np.ndarray:
  """Torch conv weight [O, I, kh, kw] -> Flax [kh, kw, I, O]."""
  return np.transpose(a, (2, 3, 1, 0))


def dense_t(a: np.ndarray) -> np.ndarray:
  """Torch linear weight [out, in] -> [in, out]."""
  return np.transpose(a)


def chw_to_hwc(a: np.ndarray) -> np.ndarray:
  return np.transpose(a, (1, 2, 0))


def identity(a: np.ndarray) -> np.ndarray:
  return a


def nchw_flatten_dense(c: int, h: int, w: int) -> Callable:
  """Dense [out, C*H*W] after an NCHW flatten -> [H*W*C, out] for NHWC input."""
  def f(a):
    out = a.shape[0]
    if a.shape[1] != c * h * w:
      return np.transpose(a)  # let the shape check report it
    a = a.reshape(out, c, h, w).transpose(0, 2, 3, 1).reshape(out, h * w * c)
    return np.transpose(a)
  return f


@dataclasses.dataclass(frozen=True)
class Src:
  """Where one target leaf comes from: an official key and a layout change."""
  key: str
  transform: Callable[[np.ndarray], np.ndarray] = identity


# ------------------------------------------------------------------- trees

def flatten(tree: Mapping, prefix: str = "") -> dict[str, object]:
  """Nested dicts -> {'a/b/c': leaf}."""
  out = {}
  for k, v in tree.items():
    path = f"{prefix}/{k}" if prefix else str(k)
    if isinstance(v, Mapping):
      out.update(flatten(v, path))
    else:
      out[path] = v
  return out


def unflatten(flat: Mapping[str, object]) -> dict:
  out: dict = {}
  for path, v in flat.items():
    node = out
    parts = path.split("/")
    for p in parts[:-1]:
      node = node.setdefault(p, {})
    node[parts[-1]] = v
  return out


def _short(items: Sequence[str], n: int = 8) -> str:
  items = list(items)
  s = ", ".join(items[:n])
  return s + (f" (+{len(items) - n} more)" if len(items) > n else "")


def check_fir(key: str, value: np.ndarray) -> None:
  """Refuse a resampling filter buffer other than outer([1,3,3,1]) / 64."""
  v = np.asarray(value, np.float64)
  if v.shape != (4, 4) or not np.allclose(v, FIR_1331, rtol=0, atol=1e-6):
    raise ConvertError(
        f"{key} is not the [1,3,3,1] FIR filter this port implements (shape "
        f"{v.shape}); networks with other resampling filters are not "
        "supported")


def assign(target: Mapping, source: Mapping[str, np.ndarray],
           rule: Callable[[str], Optional[Src]], *, what: str,
           ignore: Callable[[str], bool] = lambda k: False,
           check: Optional[Mapping[str, Callable]] = None) -> dict:
  """Fill the target tree from official weights, strictly.

  Args:
    target: nested dict of shaped leaves (jax.ShapeDtypeStruct / arrays), as
      jax.eval_shape(init) returns.
    source: {official key: numpy array}.
    rule: target path ('params/mapping/fc0/weight') -> Src(official key,
      transform), or None when the leaf is not filled from this source (it
      is then reported missing).
    what: names the network in messages ("NVIDIA generator G_ema").
    ignore: official keys that are not parameters and may stay unused
      (num_batches_tracked, FIR filters checked separately).
    check: {regex on official keys: validator(key, value)} run on matching
      ignored keys (e.g. the FIR filter check).

  Returns:
    Nested dict like ``target`` of float32 (or the target dtype) numpy arrays.

  Raises:
    MismatchError listing every missing, unexpected and mis-shaped key.
  """
  flat_target = flatten(target)
  out, used = {}, set()
  missing, misshaped = [], []
  for path, leaf in flat_target.items():
    src = rule(path)
    if src is None or src.key not in source:
      missing.append(src.key if src is not None else f"<{path}>")
      continue
    used.add(src.key)
    value = np.asarray(src.transform(np.asarray(source[src.key])))
    want = tuple(leaf.shape)
    if value.shape != want:
      misshaped.append(f"{src.key} {tuple(np.shape(source[src.key]))} -> "
                       f"{path} needs {want}")
      continue
    out[path] = np.array(value, dtype=np.dtype(leaf.dtype))
  for key, validator in (check or {}).items():
    for k in source:
      if re.search(key, k):
        validator(k, source[k])
  unexpected = [k for k in source if k not in used and not ignore(k)]
  if missing or unexpected or misshaped:
    parts = []
    if missing:
      parts.append(f"missing {len(missing)}: {_short(missing)}")
    if unexpected:
      parts.append(f"unexpected {len(unexpected)}: {_short(unexpected)}")
    if misshaped:
      parts.append(f"mis-shaped {len(misshaped)}: {_short(misshaped, 4)}")
    raise MismatchError(
        f"{what} does not match the expected architecture: "
        + "; ".join(parts)
        + ". Check --format/--entry, or that the file is the network it "
          "claims to be")
  return unflatten(out)


def strip_prefix(sd: Mapping[str, np.ndarray], prefix: str) -> dict:
  """{prefix + k: v} -> {k: v} for the keys under ``prefix``."""
  return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def as_state_dict(obj, what: str) -> dict[str, np.ndarray]:
  """A plain {key: array} mapping (a torch state_dict) or a clear error."""
  if not isinstance(obj, Mapping) or not all(
      isinstance(k, str) and isinstance(v, np.ndarray) for k, v in obj.items()):
    raise ConvertError(f"{what} is not a state dict of tensors (found "
                       f"{type(obj).__name__})")
  return dict(obj)


def any_match(patterns: Iterable[str]) -> Callable[[str], bool]:
  regs = [re.compile(p) for p in patterns]
  return lambda k: any(r.search(k) for r in regs)


# ------------------------------------------------------------------ results

@dataclasses.dataclass
class Converted:
  """What a converter produced.

  kind: "model" (a model directory: generator [+ encoder]) or a loss-network
    part ("lpips", "arcface", "discriminator").
  config: ModelConfig for "model"; a plain dict of architecture fields for
    the parts.
  params: the variables ({"generator": ..., ["encoder": ...]} for a model).
  description: one line saying what was found.
  notes: extra lines worth telling (what was ignored, which entry was used).
  extra: other parts found in the same file, {kind: (config, params)}
    (e.g. a GAN checkpoint's discriminator).
  """
  kind: str
  config: object
  params: dict
  description: str
  notes: list = dataclasses.field(default_factory=list)
  extra: dict = dataclasses.field(default_factory=dict)


def generator_model_config(gen_cfg):
  """A generator-only ModelConfig around a converted generator config."""
  from padinv_jax.models import config as config_lib  # pylint: disable=import-outside-toplevel
  cfg = config_lib.model_config(with_encoder=False)
  cfg.generator = gen_cfg
  return cfg
