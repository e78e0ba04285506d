"""The Inception-v3 FID feature network (pytorch-fid's), as pure JAX functions.

The network of pytorch-fid's ``fid_inception_v3`` with its
pt_inception-2015-12-05 weights (the TF FID graph ported to PyTorch), the
features that every published FID is computed from: the 2048-d average pool
after Mixed_7c. Semantics (pytorch-fid, src/pytorch_fid/inception.py):
  * input [N, H, W, 3] in [-1, 1] (pytorch-fid takes [0, 1] and maps it to
    2 x - 1: the same values), resized to 299 x 299 with bilinear
    interpolation, half-pixel centres, no antialiasing (F.interpolate
    align_corners=False);
  * BasicConv2d = conv without bias + BatchNorm (eps 0.001, running
    statistics) + ReLU; max pools 3 x 3 stride 2 without padding;
  * Mixed_5b-d, 6b-e and 7b take the average pool of their pool branch
    WITHOUT the zero padding in the count (count_include_pad=False), Mixed_7c
    a 3 x 3 stride-1 max pool instead (the TF graph's quirks);
  * features: the global average of Mixed_7c's output.
Variables are the PyTorch state dict's, nested by module name, convolution
weights kept OIHW: {"Conv2d_1a_3x3": {"conv": {"weight"}, "bn": {"weight",
"bias", "running_mean", "running_var"}}, "Mixed_5b": {"branch1x1": ...}}.
``padinv-convert pt_inception-2015-12-05-6726825d.pth weights/inception``
writes them as an "inception" part directory.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

BN_EPS = 1e-3
SIZE = 299
FEATURES = 2048


def _a(cin, pool):  # InceptionA
  return [("branch1x1", cin, 64, 1, 1), ("branch5x5_1", cin, 48, 1, 1),
          ("branch5x5_2", 48, 64, 5, 5), ("branch3x3dbl_1", cin, 64, 1, 1),
          ("branch3x3dbl_2", 64, 96, 3, 3), ("branch3x3dbl_3", 96, 96, 3, 3),
          ("branch_pool", cin, pool, 1, 1)]


def _b(cin):  # InceptionB
  return [("branch3x3", cin, 384, 3, 3), ("branch3x3dbl_1", cin, 64, 1, 1),
          ("branch3x3dbl_2", 64, 96, 3, 3), ("branch3x3dbl_3", 96, 96, 3, 3)]


def _c(cin, c7):  # InceptionC
  return [("branch1x1", cin, 192, 1, 1), ("branch7x7_1", cin, c7, 1, 1),
          ("branch7x7_2", c7, c7, 1, 7), ("branch7x7_3", c7, 192, 7, 1),
          ("branch7x7dbl_1", cin, c7, 1, 1), ("branch7x7dbl_2", c7, c7, 7, 1),
          ("branch7x7dbl_3", c7, c7, 1, 7), ("branch7x7dbl_4", c7, c7, 7, 1),
          ("branch7x7dbl_5", c7, 192, 1, 7), ("branch_pool", cin, 192, 1, 1)]


def _d(cin):  # InceptionD
  return [("branch3x3_1", cin, 192, 1, 1), ("branch3x3_2", 192, 320, 3, 3),
          ("branch7x7x3_1", cin, 192, 1, 1), ("branch7x7x3_2", 192, 192, 1, 7),
          ("branch7x7x3_3", 192, 192, 7, 1), ("branch7x7x3_4", 192, 192, 3, 3)]


def _e(cin):  # InceptionE
  return [("branch1x1", cin, 320, 1, 1), ("branch3x3_1", cin, 384, 1, 1),
          ("branch3x3_2a", 384, 384, 1, 3), ("branch3x3_2b", 384, 384, 3, 1),
          ("branch3x3dbl_1", cin, 448, 1, 1), ("branch3x3dbl_2", 448, 384, 3, 3),
          ("branch3x3dbl_3a", 384, 384, 1, 3),
          ("branch3x3dbl_3b", 384, 384, 3, 1), ("branch_pool", cin, 192, 1, 1)]


STEM = [("Conv2d_1a_3x3", 3, 32, 3, 3), ("Conv2d_2a_3x3", 32, 32, 3, 3),
        ("Conv2d_2b_3x3", 32, 64, 3, 3), ("Conv2d_3b_1x1", 64, 80, 1, 1),
        ("Conv2d_4a_3x3", 80, 192, 3, 3)]
MIXED = [("Mixed_5b", _a(192, 32)), ("Mixed_5c", _a(256, 64)),
         ("Mixed_5d", _a(288, 64)), ("Mixed_6a", _b(288)),
         ("Mixed_6b", _c(768, 128)), ("Mixed_6c", _c(768, 160)),
         ("Mixed_6d", _c(768, 160)), ("Mixed_6e", _c(768, 192)),
         ("Mixed_7a", _d(768)), ("Mixed_7b", _e(1280)), ("Mixed_7c", _e(2048))]


def conv_table():
  """[(state-dict prefix, in, out, kh, kw)] of every BasicConv2d."""
  out = list(STEM)
  for block, convs in MIXED:
    out += [(f"{block}.{n}", i, o, kh, kw) for n, i, o, kh, kw in convs]
  return out


def param_shapes() -> dict:
  """The variables tree as jax.ShapeDtypeStruct (for checks and loading)."""
  tree = {}
  f32 = jnp.float32
  for name, cin, cout, kh, kw in conv_table():
    node = tree
    for part in name.split("."):
      node = node.setdefault(part, {})
    node["conv"] = {"weight": jax.ShapeDtypeStruct((cout, cin, kh, kw), f32)}
    node["bn"] = {k: jax.ShapeDtypeStruct((cout,), f32)
                  for k in ("weight", "bias", "running_mean", "running_var")}
  return tree


def _resize_matrix(n_in: int, n_out: int) -> np.ndarray:
  """[n_out, n_in] bilinear weights, half-pixel centres, edges clamped."""
  scale = n_in / n_out
  src = np.maximum((np.arange(n_out) + 0.5) * scale - 0.5, 0.0)
  i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
  i1 = np.minimum(i0 + 1, n_in - 1)
  t = src - i0
  m = np.zeros((n_out, n_in), np.float64)
  np.add.at(m, (np.arange(n_out), i0), 1 - t)
  np.add.at(m, (np.arange(n_out), i1), t)
  return m.astype(np.float32)


def resize_299(x):
  """[N, H, W, C] -> [N, 299, 299, C] as F.interpolate(bilinear,
  align_corners=False, antialias=False)."""
  mh = jnp.asarray(_resize_matrix(x.shape[1], SIZE))
  mw = jnp.asarray(_resize_matrix(x.shape[2], SIZE))
  hi = jax.lax.Precision.HIGHEST
  x = jnp.einsum("oh,nhwc->nowc", mh, x, precision=hi)
  return jnp.einsum("pw,nowc->nopc", mw, x, precision=hi)


def _basic(p, x, stride=1, padding=(0, 0)):
  w = p["conv"]["weight"]
  y = jax.lax.conv_general_dilated(
      x, w, (stride, stride), [(padding[0],) * 2, (padding[1],) * 2],
      dimension_numbers=("NHWC", "OIHW", "NHWC"),
      precision=jax.lax.Precision.HIGHEST)
  bn = p["bn"]
  scale = bn["weight"] * jax.lax.rsqrt(bn["running_var"] + BN_EPS)
  return jax.nn.relu(y * scale + (bn["bias"] - bn["running_mean"] * scale))


def _max_pool(x, k=3, s=2, pad=0):
  padding = [(0, 0), (pad, pad), (pad, pad), (0, 0)]
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, k, k, 1),
                               (1, s, s, 1), padding)


def _avg_pool_exclude_pad(x):
  """3 x 3, stride 1, padding 1, divided by the in-image taps only."""
  padding = [(0, 0), (1, 1), (1, 1), (0, 0)]
  win, st = (1, 3, 3, 1), (1, 1, 1, 1)
  total = jax.lax.reduce_window(x, 0.0, jax.lax.add, win, st, padding)
  ones = jnp.ones((1,) + x.shape[1:3] + (1,), x.dtype)
  count = jax.lax.reduce_window(ones, 0.0, jax.lax.add, win, st, padding)
  return total / count


def _same(kh, kw):
  return (kh // 2, kw // 2)


def _mixed_a(p, x):
  b1 = _basic(p["branch1x1"], x)
  b5 = _basic(p["branch5x5_2"], _basic(p["branch5x5_1"], x), padding=(2, 2))
  b3 = _basic(p["branch3x3dbl_1"], x)
  b3 = _basic(p["branch3x3dbl_2"], b3, padding=(1, 1))
  b3 = _basic(p["branch3x3dbl_3"], b3, padding=(1, 1))
  bp = _basic(p["branch_pool"], _avg_pool_exclude_pad(x))
  return jnp.concatenate([b1, b5, b3, bp], axis=-1)


def _mixed_b(p, x):
  b3 = _basic(p["branch3x3"], x, stride=2)
  bd = _basic(p["branch3x3dbl_1"], x)
  bd = _basic(p["branch3x3dbl_2"], bd, padding=(1, 1))
  bd = _basic(p["branch3x3dbl_3"], bd, stride=2)
  return jnp.concatenate([b3, bd, _max_pool(x)], axis=-1)


def _mixed_c(p, x):
  b1 = _basic(p["branch1x1"], x)
  b7 = _basic(p["branch7x7_1"], x)
  b7 = _basic(p["branch7x7_2"], b7, padding=_same(1, 7))
  b7 = _basic(p["branch7x7_3"], b7, padding=_same(7, 1))
  bd = _basic(p["branch7x7dbl_1"], x)
  for i, (kh, kw) in zip(range(2, 6), ((7, 1), (1, 7), (7, 1), (1, 7))):
    bd = _basic(p[f"branch7x7dbl_{i}"], bd, padding=_same(kh, kw))
  bp = _basic(p["branch_pool"], _avg_pool_exclude_pad(x))
  return jnp.concatenate([b1, b7, bd, bp], axis=-1)


def _mixed_d(p, x):
  b3 = _basic(p["branch3x3_2"], _basic(p["branch3x3_1"], x), stride=2)
  b7 = _basic(p["branch7x7x3_1"], x)
  b7 = _basic(p["branch7x7x3_2"], b7, padding=_same(1, 7))
  b7 = _basic(p["branch7x7x3_3"], b7, padding=_same(7, 1))
  b7 = _basic(p["branch7x7x3_4"], b7, stride=2)
  return jnp.concatenate([b3, b7, _max_pool(x)], axis=-1)


def _mixed_e(p, x, max_pool: bool):
  b1 = _basic(p["branch1x1"], x)
  b3 = _basic(p["branch3x3_1"], x)
  b3 = jnp.concatenate([_basic(p["branch3x3_2a"], b3, padding=(0, 1)),
                        _basic(p["branch3x3_2b"], b3, padding=(1, 0))], -1)
  bd = _basic(p["branch3x3dbl_1"], x)
  bd = _basic(p["branch3x3dbl_2"], bd, padding=(1, 1))
  bd = jnp.concatenate([_basic(p["branch3x3dbl_3a"], bd, padding=(0, 1)),
                        _basic(p["branch3x3dbl_3b"], bd, padding=(1, 0))], -1)
  pooled = _max_pool(x, 3, 1, 1) if max_pool else _avg_pool_exclude_pad(x)
  bp = _basic(p["branch_pool"], pooled)
  return jnp.concatenate([b1, b3, bd, bp], axis=-1)


def features(params, images):
  """[N, H, W, 3] float images in [-1, 1] -> [N, 2048] FID features."""
  x = resize_299(jnp.asarray(images, jnp.float32))
  x = _basic(params["Conv2d_1a_3x3"], x, stride=2)
  x = _basic(params["Conv2d_2a_3x3"], x)
  x = _basic(params["Conv2d_2b_3x3"], x, padding=(1, 1))
  x = _max_pool(x)
  x = _basic(params["Conv2d_3b_1x1"], x)
  x = _basic(params["Conv2d_4a_3x3"], x)
  x = _max_pool(x)
  for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d"):
    x = _mixed_a(params[name], x)
  x = _mixed_b(params["Mixed_6a"], x)
  for name in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
    x = _mixed_c(params[name], x)
  x = _mixed_d(params["Mixed_7a"], x)
  x = _mixed_e(params["Mixed_7b"], x, max_pool=False)
  x = _mixed_e(params["Mixed_7c"], x, max_pool=True)
  return jnp.mean(x, axis=(1, 2))


_FEATURES_JIT = jax.jit(features)  # traced on first use


def batched_features(params, images_uint8, batch: int = 50):
  """uint8 [N, H, W, 3] -> float64 [N, 2048] (batches of ``batch``)."""
  out = []
  for i in range(0, len(images_uint8), batch):
    x = np.asarray(images_uint8[i:i + batch], np.float32) / 127.5 - 1.0
    out.append(np.asarray(_FEATURES_JIT(params, x), np.float64))
  return np.concatenate(out)
