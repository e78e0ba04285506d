"""`padinv demo`: what PadInv does, from the embedded networks, with no download.

Loads the embedded Fashion-MNIST generator with its two encoders trained
here (PadInv: W+ and the padding space; pSp: W+ only), takes the 300
held-out test images the package ships, makes the four kinds of
padinv_jax.data.layouts (plain, shifted, cropped, two garments side by
side), and writes into --out:

  inversion.png      rows input | pSp | PadInv | PadInv + refinement;
                     columns: a few images of each kind
  blend.png          A | B | G(W+ of B, paddings of A) | G(W+ of A, paddings of B)
  interpolation.png  per pair: A -> B in W+ (A's paddings), in the padding
                     space (A's W+), in both
  from_average.png   StyleGAN2 at w_avg -> the image's paddings (supp. Fig. S2)
  edit.png           one-pair edit in the padding space: delta = E(A moved
                     right) - E(A), added to other garments at 0.5, 1, 1.5
  paddings.png       heatmaps (channel mean) of each padding map
  metrics.json       MSE / PSNR / SSIM / LPIPS per encoder and kind (all 300
                     images of each kind; refinement on the shown images)

and prints the metrics table. Nothing here is specific to Fashion-MNIST
except the defaults: --padinv / --psp take any two model directories with
one generator.
"""

from __future__ import annotations

import functools
import json
import time

import jax
import numpy as np

from padinv_jax.cli import run as cli_run
from padinv_jax.cli.files import InputError
from padinv_jax.data import embedded
from padinv_jax.data import images_io
from padinv_jax.data import layouts
from padinv_jax.evaluation import metrics
from padinv_jax.inversion import apps
from padinv_jax.storage import array_store

OUTPUTS = ("inversion.png", "blend.png", "interpolation.png",
           "from_average.png", "edit.png", "paddings.png", "metrics.json")
METRICS = ("mse", "psnr", "ssim", "lpips")


def add_parser(sub):
  p = sub.add_parser("demo", help="the embedded demo: inversion, blends, "
                     "interpolations, edits and metrics (no arguments needed)")
  p.add_argument("--out", default="demo_out", help="output folder "
                 "(default demo_out)")
  p.add_argument("--padinv", default="fashion32-padinv",
                 help="model directory (or embedded name) with the PadInv "
                      "encoder")
  p.add_argument("--psp", default="fashion32-psp",
                 help="model directory (or embedded name) with the pSp "
                      "encoder (no padding space)")
  p.add_argument("--num-images", type=int, default=300,
                 help="held-out test images per kind for the metrics "
                      "(at most 300)")
  p.add_argument("--show", type=int, default=4,
                 help="images per kind in the grids")
  p.add_argument("--refine", type=int, default=100, metavar="K",
                 help="Adam steps of refinement for the PadInv + refinement "
                      "column (0: leave it out)")
  p.add_argument("--refine-lr", type=float, default=0.01)
  p.add_argument("--zoom", type=int, default=2,
                 help="pixel repetition of the written grids")
  p.add_argument("--seed", type=int, default=0,
                 help="seeds the shifts and crops")
  p.add_argument("--overwrite", action="store_true",
                 help="replace existing output files")
  p.add_argument("--batch-size", type=int, default=100)
  p.set_defaults(func=None, model=None, ignore_exif=False)
  return p


def _load(path: str, what: str, want_paddings: bool) -> cli_run.Model:
  model = cli_run.Model.load(path, needs_encoder=True)
  has = bool(model.padding_keys())
  if has != want_paddings:
    raise InputError(
        f"--{what} {path}: expected an encoder "
        f"{'with' if want_paddings else 'without'} the padding space, found "
        f"one {'with' if has else 'without'}")
  return model


def _check_same_generator(a: cli_run.Model, b: cli_run.Model, names) -> None:
  digest = lambda m: array_store.tree_digest(m.params["generator"])
  if digest(a) != digest(b):
    raise InputError(f"{names[0]} and {names[1]} have different generators; "
                     f"the demo compares two encoders of one generator")


class _Metrics:
  """Per-image metrics at the images' resolution, LPIPS when available."""

  def __init__(self, size: int):
    self.lpips_vars, self.lpips_net = cli_run.load_lpips(None)
    self.fn = jax.jit(functools.partial(
        cli_run._metrics_fn, size=size, downsample="avgpool",  # pylint: disable=protected-access
        lpips_net=self.lpips_net))

  def __call__(self, images, recon, batch_size):
    return cli_run.batched(lambda c: self.fn(self.lpips_vars, None, *c),
                           (images, recon), batch_size, "metrics")


