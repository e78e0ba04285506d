"""FFHQ alignment: the library against an independent re-statement, and paste-back."""

import numpy as np
import pytest
from PIL import Image

from padinv_jax.data import align
from ffhq_align_ref import reference_align


def _template():
  """68 points with the eyes and mouth where a frontal face has them."""
  lm = np.zeros((68, 2))
  t = np.linspace(0, 2 * np.pi, 6, endpoint=False)
  lm[36:42] = np.stack([-30 + 8 * np.cos(t), -20 + 3 * np.sin(t)], 1)
  lm[42:48] = np.stack([30 + 8 * np.cos(t), -20 + 3 * np.sin(t)], 1)
  lm[48], lm[54] = (-22, 38), (22, 38)
  lm[:36] = np.stack([60 * np.cos(np.linspace(0, np.pi, 36)),
                      70 * np.sin(np.linspace(0, np.pi, 36))], 1)
  lm[49:54] = np.stack([np.linspace(-15, 15, 5), np.full(5, 34)], 1)
  lm[55:68] = np.stack([np.linspace(15, -15, 13), np.full(13, 42)], 1)
  return lm


def _photo(w, h, seed):
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:h, :w] / max(w, h)
  img = np.stack([128 + 100 * np.sin(9 * xx + 3 * k) * np.cos(7 * yy - k)
                  for k in range(3)], -1)
  img += rng.normal(0, 12, img.shape)
  return Image.fromarray(np.uint8(np.clip(img, 0, 255)), "RGB")


def _landmarks(scale, angle, centre):
  a = np.deg2rad(angle)
  r = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
  return _template() @ r.T * scale + centre


CASES = [  # photo size, face scale, angle, centre, what it exercises
    ((640, 480), 1.0, 0.0, (320, 240), "plain"),
    ((900, 700), 2.5, 17.0, (450, 330), "rotated, shrink"),
    ((500, 400), 1.8, -8.0, (120, 90), "near the corner: padding"),
    ((1600, 1200), 5.0, 5.0, (800, 600), "large: shrink > 1"),
]


@pytest.mark.parametrize("size,scale,angle,centre,_", CASES)
@pytest.mark.parametrize("mode", [(1024, 4096), (256, 256)])
@pytest.mark.parametrize("options", [dict(), dict(enable_padding=False),
                                     dict(rotate_level=False)])
def test_matches_the_reference(size, scale, angle, centre, _, mode, options):
  photo = _photo(*size, seed=int(scale * 10))
  lm = _landmarks(scale, angle, np.array(centre, float))
  if mode == (1024, 4096) and options:
    pytest.skip("options are checked at 256 (the 4096 transform is slow)")
  got = align.align_face(photo, lm, output_size=mode[0],
                         transform_size=mode[1], **options)
  want, quad = reference_align(photo, lm, *mode, **options)
  np.testing.assert_allclose(got.transform["quad"], quad, atol=1e-6, rtol=0)
  diff = np.abs(np.asarray(got.image, np.int16) - np.asarray(want, np.int16))
  assert diff.max() == 0, f"max pixel difference {diff.max()}"


def _psnr(a, b):
  mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
  return 10 * np.log10(255.0 ** 2 / max(mse, 1e-12))


def test_paste_back_of_the_crop_itself():
  photo = _photo(900, 700, seed=3)
  lm = _landmarks(2.0, 12.0, np.array([450.0, 330.0]))
  al = align.align_face(photo, lm, output_size=1024, transform_size=1024)
  out = align.paste_back(photo, al.image, al.transform)
  base = np.asarray(photo)
  ys, xs = np.mgrid[:700, :900].astype(float)
  u, v, _, _ = align.aligned_coordinates(al.transform, xs, ys)
  inside = np.minimum(np.minimum(u, 1 - u), np.minimum(v, 1 - v))
  face = inside > 0.1  # where the mask is 1
  assert face.sum() > 10000
  assert _psnr(out[face], base[face]) >= 35
  outside = inside <= 0
  np.testing.assert_array_equal(out[outside], base[outside])


def test_transform_round_trips_through_json(tmp_path):
  photo = _photo(640, 480, seed=1)
  al = align.align_face(photo, _landmarks(1.0, 3.0, np.array([320.0, 240.0])),
                        output_size=256, transform_size=256)
  p = tmp_path / "t.json"
  al.save_transform(str(p))
  import json  # pylint: disable=g-import-not-at-top
  t = json.loads(p.read_text())
  edited = np.asarray(al.image).copy()
  edited[:] = 255 - edited  # a visible edit
  out = align.paste_back(photo, edited, t)
  assert np.abs(out.astype(int) - np.asarray(photo)).max() > 100


def test_bad_landmarks_are_refused():
  with pytest.raises(ValueError, match="68"):
    align.face_square(np.zeros((5, 2)))
  with pytest.raises(ValueError, match="degenerate"):
    align.face_square(np.zeros((68, 2)))
