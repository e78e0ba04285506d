"""FFHQ face alignment (NVIDIA's procedure) from 68 landmarks, and paste-back.

DESIGN.md section 12. Given dlib's 68 iBUG landmarks of one face, the eyes
and mouth corners fix an oriented square (the quad: centre c, half-axes x
and y = rot(x)); the photo is shrunk if the square is much larger than the
output, cropped around it with a border, reflect-padded with the blur /
median blend where the square leaves the photo, sampled with PIL's QUAD
transform at ``transform_size`` and resized to ``output_size``. Defaults are
FFHQ's (1024 from 4096, rotation levelled, padding on); pSp / e4e use
256 / 256. Pure numpy + SciPy + Pillow, so it is testable without a
detector (data/face_detect.py finds landmarks with dlib).

``Alignment.transform`` keeps what paste-back needs (the quad in ORIGINAL
photo coordinates, the photo's size, the landmarks) as JSON-able data;
``paste_back`` maps an aligned (possibly edited) image back into the photo
through the inverse of the quad map with a feathered mask, and leaves every
pixel outside the mask untouched.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Optional

import numpy as np
import scipy.ndimage
from PIL import Image

LANCZOS = Image.Resampling.LANCZOS  # Pillow's former ANTIALIAS
BILINEAR = Image.Resampling.BILINEAR
QUAD = Image.Transform.QUAD


@dataclasses.dataclass
class Alignment:
  image: Image.Image          # the aligned face, output_size x output_size
  transform: dict             # quad (TL, BL, BR, TR), source_size, ...

  def save_transform(self, path: str) -> None:
    with open(path, "w") as f:
      json.dump(self.transform, f, indent=1)


def _rot90(v):
  """(-v_y, v_x): a quarter turn in image coordinates (y down)."""
  return np.array([-v[1], v[0]], np.float64)


def face_square(landmarks, rotate_level: bool = True):
  """(centre c, half-axis x, half-axis y) of the aligned square (float64)."""
  lm = np.asarray(landmarks, np.float64)
  if lm.shape != (68, 2) or not np.isfinite(lm).all():
    raise ValueError(f"expected 68 finite (x, y) landmarks, got an array of "
                     f"shape {lm.shape}")
  eye_l, eye_r = lm[36:42].mean(axis=0), lm[42:48].mean(axis=0)
  eyes = (eye_l + eye_r) / 2
  eye_to_eye = eye_r - eye_l
  eye_to_mouth = (lm[48] + lm[54]) / 2 - eyes
  half = max(2.0 * np.hypot(*eye_to_eye), 1.8 * np.hypot(*eye_to_mouth))
  if half <= 0:
    raise ValueError("degenerate landmarks: the eyes and mouth coincide")
  if rotate_level:
    x = eye_to_eye - _rot90(eye_to_mouth)
    x = x / np.hypot(*x) * half
  else:
    x = np.array([half, 0.0])
  return eyes + 0.1 * eye_to_mouth, x, _rot90(x)


def square_to_quad(c, x, y) -> np.ndarray:
  """[4, 2] corners TL, BL, BR, TR (PIL QUAD's NW, SW, SE, NE)."""
  return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def _shrink(img, quad, qsize, output_size):
  s = int(math.floor(qsize / output_size * 0.5))
  if s <= 1:
    return img, quad, qsize
  w, h = img.size
  img = img.resize((int(np.rint(w / s)), int(np.rint(h / s))), LANCZOS)
  return img, quad / s, qsize / s


def _bounds(quad):
  return (int(math.floor(quad[:, 0].min())), int(math.floor(quad[:, 1].min())),
          int(math.ceil(quad[:, 0].max())), int(math.ceil(quad[:, 1].max())))


def _crop(img, quad, border):
  left, top, right, bottom = _bounds(quad)
  w, h = img.size
  box = (max(left - border, 0), max(top - border, 0), min(right + border, w),
         min(bottom + border, h))
  if box[2] - box[0] < w or box[3] - box[1] < h:
    img = img.crop(box)
    quad = quad - np.array(box[:2], np.float64)
  return img, quad


def _reflect_pad(img, quad, qsize, border):
  left, top, right, bottom = _bounds(quad)
  w, h = img.size
  pad = [max(border - left, 0), max(border - top, 0),
         max(right - w + border, 0), max(bottom - h + border, 0)]
  if max(pad) <= border - 4:
    return img, quad
  pl, pt, pr, pb = np.maximum(pad, int(np.rint(qsize * 0.3)))
  a = np.pad(np.asarray(img, np.float32), ((pt, pb), (pl, pr), (0, 0)),
             mode="reflect")
  hh, ww = a.shape[:2]
  yy, xx = np.ogrid[:hh, :ww]
  # 1 at the padded border, 0 where the photo was, negative inside it.
  edge = np.maximum(
      1.0 - np.minimum(np.float32(xx) / pl, np.float32(ww - 1 - xx) / pr),
      1.0 - np.minimum(np.float32(yy) / pt, np.float32(hh - 1 - yy) / pb))
  edge = edge[:, :, None]
  sigma = qsize * 0.02
  blurred = scipy.ndimage.gaussian_filter(a, [sigma, sigma, 0])
  # In place: the blend is computed wider but stored as float32 after each
  # step, as the original does (a float64 copy rounds differently).
  a += (blurred - a) * np.clip(3.0 * edge + 1.0, 0.0, 1.0)
  a += (np.median(a, axis=(0, 1)) - a) * np.clip(edge, 0.0, 1.0)
  img = Image.fromarray(np.uint8(np.clip(np.rint(a), 0, 255)), "RGB")
  return img, quad + np.array([pl, pt], np.float64)


def align_face(photo: Image.Image, landmarks, *, output_size: int = 1024,
               transform_size: int = 4096, enable_padding: bool = True,
               rotate_level: bool = True) -> Alignment:
  """One face of ``photo`` aligned as FFHQ (or pSp with 256 / 256).

  Args:
    photo: the whole photo (converted to RGB if it is not).
    landmarks: [68, 2] dlib landmarks (x, y) in the photo's pixels.
    output_size: side of the result (FFHQ 1024, pSp 256).
    transform_size: side sampled by the QUAD transform before the final
      LANCZOS resize (FFHQ 4096: 4x supersampling; pSp = output_size).
    enable_padding: reflect-pad where the square leaves the photo.
    rotate_level: level the eyes (False: an upright square).
  """
  if output_size < 1 or transform_size < output_size:
    raise ValueError(f"need 1 <= output_size <= transform_size, got "
                     f"{output_size} / {transform_size}")
  if photo.mode != "RGB":
    photo = photo.convert("RGB")
  c, x, y = face_square(landmarks, rotate_level)
  quad0 = square_to_quad(c, x, y)
  qsize = 2.0 * float(np.hypot(*x))
  img, quad, qs = _shrink(photo, quad0.copy(), qsize, output_size)
  border = max(int(np.rint(qs * 0.1)), 3)
  img, quad = _crop(img, quad, border)
  if enable_padding:
    img, quad = _reflect_pad(img, quad, qs, border)
  img = img.transform((transform_size, transform_size), QUAD,
                      tuple((quad + 0.5).flatten()), BILINEAR)
  if output_size < transform_size:
    img = img.resize((output_size, output_size), LANCZOS)
  transform = {
      "quad": quad0.tolist(), "centre": c.tolist(), "x": x.tolist(),
      "y": y.tolist(), "source_size": list(photo.size),
      "output_size": output_size, "transform_size": transform_size,
      "enable_padding": enable_padding, "rotate_level": rotate_level,
      "landmarks": np.asarray(landmarks, np.float64).tolist()}
  return Alignment(img, transform)


def aligned_coordinates(transform: dict, xs, ys, size: Optional[int] = None):
  """Original pixel coordinates -> (u, v) in [0, 1] of the aligned square,
  and the aligned pixel coordinates (size u - 0.5, size v - 0.5)."""
  q = np.asarray(transform["quad"], np.float64)
  origin, ax, ay = q[0], (q[3] - q[0]) / 2, (q[1] - q[0]) / 2
  norm = 2.0 * float(ax @ ax)
  dx, dy = xs - origin[0], ys - origin[1]
  u = (dx * ax[0] + dy * ax[1]) / norm
  v = (dx * ay[0] + dy * ay[1]) / norm
  size = size or int(transform["output_size"])
  return u, v, size * u - 0.5, size * v - 0.5


def _bilinear(img: np.ndarray, px, py):
  h, w = img.shape[:2]
  x0 = np.clip(np.floor(px).astype(np.int64), 0, w - 1)
  y0 = np.clip(np.floor(py).astype(np.int64), 0, h - 1)
  x1, y1 = np.clip(x0 + 1, 0, w - 1), np.clip(y0 + 1, 0, h - 1)
  fx = np.clip(px - np.floor(px), 0, 1)[..., None]
  fy = np.clip(py - np.floor(py), 0, 1)[..., None]
  a = img.astype(np.float64)
  top = a[y0, x0] * (1 - fx) + a[y0, x1] * fx
  bot = a[y1, x0] * (1 - fx) + a[y1, x1] * fx
  return top * (1 - fy) + bot * fy


def paste_back(photo, aligned, transform: dict, *,
               feather: float = 0.1) -> np.ndarray:
  """The aligned (edited) face put back into the photo, feathered.

  Args:
    photo: the original photo (PIL image or uint8 [H, W, 3]).
    aligned: the aligned image, any size (a reconstruction at the
      generator's resolution is fine): [S, S, 3] uint8 / PIL.
    transform: Alignment.transform (or its JSON).
    feather: width of the blend ramp as a fraction of the square's side.

  Returns:
    uint8 [H, W, 3]: outside the mask the photo's pixels, bit for bit.
  """
  base = np.asarray(photo.convert("RGB") if isinstance(photo, Image.Image)
                    else photo, np.uint8)
  face = np.asarray(aligned.convert("RGB") if isinstance(aligned, Image.Image)
                    else aligned)
  if face.dtype != np.uint8:
    raise ValueError(f"aligned image must be uint8, got {face.dtype}")
  if list(base.shape[1::-1]) != list(transform["source_size"]):
    raise ValueError(f"the photo is {base.shape[1]}x{base.shape[0]} but the "
                     f"transform was made on {transform['source_size']}")
  q = np.asarray(transform["quad"], np.float64)
  h, w = base.shape[:2]
  x0 = max(int(math.floor(q[:, 0].min())), 0)
  x1 = min(int(math.ceil(q[:, 0].max())) + 1, w)
  y0 = max(int(math.floor(q[:, 1].min())), 0)
  y1 = min(int(math.ceil(q[:, 1].max())) + 1, h)
  out = base.copy()
  if x1 <= x0 or y1 <= y0:
    return out
  ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
  u, v, px, py = aligned_coordinates(transform, xs, ys, face.shape[0])
  inside = np.minimum(np.minimum(u, 1 - u), np.minimum(v, 1 - v))
  mask = np.clip(inside / max(feather, 1e-6), 0.0, 1.0)
  m = mask > 0
  if not m.any():
    return out
  sample = _bilinear(face, px[m], py[m])
  region = out[y0:y1, x0:x1]
  orig = region[m].astype(np.float64)
  blend = orig + (sample - orig) * mask[m][:, None]
  region[m] = np.clip(np.rint(blend), 0, 255).astype(np.uint8)
  return out