def _summary(values) -> dict:
  return {k: metrics.mean_ci95(values[k]) for k in METRICS if k in values}


def _table(result) -> str:
  names = [k for k in METRICS if k in next(iter(
      result["all"].values()))["pSp"]]
  head = {"mse": "MSE", "psnr": "PSNR dB", "ssim": "SSIM",
          "lpips": f"LPIPS-{result['lpips_net']}"}
  lines = [f"# held-out Fashion-MNIST test images, {result['num_images']} per "
           f"kind; mean +- 95% interval; MSE in [-1, 1] units",
           f"{'kind':<6} {'encoder':<16} " + " ".join(
               f"{head[k]:>17}" for k in names)]
  for section, rows in (("all", result["all"]), ("shown", result["shown"])):
    if section == "shown":
      lines.append(f"# the {result['num_shown']} shown images per kind, with "
                   f"{result['refine_steps']} refinement steps")
    for kind, per in rows.items():
      for enc, m in per.items():
        cells = []
        for k in names:
          ci = m[k]["ci95"]
          cells.append(f"{m[k]['mean']:>9.4f} +-{ci:6.4f}" if ci is not None
                       else f"{m[k]['mean']:>17.4f}")
        lines.append(f"{kind:<6} {enc:<16} " + " ".join(cells))
  return "\n".join(lines)


def _save(outs, name, rows, zoom):
  grid = images_io.make_grid(rows)
  grid = np.repeat(np.repeat(grid, zoom, 0), zoom, 1)
  images_io.save_png(outs.path(name), grid)


def _take(codes, idx):
  ws, pads = codes
  return ws[idx], {k: v[idx] for k, v in pads.items()}


