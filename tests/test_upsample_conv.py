"""The polyphase up-sampling conv vs the torch reference and the dilated form.

stylegan2.upsample_conv computes conv_transpose2d(stride 2) + FIR (gain 4)
as four phase convs; checked in float64 against the torch reference's
conv_transpose2d + upfirdn2d and against the zero-dilated conv it replaced.
"""

import jax
import jax.numpy as jnp
import numpy as np
import torch

from padinv_jax.models import fir
from padinv_jax.models import ops
from padinv_jax.models import stylegan2
from torch_ref import stylegan2_ref as ref


def test_polyphase_upsample_conv_float64():
  rng = np.random.default_rng(0)
  for n, r, cin, cout in ((2, 7, 5, 6), (1, 4, 3, 2), (1, 1, 2, 3)):
    x = rng.standard_normal((n, r, r, cin))
    w = rng.standard_normal((3, 3, cin, cout))  # HWIO
    fir = np.asarray(ref.fir_filter(torch.float64))
    with jax.enable_x64(True):
      got = np.asarray(stylegan2.upsample_conv(jnp.asarray(x), jnp.asarray(w)))
      dilated = ops.conv2d(jnp.asarray(x), jnp.asarray(w)[::-1, ::-1],
                           padding=2, lhs_dilation=2)
      dilated = np.asarray(ops.upfirdn2d(dilated, fir, pad=(1, 1, 1, 1),
                                         gain=4.0))
    assert got.dtype == np.float64 and got.shape == (n, 2 * r, 2 * r, cout)
    want = ref.upsample_conv(torch.from_numpy(x.transpose(0, 3, 1, 2)),
                             torch.from_numpy(w.transpose(3, 2, 0, 1)))
    want = want.numpy().transpose(0, 2, 3, 1)
    d_ref = float(np.abs(got - want).max())
    d_dil = float(np.abs(got - dilated).max())
    print(f"r={r}: max|diff| vs torch {d_ref:.1e}, vs dilated conv {d_dil:.1e}")
    assert d_ref <= 1e-10 and d_dil <= 1e-10


def test_separable_fir_path_float64():
  """upfirdn2d's separable path (rank-1 filters): asymmetric taps, up, down,
  negative pads, against the torch reference; a rank-2 filter takes the
  depthwise-conv path and agrees too."""
  rng = np.random.default_rng(1)
  img = rng.standard_normal((2, 9, 9, 3))
  t_img = torch.from_numpy(img.transpose(0, 3, 1, 2))
  rank1 = np.outer(rng.standard_normal(4), rng.standard_normal(3))
  rank2 = rank1 + np.outer(rng.standard_normal(4), rng.standard_normal(3))
  assert fir._separable_taps(rank1) is not None
  assert fir._separable_taps(rank2) is None
  for f in (rank1, rank2):
    for up, down, pad in ((2, 2, (3, -1, 2, -2)), (1, 2, (1, 1, 1, 1)),
                          (2, 1, (2, 1, 2, 1))):
      with jax.enable_x64(True):
        got = np.asarray(ops.upfirdn2d(jnp.asarray(img), f, up=up, down=down,
                                       pad=pad, gain=1.5))
      want = ref.upfirdn2d(t_img, torch.from_numpy(f), up=up, pad=pad,
                           gain=1.5)[:, :, ::down, ::down]
      want = want.numpy().transpose(0, 2, 3, 1)
      assert got.shape == want.shape
      assert float(np.abs(got - want).max()) <= 1e-10, (up, down, pad)
