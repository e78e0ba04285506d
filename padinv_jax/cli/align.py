"""`padinv align` and the --align / --paste-back options: photos in the wild.

Every face dlib finds in a photo is aligned (or only the largest with
--largest); each gets ``{stem}_face{k}.png`` and its transform
``{stem}_face{k}.json`` (quad in photo coordinates, photo size, landmarks,
box, which face is largest). Photos without a face are listed; the command
fails (exit 2) if no photo had one, and exits 1 if some had none.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import numpy as np
from PIL import Image

from padinv_jax.cli import files as cli_io
from padinv_jax.cli.files import InputError
from padinv_jax.data import align as align_lib
from padinv_jax.data import face_detect
from padinv_jax.data import preprocess


@dataclasses.dataclass
class AlignedFace:
  name: str            # {photo stem}_face{k}
  photo: str           # path of the photo
  image: np.ndarray    # uint8 [S, S, 3]
  transform: dict


def read_photo(path: str) -> np.ndarray:
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    raise InputError(f"{path}: cannot read ({e.strerror or e})") from e
  try:
    return preprocess.decode_image(data, path,
                                   exif_orientation=cli_io.EXIF_ORIENTATION)
  except preprocess.ImageDecodeError as e:
    raise InputError(str(e)) from e


def align_photos(files, output_size: int, transform_size: int,
                 largest: bool = False):
  """(faces, photos without a face, timings) for a list of photo paths."""
  if not face_detect.available():
    raise InputError(face_detect.INSTALL)
  faces, no_face = [], []
  t = {"detect_landmarks_s": 0.0, "transform_s": 0.0}
  for path, stem in zip(files, cli_io.unique_stems(files)):
    rgb = read_photo(path)
    t0 = time.perf_counter()
    found = face_detect.detect(rgb)
    t["detect_landmarks_s"] += time.perf_counter() - t0
    if not found:
      no_face.append(path)
      continue
    biggest = max(range(len(found)), key=lambda i: found[i].area)
    keep = [biggest] if largest else range(len(found))
    photo = Image.fromarray(rgb)
    for k in keep:
      t0 = time.perf_counter()
      al = align_lib.align_face(photo, found[k].landmarks,
                                output_size=output_size,
                                transform_size=transform_size)
      t["transform_s"] += time.perf_counter() - t0
      tr = dict(al.transform, photo=os.path.abspath(path),
                box=list(found[k].box), face_index=k,
                largest=(k == biggest), faces_in_photo=len(found))
      faces.append(AlignedFace(f"{stem}_face{k}", path,
                               np.asarray(al.image, np.uint8), tr))
  if not faces:
    raise InputError(f"no face found in any photo ({len(no_face)}: "
                     f"{', '.join(no_face[:5])}{' ...' if len(no_face) > 5 else ''})")
  for p in no_face:
    cli_io.warn(f"{p}: no face found; skipped")
  return faces, no_face, t


def transform_size_for(output_size: int, transform_size=None) -> int:
  """FFHQ's 4x supersampling by default (pSp uses --transform-size = size)."""
  return int(transform_size or 4 * output_size)


def cmd_align(args, outs):
  if args.size < 16 or args.size > 4096:
    raise InputError(f"--size must be in 16..4096, got {args.size}")
  files = cli_io.collect_images(args.photos)
  faces, no_face, t = align_photos(
      files, args.size, transform_size_for(args.size, args.transform_size),
      args.largest)
  outs.reserve([f"{f.name}.png" for f in faces] +
               [f"{f.name}.json" for f in faces] + ["align_summary.json"])
  for f in faces:
    Image.fromarray(f.image).save(outs.path(f"{f.name}.png"))
    with open(outs.path(f"{f.name}.json"), "w") as fh:
      json.dump(f.transform, fh, indent=1)
  summary = {"photos": len(files), "faces": len(faces),
             "photos_without_face": no_face,
             "seconds": {k: round(v, 3) for k, v in t.items()}}
  with open(outs.path("align_summary.json"), "w") as fh:
    json.dump(summary, fh, indent=1)
  args.exit_code = 1 if no_face else 0
  return f"{len(faces)} face(s) from {len(files) - len(no_face)} photo(s)"


def paste_all(faces, recon_uint8):
  """{photo path: photo with every face's image pasted back}."""
  out = {}
  for f, img in zip(faces, recon_uint8):
    base = out.get(f.photo)
    if base is None:
      base = read_photo(f.photo)
    out[f.photo] = align_lib.paste_back(base, img, f.transform)
  return out
