"""Model directories: save_model / load, and the PadInvModel convenience object.

A model directory holds one model (generator, optionally an encoder)::

  DIR/config.json   {"format": "padinv_jax-model", "version": 1,
                     "contents": ["generator", "encoder"],
                     "config": {"generator": {...}, "encoder": {...}}}
  DIR/arrays/       an Orbax PyTree checkpoint of the variables
                    {"generator": {"params", "buffers"},
                     "encoder": {"params", "batch_stats", "buffers"}}

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
import shutil
import tempfile
from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from padinv_jax import config as config_lib
from padinv_jax import functional
from padinv_jax import inversion
from padinv_jax import metrics

FORMAT = "padinv_jax-model"
VERSION = 1
CONFIG_FILE = "config.json"
ARRAYS_DIR = "arrays"
PARTS = ("generator", "encoder")


# ---------------------------------------------------------------- checking

def _flatten(tree) -> dict[str, Any]:
  """{"a/b/c": leaf} with "/"-joined dict keys (the names errors show)."""
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    out["/".join(str(getattr(k, "key", k)) for k in path)] = leaf
  return out


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
    from padinv_jax import encoder as encoder_lib
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
  want = _flatten(expected_shapes(config))
  have = _flatten(params)
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
  lines = [f"{where}: the arrays do not match the model config "
           f"({len(missing)} missing, {len(unexpected)} unexpected, "
           f"{len(wrong)} mis-shaped)"]
  for title, items in (("missing", missing), ("unexpected", unexpected),
                       ("mis-shaped", wrong)):
    if items:
      shown = items[:20] + ([f"... and {len(items) - 20} more"]
                            if len(items) > 20 else [])
      lines.append(f"  {title}:\n    " + "\n    ".join(shown))
  lines.append("  The config and the arrays must come from the same model; "
               "re-create the directory with save_model / padinv-convert.")
  raise ValueError("\n".join(lines))


def _check_config(config, where: str) -> None:
  """The generator config is valid and the encoder's outputs fit it."""
  try:
    config_lib.validate_generator_config(config.generator)
    if _has_encoder_config(config):
      from padinv_jax import encoder as encoder_lib
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

def save_model(path: str, config, params, *, overwrite: bool = False) -> str:
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

  if os.path.exists(path):
    if not os.path.isdir(path):
      raise FileExistsError(f"save_model: {path} exists and is not a "
                            f"directory; choose another path")
    if os.listdir(path):
      if not overwrite:
        raise FileExistsError(f"save_model: {path} exists and is not empty; "
                              f"pass overwrite=True to replace a model "
                              f"directory, or choose another path")
      if not _looks_like_model_dir(path):
        raise FileExistsError(
            f"save_model: {path} is not empty and is not a padinv_jax model "
            f"directory, so it is not replaced even with overwrite=True; "
            f"remove it yourself or choose another path")
  parent = os.path.dirname(path)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-",
                         dir=parent)
  try:
    import orbax.checkpoint as ocp
    ocp.PyTreeCheckpointer().save(os.path.join(tmp, ARRAYS_DIR), arrays)
    meta = {"format": FORMAT, "version": VERSION,
            "contents": [p for p in PARTS if p in arrays],
            "config": config_to_json(config)}
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


def _looks_like_model_dir(path: str) -> bool:
  try:
    with open(os.path.join(path, CONFIG_FILE)) as f:
      return json.load(f).get("format") == FORMAT
  except (OSError, ValueError, AttributeError):
    return False


# -------------------------------------------------------------------- load

def _read_meta(path: str) -> dict:
  if not os.path.exists(path):
    raise FileNotFoundError(f"model directory {path} does not exist; give the"
                            f" directory written by save_model or "
                            f"padinv-convert")
  if not os.path.isdir(path):
    raise ValueError(f"{path} is a file, not a model directory; give the "
                     f"directory written by save_model or padinv-convert")
  cfg_path = os.path.join(path, CONFIG_FILE)
  if not os.path.isfile(cfg_path):
    raise ValueError(f"{path} is not a padinv_jax model directory (no "
                     f"{CONFIG_FILE}); convert weights with padinv-convert or "
                     f"write one with padinv_jax.save_model")
  try:
    with open(cfg_path) as f:
      meta = json.load(f)
  except (OSError, ValueError) as e:
    raise ValueError(f"{cfg_path} could not be read as JSON ({e}); the model"
                     f" directory is corrupt: re-create it") from e
  if not isinstance(meta, dict) or meta.get("format") != FORMAT:
    found = meta.get("format") if isinstance(meta, dict) else type(meta)
    raise ValueError(f"{cfg_path} is not a padinv_jax model config (format "
                     f"{found!r}, expected {FORMAT!r})")
  if meta.get("version") != VERSION:
    raise ValueError(f"{cfg_path} has format version {meta.get('version')!r};"
                     f" this padinv_jax reads version {VERSION}: update "
                     f"padinv_jax or re-create the directory")
  if not isinstance(meta.get("config"), dict):
    raise ValueError(f"{cfg_path} has no 'config' object; the model "
                     f"directory is corrupt: re-create it")
  return meta


def _restore_arrays(path: str) -> dict:
  arrays_path = os.path.join(path, ARRAYS_DIR)
  if not os.path.isdir(arrays_path):
    raise ValueError(f"{path} has no {ARRAYS_DIR}/ directory; the model "
                     f"directory is incomplete: re-create it with save_model "
                     f"or padinv-convert")
  import orbax.checkpoint as ocp
  ckpt = ocp.PyTreeCheckpointer()
  try:
    tree = ckpt.metadata(arrays_path).item_metadata.tree
    # Host numpy arrays: no device or sharding from the saving machine.
    restore_args = jax.tree_util.tree_map(
        lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    return ckpt.restore(arrays_path,
                        args=ocp.args.PyTreeRestore(restore_args=restore_args))
  except Exception as e:  # Orbax/TensorStore raise many types for bad files.
    raise ValueError(f"the arrays in {arrays_path} could not be read "
                     f"({type(e).__name__}: {e}); the model directory is "
                     f"corrupt or incomplete: re-create it") from e


def load(path: str) -> "PadInvModel":
  """Load a model directory written by save_model (or padinv-convert).

  Args:
    path: the model directory.

  Returns:
    A PadInvModel with ``.config``, ``.params`` (on the default device) and
    jitted methods.

  Raises:
    FileNotFoundError: the directory does not exist.
    ValueError: not a model directory, corrupt files, or arrays that do not
      match the config (every missing / unexpected / mis-shaped entry named).
  """
  path = os.path.abspath(os.fspath(path))
  meta = _read_meta(path)
  config = config_from_json(meta["config"], os.path.join(path, CONFIG_FILE))
  _check_config(config, os.path.join(path, CONFIG_FILE))
  arrays = _restore_arrays(path)
  check_params(arrays, config, f"model directory {path}")
  params = jax.device_put(arrays)
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
