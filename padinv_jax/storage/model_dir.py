"""Model directories: save_model / load, and the PadInvModel convenience object.

A model directory holds one model (generator, optionally an encoder)::

  DIR/config.json   {"format": "padinv_jax-model", "version": 1,
                     "contents": ["generator", "encoder"],
                     "config": {"generator": {...}, "encoder": {...}}}
  DIR/arrays/       an Orbax PyTree checkpoint of the variables
                    {"generator": {"params", "buffers"},
                     "encoder": {"params", "batch_stats", "buffers"}}

Two optional config.json fields keep embedded models small (the package's
asset budget): ``"float16_parts": ["encoder"]`` -- that part's float32 arrays
are stored rounded to float16 and read back as float32 (the model IS the
rounded weights; cards measure them), and ``"generator_asset": {"name":
"fashion32", "sha256": ...}`` -- no generator arrays are stored; they are
those of the embedded model of that name, checked against the digest.

Both directions check every array against jax.eval_shape of the model's init
for the stored config and name each missing, unexpected or mis-shaped entry,
so a directory that loads is one the pure functions can run. Arrays are
stored and restored as host numpy arrays (no device or sharding is recorded);
``load`` puts them on the default device.
"""

from __future__ import annotations

import collections
import functools
import json
import os
from typing import Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from padinv_jax.storage import array_store
from padinv_jax.storage import assets
from padinv_jax.storage import host_memory
from padinv_jax.models import config as config_lib
from padinv_jax.models import functional
from padinv_jax.inversion import core as inversion
from padinv_jax.evaluation import metrics

FORMAT = "padinv_jax-model"
VERSION = 1
CONFIG_FILE = array_store.CONFIG_FILE
PARTS = ("generator", "encoder")


# ---------------------------------------------------------------- checking

def expected_shapes(config) -> dict:
  """jax.eval_shape of the model's init: the variables a config implies.

  Args:
    config: ModelConfig; an encoder is expected iff it has an ``.encoder``.

  Returns:
    {"generator": ..., ["encoder": ...]} of jax.ShapeDtypeStruct.
  """
  return _expected_shapes(json.dumps(config_to_json(config), sort_keys=True))


@functools.lru_cache(maxsize=8)
def _expected_shapes(config_json: str) -> dict:
  # Keyed by the config's JSON: ConfigDicts are not hashable, and tracing the
  # encoder's init takes a second or more.
  config = config_from_json(json.loads(config_json), "expected_shapes")
  rng = jax.random.PRNGKey(0)
  out = {"generator": jax.eval_shape(
      functools.partial(functional.init_generator, config=config), rng)}
  if _has_encoder_config(config):
    from padinv_jax.models import encoder as encoder_lib
    out["encoder"] = jax.eval_shape(
        functools.partial(encoder_lib.init_encoder, config=config), rng)
  return out


def check_params(params, config, where: str) -> None:
  """Raise ValueError naming every entry of params that does not fit config.

  Args:
    params: {"generator": ..., ["encoder": ...]} arrays.
    config: the ModelConfig they should belong to.
    where: what to name in the message (a directory, "save_model(...)").
  """
  array_store.check_tree(expected_shapes(config), params, where,
                         "the arrays")


def _check_config(config, where: str) -> None:
  """The generator config is valid and the encoder's outputs fit it."""
  try:
    config_lib.validate_generator_config(config.generator)
    if _has_encoder_config(config):
      from padinv_jax.models import encoder as encoder_lib
      encoder_lib.check_compatible(config)
  except ValueError as e:
    raise ValueError(f"{where}: invalid model config: {e}") from e


def _has_encoder_config(config) -> bool:
  return "encoder" in config and config.encoder is not None


# ------------------------------------------------------------------ config

def config_to_json(config) -> dict:
  """The ModelConfig as a JSON-ready dict (tuples become lists)."""
  return json.loads(json.dumps(config.to_dict()))


