"""Independent PyTorch reference of NVIDIA's StyleGAN2 resnet discriminator.

Functional, over a plain state dict with stylegan2-ada-pytorch's key names:

  b{R}.fromrgb.{weight [C, 3, 1, 1], bias}
  b{r}.conv0.{weight [C, C, 3, 3], bias}, b{r}.conv1.{weight, bias},
  b{r}.skip.weight [C', C, 1, 1], and *.resample_filter buffers [4, 4]
  b4.conv.{weight [C, C + 1, 3, 3], bias}, b4.fc.{weight [C, 16 C], bias},
  b4.out.{weight [1, C], bias}

Unlike the JAX code (FIR first, then a strided conv), the down-sampling
layers here convolve first and filter/decimate afterwards, conv2d_resample's
generic path; the two are equal in exact arithmetic. ``forward`` sees one
device's batch: the minibatch-stddev groups cover whatever it is given.
Also holds ``to_hammer``: the same weights under Hammer's key names.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def fir_filter() -> torch.Tensor:
  t = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=torch.float64)
  f = torch.outer(t, t)
  return (f / f.sum()).float()


def nf(cfg, res):
  return min(cfg["channel_base"] // res, cfg["channel_max"])


def block_resolutions(cfg):
  return [2 ** i for i in range(int(math.log2(cfg["resolution"])), 2, -1)]


def make_state_dict(cfg, seed=0):
  """Random weights N(0, 1) and non-zero biases, NVIDIA key names (numpy)."""
  g = torch.Generator().manual_seed(seed)
  rnd = lambda *s: torch.randn(*s, generator=g)
  sd = {}
  r0 = cfg["resolution"]
  for res in block_resolutions(cfg):
    c, c2 = nf(cfg, res), nf(cfg, res // 2)
    p = f"b{res}."
    if res == r0:
      sd[p + "fromrgb.weight"] = rnd(c, 3, 1, 1)
      sd[p + "fromrgb.bias"] = 0.2 * rnd(c)
      sd[p + "fromrgb.resample_filter"] = fir_filter()
    sd[p + "conv0.weight"] = rnd(c, c, 3, 3)
    sd[p + "conv0.bias"] = 0.2 * rnd(c)
    sd[p + "conv1.weight"] = rnd(c2, c, 3, 3)
    sd[p + "conv1.bias"] = 0.2 * rnd(c2)
    sd[p + "skip.weight"] = rnd(c2, c, 1, 1)
    for layer in ("conv0", "conv1", "skip"):
      sd[p + layer + ".resample_filter"] = fir_filter()
    sd[p + "resample_filter"] = fir_filter()
  c = nf(cfg, 4)
  f = cfg.get("mbstd_num_channels", 1)
  sd["b4.conv.weight"] = rnd(c, c + f, 3, 3)
  sd["b4.conv.bias"] = 0.2 * rnd(c)
  sd["b4.conv.resample_filter"] = fir_filter()
  sd["b4.fc.weight"] = rnd(c, c * 16)
  sd["b4.fc.bias"] = 0.2 * rnd(c)
  sd["b4.out.weight"] = rnd(1, c)
  sd["b4.out.bias"] = 0.2 * rnd(1)
  return {k: v.numpy() for k, v in sd.items()}


def _fir_down(x, pad):
  c = x.shape[1]
  f = fir_filter().to(x.dtype).flip(0, 1)[None, None].repeat(c, 1, 1, 1)
  x = F.pad(x, [pad] * 4)
  return F.conv2d(x, f, stride=2, groups=c)


def conv_layer(x, w, b, *, down=False, act="lrelu", gain=1.0, clamp=None):
  k = w.shape[-1]
  w = w / math.sqrt(w.shape[1] * k * k)
  if down and k == 1:
    x = _fir_down(F.conv2d(x, w), pad=1)
  elif down:
    x = _fir_down(F.conv2d(F.pad(x, [2] * 4), w), pad=0)
  else:
    x = F.conv2d(x, w, padding=k // 2)
  if b is not None:
    x = x + b[None, :, None, None]
  if act == "lrelu":
    x = F.leaky_relu(x, 0.2) * (math.sqrt(2) * gain)
  else:
    x = x * gain
  if clamp is not None:
    x = x.clamp(-clamp * gain, clamp * gain)
  return x


def dense(x, w, b, act="linear"):
  x = x @ (w / math.sqrt(w.shape[1])).t() + b
  return F.leaky_relu(x, 0.2) * math.sqrt(2) if act == "lrelu" else x


def mbstd(x, group_size=4, num_channels=1):
  n, c, h, w = x.shape
  g = min(group_size, n) if group_size is not None else n
  f = num_channels
  y = x.reshape(g, -1, f, c // f, h, w)
  y = y - y.mean(dim=0)
  y = (y.square().mean(dim=0) + 1e-8).sqrt()
  y = y.mean(dim=[2, 3, 4]).reshape(-1, f, 1, 1).repeat(g, 1, h, w)
  return torch.cat([x, y], dim=1)


def forward(sd, img, cfg):
  """Scores [N, 1] of NCHW images (one device's batch)."""
  t = {k: torch.as_tensor(v) for k, v in sd.items()}
  clamp = cfg.get("conv_clamp")
  x = None
  for res in block_resolutions(cfg):
    p = f"b{res}."
    if x is None:
      x = conv_layer(img, t[p + "fromrgb.weight"], t[p + "fromrgb.bias"],
                     clamp=clamp)
    y = conv_layer(x, t[p + "skip.weight"], None, down=True, act="linear",
                   gain=math.sqrt(0.5))
    x = conv_layer(x, t[p + "conv0.weight"], t[p + "conv0.bias"], clamp=clamp)
    x = conv_layer(x, t[p + "conv1.weight"], t[p + "conv1.bias"], down=True,
                   gain=math.sqrt(0.5), clamp=clamp)
    x = y + x
  if cfg.get("mbstd_num_channels", 1) > 0:
    x = mbstd(x, cfg.get("mbstd_group_size", 4),
              cfg.get("mbstd_num_channels", 1))
  x = conv_layer(x, t["b4.conv.weight"], t["b4.conv.bias"], clamp=clamp)
  x = dense(x.flatten(1), t["b4.fc.weight"], t["b4.fc.bias"], act="lrelu")
  return dense(x, t["b4.out.weight"], t["b4.out.bias"])


def to_hammer(sd, cfg):
  """The same weights under Hammer's StyleGAN2Discriminator key names."""
  out = {}
  r0 = cfg["resolution"]
  last = int(math.log2(r0)) - 2
  for res in block_resolutions(cfg):
    i = int(math.log2(r0 // res))
    p = f"b{res}."
    if res == r0:
      out["input0.weight"] = sd[p + "fromrgb.weight"]
      out["input0.bias"] = sd[p + "fromrgb.bias"]
    out[f"layer{2 * i}.weight"] = sd[p + "conv0.weight"]
    out[f"layer{2 * i}.bias"] = sd[p + "conv0.bias"]
    out[f"layer{2 * i + 1}.weight"] = sd[p + "conv1.weight"]
    out[f"layer{2 * i + 1}.bias"] = sd[p + "conv1.bias"]
    out[f"layer{2 * i + 1}.filter"] = sd[p + "conv1.resample_filter"]
    out[f"residual{i}.weight"] = sd[p + "skip.weight"]
    out[f"residual{i}.filter"] = sd[p + "skip.resample_filter"]
  out[f"layer{2 * last}.weight"] = sd["b4.conv.weight"]
  out[f"layer{2 * last}.bias"] = sd["b4.conv.bias"]
  out[f"layer{2 * last + 1}.weight"] = sd["b4.fc.weight"]
  out[f"layer{2 * last + 1}.bias"] = sd["b4.fc.bias"]
  out["output.weight"] = sd["b4.out.weight"]
  out["output.bias"] = sd["b4.out.bias"]
  return {k: np.asarray(v) for k, v in out.items()}
