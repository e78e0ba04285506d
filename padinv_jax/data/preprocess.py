"""Image preprocessing with the original's semantics, in numpy + PIL.

The original (Hammer's datasets/transformations, CPU path) does, per image:
cv2.imdecode -> BGR to RGB -> centre square crop along the long side at
offset int((h - s) * 0.5) -> cv2.resize(..., INTER_AREA) to 256 (skipped when
already 256) -> horizontal mirror for the second half of a doubled dataset ->
float32 x / 255 * 2 - 1. The first three steps give a uint8 image; that is
what the TFDS builder stores, so nothing is lost by preparing ahead of time.

``resize_area`` reproduces cv2.INTER_AREA on uint8 images bit for bit (checked
against OpenCV 4.10 and 5.0 in tests/test_data.py when cv2 is importable),
without depending on OpenCV:
  * integer downscale factor k (1024 -> 256): the mean of k x k blocks; ties
    round half up for k = 2 ((sum + 2) >> 2) and half to even otherwise
    (float sum * (1 / k^2), then cvRound), as OpenCV's fast area path does;
  * other downscales: OpenCV's fractional-area table (each output pixel is
    the overlap-weighted mean of the source pixels it covers), accumulated in
    float32 in OpenCV's order, then rounded half to even;
  * upscales (images smaller than 256): OpenCV's INTER_AREA upscaling rule
    (bilinear with the "area" coefficients, 11-bit fixed point, OpenCV's
    SIMD rounding).

Decoding differs from the original only where the original would crash or
produce a non-RGB image: everything usable becomes 8-bit RGB (grey is
replicated, alpha is dropped, 16-bit samples keep their high byte as cv2's
IMREAD_COLOR does, CMYK goes through PIL). EXIF orientation is ignored, as
cv2.imdecode(IMREAD_UNCHANGED) ignores it. Anything else raises
``ImageDecodeError`` with the reason, so callers can skip and report it.
"""

from __future__ import annotations

import io
import warnings
import math

import numpy as np
from PIL import Image
from PIL import ImageOps

# cv2's fixed-point scale for linear resize coefficients (INTER_RESIZE_COEF_BITS).
_COEF_SCALE = 2048


class ImageDecodeError(ValueError):
  """An image file that cannot be used (corrupt, truncated, not an image).

  Attributes:
    path: the file's name as given to decode_image.
    reason: what is wrong, without the path.
  """

  def __init__(self, path: str, reason: str):
    super().__init__(f"{path}: {reason}")
    self.path, self.reason = path, reason


# The project's own pixel limit, checked from the header before decoding: a
# 140 KB PNG can declare 144 megapixels (2.5 GB decoded). 80 MP covers
# phone and camera photos; raise it per call for larger scans.
MAX_PIXELS = 80_000_000


def decode_image(data: bytes, name: str = "<bytes>", *,
                 max_pixels: int = MAX_PIXELS,
                 exif_orientation: bool = True) -> np.ndarray:
  """Encoded image bytes -> uint8 [H, W, 3] RGB.

  Args:
    data: the file's bytes (JPEG, PNG, BMP, WebP, TIFF, GIF: what PIL reads).
    name: the file's path, used in error messages.
    max_pixels: refuse images declaring more pixels (before decoding).
    exif_orientation: rotate / flip as the EXIF Orientation tag says (phone
      photos); False ignores it, as cv2.imdecode-based pipelines that want
      bit-exact preprocessing of stored pixels do.

  Returns:
    uint8 [H, W, 3] array.

  Raises:
    ImageDecodeError: empty, truncated, corrupt or unsupported files.
  """
  if not data:
    raise ImageDecodeError(name, "empty file (0 bytes)")
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", Image.DecompressionBombWarning)
      with Image.open(io.BytesIO(data)) as img:
        w, h = img.size
        if w * h > max_pixels:
          raise ImageDecodeError(
              name, f"{w} x {h} = {w * h / 1e6:.0f} megapixels, more than "
              f"the limit of {max_pixels / 1e6:.0f}; downscale it first")
        img.load()  # decodes fully: truncated files fail here, not later
        if exif_orientation:
          img = ImageOps.exif_transpose(img)
        arr = _to_rgb_uint8(img, name)
  except ImageDecodeError:
    raise
  except Image.DecompressionBombError as e:
    raise ImageDecodeError(name, f"declares too many pixels ({e})") from None
  except Image.UnidentifiedImageError as e:
    raise ImageDecodeError(name, "not an image in a format PIL can read "
                           f"({len(data)} bytes)") from e
  except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, ...
    raise ImageDecodeError(name, f"cannot decode ({type(e).__name__}: {e})"
                           ) from e
  if arr.shape[0] < 1 or arr.shape[1] < 1:
    raise ImageDecodeError(name, f"image has no pixels ({arr.shape})")
  return arr


