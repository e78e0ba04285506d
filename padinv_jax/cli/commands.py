"""The `padinv` subcommands: each reads its inputs, runs the model, writes into --out.

Kept apart from main.py (the parser and the one error path) so each
command reads as what it computes.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Optional

import numpy as np

from padinv_jax.cli import align as cli_align
from padinv_jax.cli import files as cli_io
from padinv_jax.cli import run as cli_run
from padinv_jax.cli.files import InputError
from padinv_jax.data import images_io
from padinv_jax.inversion import apps

GRID_MAX_ROWS = 64  # a grid of a whole folder would be unreadable anyway


def _read(args, files, size):
  """(stems, images uint8, faces or None) of input files; with --align the
  largest face of each photo, aligned (one input per file, as without)."""
  if not getattr(args, "align", False):
    if getattr(args, "paste_back", False):
      raise InputError("--paste-back needs --align")
    return cli_io.unique_stems(files), cli_io.read_images(files, size), None
  faces, no_face, _ = cli_align.align_photos(
      files, size, cli_align.transform_size_for(size), largest=True)
  if no_face:
    raise InputError(f"--align: no face in {', '.join(no_face[:5])}; this "
                     "command needs one face per photo")
  return ([f.name for f in faces], np.stack([f.image for f in faces]),
          faces)


def _paste(outs, name, face, image):
  """One output image pasted back into its photo, as paste/NAME.png."""
  pasted = cli_align.paste_all([face], [images_io.to_uint8(image)])
  cli_io.save_png(outs, f"paste/{name}.png", pasted[face.photo])


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
  _, a_img, a_faces = _read(args, a_files, model.input_size)
  _, b_img, b_faces = _read(args, b_files, model.input_size)
  if args.paste_back:
    outs.reserve([f"paste/contour-{a}_details-{b}.png"
                  for a, b in zip(a_st, b_st)])
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
    if args.paste_back:  # the blend has A's layout: back into A's photo
      _paste(outs, f"contour-{a}_details-{b}", a_faces[i], mix[i])
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
  _, images, _ = _read(args, files, model.input_size)
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
  if args.paste_back:
    outs.reserve([f"paste/{s}_alpha{a:+g}.png" for s in stems
                  for a in alphas])
  _, images, faces = _read(args, targets, model.input_size)
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
      if args.paste_back:
        _paste(outs, f"{s}_alpha{a:+g}", faces[i], out[i])
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