def config_from_json(d: Mapping, where: str):
  """Rebuild a ModelConfig from config_to_json's output, strictly."""
  unknown = set(d) - set(PARTS)
  if unknown or "generator" not in d:
    raise ValueError(f"{where}: 'config' must have a 'generator' part and "
                     f"optionally an 'encoder' part, found keys {sorted(d)}")
  try:
    return config_lib.model_config(
        generator=dict(d["generator"]),
        encoder=dict(d["encoder"]) if d.get("encoder") is not None else None,
        with_encoder=d.get("encoder") is not None)
  except (ValueError, TypeError, KeyError) as e:
    raise ValueError(f"{where}: invalid model config: {e}") from e


# -------------------------------------------------------------------- save

def save_model(path: str, config, params, *, overwrite: bool = False,
               float16_parts: tuple = (), generator_asset: Optional[str] = None
               ) -> str:
  """Write a model directory (config.json + Orbax arrays).

  The arrays are checked against the config first, and the directory is
  written under a temporary name and renamed into place, so a failure never
  leaves a half-written model behind.

  Args:
    path: directory to create.
    config: ModelConfig; give it an ``.encoder`` part iff params has an
      "encoder" entry (``model_config(with_encoder=False)`` for a
      generator-only model).
    params: {"generator": {"params", "buffers"}, ["encoder": {"params",
      "batch_stats", "buffers"}]}.
    overwrite: replace an existing model directory at ``path``. A non-empty
      directory that is not a model directory is never replaced.
    float16_parts: parts ("encoder", "generator") whose float32 arrays are
      stored rounded to float16 (finite and within float16 range, or refused).
    generator_asset: the short name of an embedded model whose generator
      arrays are exactly ``params["generator"]``; they are then not stored.

  Returns:
    The absolute path written.
  """
  path = os.path.abspath(os.fspath(path))
  if not isinstance(params, Mapping) or "generator" not in params:
    raise ValueError("save_model: params must be {'generator': ..., "
                     "['encoder': ...]}, got "
                     f"{list(params) if isinstance(params, Mapping) else type(params)}")
  if _has_encoder_config(config) != ("encoder" in params):
    raise ValueError(
        "save_model: config and params disagree about the encoder (config "
        f"has one: {_has_encoder_config(config)}; params has one: "
        f"{'encoder' in params}); use model_config(with_encoder=False) for a "
        "generator-only model")
  _check_config(config, "save_model")
  arrays = jax.tree_util.tree_map(np.asarray, dict(params))
  check_params(arrays, config, f"save_model({path!r})")

  meta = {"format": FORMAT, "version": VERSION,
          "contents": [p for p in PARTS if p in arrays],
          "config": config_to_json(config)}
  if generator_asset is not None:
    digest = array_store.tree_digest(arrays["generator"])
    asset_gen = _asset_generator(generator_asset, "save_model")
    if array_store.tree_digest(asset_gen) != digest:
      raise ValueError(f"save_model: params['generator'] are not the arrays "
                       f"of the embedded model {generator_asset!r}")
    meta["generator_asset"] = {"name": generator_asset, "sha256": digest}
    arrays = {k: v for k, v in arrays.items() if k != "generator"}
  if float16_parts:
    unknown = set(float16_parts) - set(arrays)
    if unknown:
      raise ValueError(f"save_model: float16_parts names {sorted(unknown)}, "
                       f"which are not stored parts ({sorted(arrays)})")
    for part in float16_parts:
      arrays[part] = _to_float16(arrays[part], f"save_model({path!r}) {part}")
    meta["float16_parts"] = sorted(float16_parts)
  return array_store.write_dir(path, meta, arrays, overwrite=overwrite,
                               what="model")