def _to_rgb_uint8(img: Image.Image, name: str) -> np.ndarray:
  mode = img.mode
  if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
    # 16-bit grey (PNG/TIFF): keep the high byte, as cv2.IMREAD_COLOR does
    # (PIL's own convert("L") would clip at 255 instead of scaling).
    a = np.asarray(img).astype(np.int64)
    a = (np.clip(a, 0, 65535) >> 8).astype(np.uint8)
    return np.repeat(a[:, :, None], 3, axis=2)
  if mode == "F":
    raise ImageDecodeError(name, "floating-point images (PIL mode F) are not "
                           "supported; convert them to 8-bit first")
  if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
      mode == "P" and "transparency" in img.info):
    # Drop alpha (cv2.IMREAD_COLOR semantics); no compositing.
    img = img.convert("RGBA")
    return np.ascontiguousarray(np.asarray(img)[:, :, :3])
  if mode != "RGB":
    # L, 1, P, CMYK (PIL undoes Adobe's inverted CMYK), YCbCr, LAB, HSV.
    img = img.convert("RGB")
  return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


def center_crop_square(image: np.ndarray) -> np.ndarray:
  """Keep the short side; crop the long side at offset int((long - s) * 0.5)."""
  h, w = image.shape[:2]
  s = min(h, w)
  y = int((h - s) * 0.5)
  x = int((w - s) * 0.5)
  return image[y:y + s, x:x + s]


def preprocess(image: np.ndarray, resolution: int = 256) -> np.ndarray:
  """uint8 RGB [H, W, 3] -> centre square crop -> area resize, uint8 [R, R, 3]."""
  image = center_crop_square(image)
  if image.shape[0] != resolution:
    image = resize_area(image, resolution, resolution)
  return np.ascontiguousarray(image)


def normalize(images: np.ndarray) -> np.ndarray:
  """uint8 -> float32 in [-1, 1], with the original's float32 ops (x/255*2-1)."""
  x = np.asarray(images).astype(np.float32)
  return x / np.float32(255) * np.float32(2) + np.float32(-1)


# -- cv2.INTER_AREA ----------------------------------------------------------


