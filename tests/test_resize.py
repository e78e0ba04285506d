"""Align-corners bilinear / bicubic resizes vs F.interpolate."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from padinv_jax.models import resize

SIZES = [((32, 32), (34, 34)), ((16, 16), (32, 32)), ((16, 16), (34, 34)),
         ((32, 32), (18, 18)), ((17, 9), (5, 23)), ((8, 8), (1, 3)),
         ((4, 4), (64, 64)), ((64, 64), (16, 16))]


def _torch(x, size, mode):
  t = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
  y = F.interpolate(t, size=size, mode=mode, align_corners=True)
  return y.numpy().transpose(0, 2, 3, 1)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
@pytest.mark.parametrize("src,dst", SIZES)
def test_matches_torch(mode, src, dst):
  rng = np.random.default_rng(sum(src) * 100 + sum(dst))
  x = rng.standard_normal((2,) + src + (5,)).astype(np.float32)
  fn = resize.resize_bilinear if mode == "bilinear" else resize.resize_bicubic
  got = np.asarray(fn(x, dst))
  ref = _torch(x, dst, mode)
  assert got.shape == ref.shape
  err = np.abs(got - ref).max()
  print(f"{mode} {src}->{dst}: max|diff| {err:.2e}")
  assert err <= 1e-5, err


def test_scale_factor_upsampling_matches_size():
  # The FPN calls interpolate(scale_factor=2); align_corners makes it equal to
  # size=(2h, 2w), which is what the encoder uses.
  x = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)
  a = F.interpolate(torch.from_numpy(x), scale_factor=2, mode="bilinear",
                    align_corners=True).numpy().transpose(0, 2, 3, 1)
  b = np.asarray(resize.resize_bilinear(x.transpose(0, 2, 3, 1), 16))
  assert np.abs(a - b).max() <= 1e-5


def test_differs_from_jax_image_resize():
  # Guards against "simplifying" to jax.image.resize: the semantics differ.
  import jax
  x = np.random.default_rng(1).standard_normal((1, 16, 16, 2)).astype(
      np.float32)
  ours = np.asarray(resize.resize_bicubic(x, 34))
  theirs = np.asarray(jax.image.resize(x, (1, 34, 34, 2), "bicubic"))
  assert np.abs(ours - theirs).max() > 1e-2