def _to_float16(tree, where: str):
  def cast(x):
    if x.dtype != np.float32:
      return x
    if not np.all(np.isfinite(x)) or np.max(np.abs(x), initial=0) > 65504:
      raise ValueError(f"{where}: values outside float16's finite range")
    return x.astype(np.float16)
  return jax.tree_util.tree_map(cast, tree)


def _from_float16(stored, want, where: str):
  """Stored float16 leaves back to the float32 the config expects."""
  flat_w = array_store.flatten(want)

  def cast(path, v):
    k = array_store.path_name(path)
    w = flat_w.get(k)
    if w is None or np.dtype(w.dtype) != np.float32:
      return v  # check_params names it
    if v.dtype != np.float16:
      raise ValueError(f"{where}: {k} is stored as {v.dtype}, but "
                       f"config.json says the part is float16")
    return v.astype(np.float32)
  return jax.tree_util.tree_map_with_path(cast, stored)


def _asset_generator(name: str, where: str):
  """The generator arrays of an embedded model (never a user path)."""
  if not isinstance(name, str) or name not in assets.names():
    raise ValueError(f"{where}: generator_asset {name!r} is not a model "
                     f"embedded in this padinv_jax (known: {assets.names()})")
  src = assets.resolve(name)
  meta = _read_meta(src)
  if "generator_asset" in meta or meta.get("float16_parts"):
    raise ValueError(f"{where}: embedded model {name!r} is itself compacted;"
                     f" only a plain generator can be borrowed")
  arrays = array_store.read_arrays(src)
  if "generator" not in arrays:
    raise ValueError(f"{where}: embedded model {name!r} has no generator")
  return arrays["generator"]


def _complete(meta, arrays, config, path):
  """Apply config.json's float16_parts and generator_asset (see top)."""
  where = f"model directory {path}"
  arrays = dict(arrays)
  parts = meta.get("float16_parts", [])
  if not isinstance(parts, list) or not set(parts) <= set(PARTS):
    raise ValueError(f"{where}: float16_parts must list parts of {PARTS}, "
                     f"got {parts!r}")
  want = expected_shapes(config)
  for part in parts:
    if part not in arrays:
      raise ValueError(f"{where}: float16_parts names {part!r}, which is not "
                       f"stored")
    arrays[part] = _from_float16(arrays[part], want.get(part, {}), where)
  ref = meta.get("generator_asset")
  if ref is not None:
    if not isinstance(ref, dict) or set(ref) != {"name", "sha256"}:
      raise ValueError(f"{where}: generator_asset must be an object with "
                       f"'name' and 'sha256', got {ref!r}")
    if "generator" in arrays:
      raise ValueError(f"{where}: generator arrays are stored AND borrowed "
                       f"from {ref['name']!r}; the directory is inconsistent")
    gen = _asset_generator(ref["name"], where)
    if array_store.tree_digest(gen) != ref["sha256"]:
      raise ValueError(f"{where}: the embedded generator {ref['name']!r} is "
                       f"not the one this model was trained with (digest "
                       f"differs); reinstall padinv_jax")
    arrays["generator"] = gen
  return arrays


def _read_meta(path: str) -> dict:
  return array_store.read_meta(
      path, FORMAT, VERSION, "model",
      "the directory written by save_model or padinv-convert")


def load(path: str) -> "PadInvModel":
  """Load a model directory written by save_model (or padinv-convert).

  Args:
    path: the model directory, or the short name of a model embedded in the
      package (padinv_jax/assets, e.g. "fashion32") when no such directory
      exists.

  Returns:
    A PadInvModel with ``.config``, ``.params`` (on the default device) and
    jitted methods.

  Raises:
    FileNotFoundError: the directory does not exist.
    ValueError: not a model directory, corrupt files, or arrays that do not
      match the config (every missing / unexpected / mis-shaped entry named).
  """
  path = assets.resolve(os.fspath(path)) or path
  path = os.path.abspath(os.fspath(path))
  meta = _read_meta(path)
  config = config_from_json(meta["config"], os.path.join(path, CONFIG_FILE))
  _check_config(config, os.path.join(path, CONFIG_FILE))
  arrays = _complete(meta, array_store.read_arrays(path), config, path)
  check_params(arrays, config, f"model directory {path}")
  params = jax.device_put(arrays)
  del arrays
  host_memory.release()  # the reader's freed buffers (GBs for IR-SE-50)
  return PadInvModel(config, params, path=path)