def resize_area(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
  """cv2.resize(image, (out_w, out_h), interpolation=cv2.INTER_AREA), uint8.

  Args:
    image: uint8 [H, W] or [H, W, C].
    out_h: output height.
    out_w: output width.

  Returns:
    uint8 [out_h, out_w(, C)].
  """
  image = np.asarray(image)
  if image.dtype != np.uint8:
    raise TypeError(f"resize_area expects uint8 images, got {image.dtype}")
  squeeze = image.ndim == 2
  if squeeze:
    image = image[:, :, None]
  h, w, cn = image.shape
  if (h, w) == (out_h, out_w):
    out = image.copy()
  else:
    # OpenCV decides with doubles: inv_scale = dsize / ssize, scale = 1 / inv.
    inv_x, inv_y = out_w / w, out_h / h
    scale_x, scale_y = 1.0 / inv_x, 1.0 / inv_y
    if scale_x >= 1 and scale_y >= 1:
      ix, iy = int(round(scale_x)), int(round(scale_y))
      eps = np.finfo(np.float64).eps
      if abs(scale_x - ix) < eps and abs(scale_y - iy) < eps:
        out = _area_fast(image, ix, iy, out_h, out_w)
      else:
        out = _area_general(image, scale_x, scale_y, out_h, out_w)
    else:
      out = _area_upscale(image, scale_x, scale_y, inv_x, inv_y, out_h, out_w)
  return out[:, :, 0] if squeeze else out


def _area_fast(image, kx, ky, out_h, out_w):
  """Integer factors: block means (OpenCV's resizeAreaFast)."""
  cn = image.shape[2]
  s = np.zeros((out_h, out_w, cn), np.int32)
  for dy in range(ky):  # k^2 strided adds: much faster than a 5-D reduction
    for dx in range(kx):
      s += image[dy:out_h * ky:ky, dx:out_w * kx:kx]
  if kx == 2 and ky == 2 and cn in (1, 3, 4):
    return ((s + 2) >> 2).astype(np.uint8)
  # float(sum) * (1.f / area) then cvRound (half to even), as in OpenCV.
  v = s.astype(np.float32) * np.float32(1.0 / (kx * ky))
  return np.clip(np.rint(v), 0, 255).astype(np.uint8)


def _area_tab(ssize: int, dsize: int, scale: float):
  """OpenCV's computeResizeAreaTab as dense [dsize, K] (index, weight) tables.

  Padding taps have weight 0 (adding 0 * x leaves float sums unchanged).
  """
  taps = []
  for d in range(dsize):
    f1 = d * scale
    f2 = f1 + scale
    cell = min(scale, ssize - f1)
    s1, s2 = math.ceil(f1), math.floor(f2)
    s2 = min(s2, ssize - 1)
    s1 = min(s1, s2)
    row = []
    if s1 - f1 > 1e-3:
      row.append((s1 - 1, np.float32((s1 - f1) / cell)))
    for s in range(s1, s2):
      row.append((s, np.float32(1.0 / cell)))
    if f2 - s2 > 1e-3:
      row.append((s2, np.float32(min(min(f2 - s2, 1.0), cell) / cell)))
    taps.append(row)
  k = max(len(r) for r in taps)
  idx = np.zeros((dsize, k), np.int64)
  wgt = np.zeros((dsize, k), np.float32)
  for d, row in enumerate(taps):
    for j, (s, a) in enumerate(row):
      idx[d, j], wgt[d, j] = s, a
  return idx, wgt


def _area_general(image, scale_x, scale_y, out_h, out_w):
  """Fractional downscale: OpenCV's resizeArea, float32 in its order."""
  h, w, _ = image.shape
  xi, xw = _area_tab(w, out_w, scale_x)
  yi, yw = _area_tab(h, out_h, scale_y)
  src = image.astype(np.float32)
  # Horizontal pass for every source row: buf[r, dx] = sum_k S[r, xi] * xw.
  buf = np.zeros((h, out_w, image.shape[2]), np.float32)
  for k in range(xi.shape[1]):
    buf = buf + src[:, xi[:, k], :] * xw[None, :, k, None]
  # Vertical pass: sum[dy] = b0 * buf[y0] (+ b1 * buf[y1] ...), in row order.
  acc = buf[yi[:, 0]] * yw[:, 0, None, None]
  for k in range(1, yi.shape[1]):
    acc = acc + buf[yi[:, k]] * yw[:, k, None, None]
  return np.clip(np.rint(acc), 0, 255).astype(np.uint8)


def _linear_area_coeffs(ssize, dsize, scale, inv_scale):
  """OpenCV's INTER_AREA-upscale coefficients: offsets, fixed-point weights."""
  ofs = np.zeros(dsize, np.int64)
  coef = np.zeros((dsize, 2), np.int64)
  for d in range(dsize):
    s = math.floor(d * scale)
    f = np.float32((d + 1) - (s + 1) * inv_scale)
    f = np.float32(0) if f <= 0 else np.float32(f - np.floor(f))
    if s >= ssize - 1:
      s, f = ssize - 1, np.float32(0)
    ofs[d] = s
    c0 = np.float32(1) - f
    coef[d] = (np.rint(c0 * np.float32(_COEF_SCALE)),
               np.rint(f * np.float32(_COEF_SCALE)))
  return ofs, coef


def _area_upscale(image, scale_x, scale_y, inv_x, inv_y, out_h, out_w):
  """Upscale with INTER_AREA: OpenCV's fixed-point linear path, area mode."""
  h, w, cn = image.shape
  xo, xc = _linear_area_coeffs(w, out_w, scale_x, inv_x)
  yo, yc = _linear_area_coeffs(h, out_h, scale_y, inv_y)
  src = image.astype(np.int64)
  x1 = np.minimum(xo + 1, w - 1)
  # Where the right tap falls off the image OpenCV uses S[sx] * 2048 alone.
  buf = (src[:, xo, :] * xc[None, :, 0, None]
         + src[:, x1, :] * xc[None, :, 1, None])      # [H, out_w, C]
  y1 = np.minimum(yo + 1, h - 1)
  s0 = buf[yo].reshape(out_h, out_w * cn)
  s1 = buf[y1].reshape(out_h, out_w * cn)
  b0, b1 = yc[:, 0, None], yc[:, 1, None]
  # OpenCV rounds as its SIMD rows do: ((S >> 4) * b >> 16, summed, + 2) >> 2
  # (checked against cv2 on every element, row tails included).
  out = (((s0 >> 4) * b0 >> 16) + ((s1 >> 4) * b1 >> 16) + 2) >> 2
  return np.clip(out, 0, 255).astype(np.uint8).reshape(out_h, out_w, cn)
