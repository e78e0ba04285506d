"""Independent PyTorch reference of NVIDIA's StyleGAN1 G_style (+ the padding space).

Written for the tests from DESIGN.md section 10 over a flat dict with
NVIDIA's TF variable names (component-key prefixes, as legacy.py reads
them): mapping/Dense{i}/{weight [in, out], bias}, dlatent_avg,
synthesis/4x4/Const/{const [1, C, 4, 4], bias, Noise/weight,
StyleMod/{weight, bias}}, synthesis/4x4/Conv/..., synthesis/{r}x{r}/
Conv0_up/..., synthesis/{r}x{r}/Conv1/..., synthesis/ToRGB_lod{L}/...,
synthesis/noise{i} [1, 1, r, r], synthesis/lod. NCHW, plain torch ops; the
fused up-sampling is the real conv_transpose2d with the 4-tap summed kernel
(the JAX code restates it as nearest x2 + a flipped 3x3 conv).
"""

from __future__ import annotations

import math
from typing import Mapping, Optional

import torch
import torch.nn.functional as F


def _ch(r, base=16384, cmax=512):
  return min(base // r, cmax)


def state_dict(resolution, z_dim, w_dim, mapping_layers, channel_base=16384,
               channel_max=512, seed=0):
  """Random NVIDIA-layout weights with non-trivial biases, noise weights,
  style biases and dlatent_avg (NVIDIA initialises several of them to 0)."""
  g = torch.Generator().manual_seed(seed)
  rn = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)
  sd = {}
  for i in range(mapping_layers):
    sd[f"mapping/Dense{i}/weight"] = rn(z_dim if i == 0 else w_dim, w_dim) * 100
    sd[f"mapping/Dense{i}/bias"] = rn(w_dim) * 0.3
  sd["dlatent_avg"] = rn(w_dim) * 0.5
  ch = lambda r: _ch(r, channel_base, channel_max)

  def layer(pre, cin, cout, r, conv=True):
    if conv:
      sd[pre + "weight"] = rn(3, 3, cin, cout)
    sd[pre + "bias"] = rn(cout) * 0.3
    sd[pre + "Noise/weight"] = rn(cout) * 0.3
    sd[pre + "StyleMod/weight"] = rn(w_dim, 2 * cout)
    sd[pre + "StyleMod/bias"] = rn(2 * cout) * 0.2

  sd["synthesis/4x4/Const/const"] = 1 + 0.2 * rn(1, ch(4), 4, 4)
  layer("synthesis/4x4/Const/", 0, ch(4), 4, conv=False)
  layer("synthesis/4x4/Conv/", ch(4), ch(4), 4)
  log2 = int(math.log2(resolution))
  for k in range(3, log2 + 1):
    r = 2 ** k
    layer(f"synthesis/{r}x{r}/Conv0_up/", ch(r // 2), ch(r), r)
    layer(f"synthesis/{r}x{r}/Conv1/", ch(r), ch(r), r)
  for k in range(2, log2 + 1):
    lod = log2 - k
    sd[f"synthesis/ToRGB_lod{lod}/weight"] = rn(1, 1, ch(2 ** k), 3)
    sd[f"synthesis/ToRGB_lod{lod}/bias"] = rn(3) * 0.1
  for i in range(2 * log2 - 2):
    r = 2 ** (i // 2 + 2)
    sd[f"synthesis/noise{i}"] = rn(1, 1, r, r)
  sd["synthesis/lod"] = torch.zeros((), dtype=torch.float64)
  return {k: v.float() for k, v in sd.items()}


def _lrelu(x):
  return F.leaky_relu(x, 0.2)


def mapping(sd, z, num_ws, psi=1.0, cutoff: Optional[int] = None,
            lr_mul=0.01):
  x = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
  i = 0
  while f"mapping/Dense{i}/weight" in sd:
    w = sd[f"mapping/Dense{i}/weight"]
    x = _lrelu(x @ (w * (math.sqrt(2) / math.sqrt(w.shape[0]) * lr_mul))
               + sd[f"mapping/Dense{i}/bias"] * lr_mul)
    i += 1
  ws = x[:, None].repeat(1, num_ws, 1)
  if psi != 1:
    k = num_ws if cutoff is None else cutoff
    avg = sd["dlatent_avg"]
    ws[:, :k] = avg + psi * (ws[:, :k] - avg)
  return ws


def _oihw(w_hwio, gain):
  fan_in = w_hwio.shape[0] * w_hwio.shape[1] * w_hwio.shape[2]
  return (w_hwio * (gain / math.sqrt(fan_in))).permute(3, 2, 0, 1)


def _blur(x):
  k = torch.tensor([1.0, 2.0, 1.0], dtype=x.dtype)
  k = (k[:, None] * k[None, :]) / 16
  c = x.shape[1]
  return F.conv2d(x, k[None, None].repeat(c, 1, 1, 1), padding=1, groups=c)


def _up_conv(x, w_hwio, fused):
  if not fused:
    return F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"),
                    _oihw(w_hwio, math.sqrt(2)), padding=1)
  fan_in = w_hwio.shape[0] * w_hwio.shape[1] * w_hwio.shape[2]
  w = w_hwio * (math.sqrt(2) / math.sqrt(fan_in))   # [3, 3, in, out]
  w = w.permute(0, 1, 3, 2)                          # [3, 3, out, in] (TF)
  w = F.pad(w.permute(2, 3, 0, 1), [1, 1, 1, 1])     # [out, in, 5, 5]
  w = (w[:, :, 1:, 1:] + w[:, :, :-1, 1:] + w[:, :, 1:, :-1]
       + w[:, :, :-1, :-1])                          # [out, in, 4, 4]
  # TF conv2d_transpose filter [h, w, out, in] -> torch weight [in, out, h, w]
  return F.conv_transpose2d(x, w.permute(1, 0, 2, 3), stride=2, padding=1)


def _epilogue(sd, pre, x, w, noise, noise_mode):
  if noise_mode == "const":
    x = x + noise * sd[pre + "Noise/weight"][None, :, None, None]
  x = _lrelu(x + sd[pre + "bias"][None, :, None, None])
  x = x - x.mean(dim=(2, 3), keepdim=True)
  x = x * torch.rsqrt(x.square().mean(dim=(2, 3), keepdim=True) + 1e-8)
  sw = sd[pre + "StyleMod/weight"]
  s = w @ (sw / math.sqrt(sw.shape[0])) + sd[pre + "StyleMod/bias"]
  c = x.shape[1]
  return x * (s[:, :c, None, None] + 1) + s[:, c:, None, None]


def _ring(x, p):
  """x [N, C, r, r] into the interior of centre_crop(p, r + 2) (NCHW)."""
  r, s = x.shape[2], p.shape[2]
  o = (s - r - 2) // 2
  ring = p[:, :, o:o + r + 2, o:o + r + 2].expand(x.shape[0], -1, -1, -1)
  ring = ring.clone()
  ring[:, :, 1:r + 1, 1:r + 1] = x
  return ring


def synthesis(sd, ws, resolution, noise_mode="const",
              paddings: Optional[Mapping[str, torch.Tensor]] = None):
  """ws [N, num_ws, w_dim] (+ NCHW maps {"const", "layer0", ...}) -> NCHW."""
  paddings = paddings or {}
  n = ws.shape[0]
  noise = lambda i: sd[f"synthesis/noise{i}"]
  if "const" in paddings:
    p = paddings["const"]
    o = (p.shape[2] - 4) // 2
    x = p[:, :, o:o + 4, o:o + 4].expand(n, -1, -1, -1)
  else:
    x = sd["synthesis/4x4/Const/const"].repeat(n, 1, 1, 1)
  x = _epilogue(sd, "synthesis/4x4/Const/", x, ws[:, 0], noise(0), noise_mode)

  def plain(x, pre, key):
    w = _oihw(sd[pre + "weight"], math.sqrt(2))
    if key in paddings:
      return F.conv2d(_ring(x, paddings[key]), w)
    return F.conv2d(x, w, padding=1)

  x = plain(x, "synthesis/4x4/Conv/", "layer0")
  x = _epilogue(sd, "synthesis/4x4/Conv/", x, ws[:, 1], noise(1), noise_mode)
  for k in range(3, int(math.log2(resolution)) + 1):
    r = 2 ** k
    i = 2 * k - 4
    pre = f"synthesis/{r}x{r}/Conv0_up/"
    x = _blur(_up_conv(x, sd[pre + "weight"], fused=r >= 128))
    x = _epilogue(sd, pre, x, ws[:, i], noise(i), noise_mode)
    pre = f"synthesis/{r}x{r}/Conv1/"
    x = plain(x, pre, f"layer{i}")
    x = _epilogue(sd, pre, x, ws[:, i + 1], noise(i + 1), noise_mode)
  w = sd["synthesis/ToRGB_lod0/weight"]
  return F.conv2d(x, _oihw(w, 1.0)) + sd["synthesis/ToRGB_lod0/bias"][
      None, :, None, None]