# ------------------------------------------------------------------- model

class PadInvModel:
  """A loaded model: config, params and jitted pure functions over them.

  Each method calls the matching pure function (padinv_jax.mapping,
  synthesize, invert, reconstruct) under jax.jit; the jitted functions are
  built once per model, so repeated calls with the same shapes do not
  retrace. ``trace_counts`` records how often each one was traced.
  """

  def __init__(self, config, params, path: Optional[str] = None):
    self.config = config
    self.params = params
    self.path = path
    self.trace_counts = collections.Counter()
    self._jitted = {}

  def __repr__(self):
    g = self.config.generator
    enc = "with encoder" if self.has_encoder else "generator only"
    return (f"PadInvModel({g.resolution} px, {enc}, "
            f"path={self.path!r})")

  @property
  def has_encoder(self) -> bool:
    return "encoder" in self.params and _has_encoder_config(self.config)

  def _jit(self, name, fn, static_argnames=()):
    if name not in self._jitted:
      def counted(*args, **kwargs):
        self.trace_counts[name] += 1  # runs only while tracing
        return fn(*args, config=self.config, **kwargs)
      self._jitted[name] = jax.jit(counted, static_argnames=static_argnames)
    return self._jitted[name]

  def _require_encoder(self):
    if not self.has_encoder:
      where = f" ({self.path})" if self.path else ""
      raise ValueError(f"this model{where} has no encoder, so it cannot "
                       f"invert images; load a model directory that includes"
                       f" one (a PadInv or pSp checkpoint converted with "
                       f"padinv-convert)")

  def mapping(self, z, psi=1.0, cutoff: Optional[int] = None):
    """z [N, z_dim] -> ws [N, num_ws, w_dim]; see padinv_jax.mapping."""
    f = self._jit("mapping", functional.mapping, ("cutoff",))
    return f(self.params["generator"], jnp.asarray(z), psi=psi, cutoff=cutoff)

  def synthesize(self, ws, paddings=None, noise_mode: str = "const",
                 rng=None):
    """ws (+ paddings) -> [N, R, R, 3]; see padinv_jax.synthesize."""
    f = self._jit("synthesize", functional.synthesize, ("noise_mode",))
    return f(self.params["generator"], jnp.asarray(ws),
             dict(paddings) if paddings else None, noise_mode=noise_mode,
             rng=rng)

  def invert(self, images):
    """images -> (ws, paddings); see padinv_jax.invert."""
    self._require_encoder()
    images = self._check_images(images)
    f = self._jit("invert", inversion.invert)
    return f(self.params, images)

  def reconstruct(self, images, downsample: Optional[str] = "avgpool",
                  noise_mode: str = "const", rng=None):
    """G(E(images)); see padinv_jax.reconstruct.

    Composed from the jitted invert and synthesize (the codes stay on the
    device), so it reuses their compilations instead of compiling the
    encoder a second time; the result equals padinv_jax.reconstruct.
    """
    ws, paddings = self.invert(images)
    out = self.synthesize(ws, paddings, noise_mode=noise_mode, rng=rng)
    f = self._jitted.get(("downsample", downsample))
    if f is None:
      f = jax.jit(functools.partial(
          metrics.downsample, size=int(self.config.encoder.input_size),
          method=downsample))
      self._jitted[("downsample", downsample)] = f
    return f(out)

  def _check_images(self, images):
    # Eagerly: value checks (the float range) cannot run under jit.
    return inversion.check_images(images,
                                  int(self.config.encoder.input_size))