def cmd_demo(args, outs) -> str:
  t0 = time.time()
  if not 1 <= args.num_images <= 300:
    raise InputError(f"--num-images must be in 1..300, got {args.num_images}")
  if not 1 <= args.zoom <= 16:
    raise InputError(f"--zoom must be in 1..16, got {args.zoom}")
  if not 1 <= args.show <= args.num_images:
    raise InputError(f"--show must be in 1..--num-images, got {args.show}")
  if args.refine < 0:
    raise InputError(f"--refine must be >= 0, got {args.refine}")
  outs.reserve(OUTPUTS)
  padinv = _load(args.padinv, "padinv", True)
  psp = _load(args.psp, "psp", False)
  _check_same_generator(padinv, psp, (args.padinv, args.psp))
  size, bs = padinv.input_size, args.batch_size
  images, _ = embedded.fashion_test_images(size=size)
  images = images[:args.num_images]
  kinds = {k: layouts.make_kind(images, k, seed=args.seed)
           for k in layouts.KINDS}
  measure = _Metrics(size)
  show = np.arange(args.show)

  result = {"num_images": len(images), "num_shown": args.show,
            "refine_steps": args.refine,
            "lpips_net": measure.lpips_net if measure.lpips_vars is not None
            else None, "all": {}, "shown": {}}
  columns, codes = [], {}
  for kind, x in kinds.items():
    codes[kind] = padinv.invert(x, bs)
    rec = {"pSp": psp.synthesize(*psp.invert(x, bs), bs),
           "PadInv": padinv.synthesize(*codes[kind], bs)}
    shown = {name: r[show] for name, r in rec.items()}
    if args.refine:
      ws, pads = padinv.refine_batch(
          x[show], *_take(codes[kind], show), steps=args.refine,
          lr=args.refine_lr, lpips_vars=measure.lpips_vars,
          lpips_net=measure.lpips_net)
      shown["PadInv+refine"] = np.asarray(padinv.synthesize_batch(ws, pads))
    result["all"][kind] = {n: _summary(measure(x, r, bs))
                           for n, r in rec.items()}
    result["shown"][kind] = {n: _summary(measure(x[show], r, bs))
                             for n, r in shown.items()}
    columns.append([x[show]] + list(shown.values()))
  # Rows: input, then each encoder; columns: the shown images of each kind.
  rows = [sum((list(c[r]) for c in columns), []) for r in range(
      len(columns[0]))]
  _save(outs, "inversion.png", rows, args.zoom)

  # Blends and interpolations between plain garments i and i + show.
  plain = codes["plain"]
  a_idx = show
  b_idx = (show + args.show) % len(images)
  ws_a, pads_a = _take(plain, a_idx)
  ws_b, pads_b = _take(plain, b_idx)
  ab = padinv.synthesize(ws_b, pads_a, bs)  # layout of A, style of B
  ba = padinv.synthesize(ws_a, pads_b, bs)
  _save(outs, "blend.png", [[images[i], images[j], ab[r], ba[r]]
                            for r, (i, j) in enumerate(zip(a_idx, b_idx))],
        args.zoom)

  steps = 8
  strips = []
  for r in range(min(2, args.show)):
    pair = slice(r, r + 1)
    for space in ("w", "padding", "both"):
      c = apps.interpolate(_take((ws_a, pads_a), pair),
                           _take((ws_b, pads_b), pair), steps, space=space)
      frames = padinv.synthesize(*apps.flatten_steps(c), bs)
      strips.append(list(frames))
  _save(outs, "interpolation.png", strips, args.zoom)

  ws_s, pads_s = _take(plain, show)
  c = padinv.from_average(pads_s, steps, ws_s.shape[1])
  frames = padinv.synthesize(*apps.flatten_steps(c), bs)
  frames = frames.reshape((steps, args.show) + frames.shape[1:])
  _save(outs, "from_average.png",
        [list(frames[:, i]) + [images[i]] for i in range(args.show)],
        args.zoom)

  # One-pair edit: A and A moved right by 1/8 of the side.
  a = images[:1]
  moved = np.zeros_like(a)
  d = size // 8
  moved[:, :, d:] = a[:, :, :-d]
  codes_pair = padinv.invert(np.concatenate([a, moved]), bs)
  alphas = (0.5, 1.0, 1.5)
  targets = _take(plain, b_idx)
  edited = [padinv.synthesize(*apps.edit_with_pair(
      _take(codes_pair, [0]), _take(codes_pair, [1]), targets, al,
      space="padding"), bs) for al in alphas]
  recon_t = padinv.synthesize(*targets, bs)
  _save(outs, "edit.png",
        [[a[0], moved[0]] + [images[j], recon_t[r]] + [e[r] for e in edited]
         for r, j in enumerate(b_idx)], args.zoom)

  maps = padinv.heatmaps(pads_s, 1)
  scale = max(1, 2 * size // next(iter(pads_s.values())).shape[1])
  up = lambda m: np.repeat(np.repeat(apps.colorize(m), scale, 0), scale, 1)
  heat_rows = []
  for i in range(args.show):
    tiles = [up(maps[k]["mean"][i]) for k in maps]
    side = tiles[0].shape[0]
    k = max(1, side // size)
    big = np.repeat(np.repeat(images[i], k, 0), k, 1)[:side, :side]
    o = (side - big.shape[0]) // 2
    canvas = np.zeros((side, side, 3), np.uint8)
    canvas[o:o + big.shape[0], o:o + big.shape[1]] = big
    heat_rows.append([canvas] + tiles)
  _save(outs, "paddings.png", heat_rows, 1)

  result["seconds"] = time.time() - t0
  result["models"] = {"padinv": padinv.loaded.path, "psp": psp.loaded.path}
  result["files"] = {
      "inversion.png": "rows: input | " + " | ".join(result["shown"][
          "plain"]) + f"; columns: {args.show} images of each kind (" +
                       ", ".join(layouts.KINDS) + ")",
      "blend.png": "A | B | layout (paddings) of A + style (W+) of B | the "
                   "reverse",
      "interpolation.png": "per pair: rows W+ | padding space | both, A -> B",
      "from_average.png": f"{steps} steps from StyleGAN2 at w_avg to the "
                          "image's paddings, then the input",
      "edit.png": "A | A moved right | target | its reconstruction | edited "
                  f"at alpha {alphas} (padding space)",
      "paddings.png": "input | channel-mean heatmap of each padding map (" +
                      ", ".join(maps) + ")"}
  with open(outs.path("metrics.json"), "w") as f:
    json.dump(result, f, indent=2)
  print(_table(result))
  return (f"{len(OUTPUTS)} files in {result['seconds']:.0f} s "
          f"(inversion, blends, interpolations, from-average, edit, padding "
          f"heatmaps, metrics)")
