"""Independent PyTorch reference of NVIDIA's StyleGAN2 forward pass + PadInv.

Written for the tests from the published semantics (stylegan2-ada-pytorch,
config-F skip architecture, non-fused modulation; PadInv's padding space as
DESIGN.md section 1 states it), NCHW/OIHW, over a plain state dict with
NVIDIA's official key names:

  mapping.fc{i}.{weight [out, in], bias}, mapping.w_avg
  synthesis.b4.const [C, 4, 4]
  synthesis.b{r}.{conv0, conv1}.{weight [O, I, 3, 3], bias, noise_const [r, r],
                                 noise_strength [], affine.{weight, bias}}
  synthesis.b{r}.torgb.{weight [3, I, 1, 1], bias, affine.{weight, bias}}

Only plain torch ops are used: the up-sampling conv is conv_transpose2d with
the stored (unflipped) weight followed by the FIR filter, unlike the JAX
code's dilated forward conv, so the two really are independent. Also holds
``to_padinv_jax``: the conversion table from such a state dict to the
padinv_jax generator variables.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional

import numpy as np
import torch
import torch.nn.functional as F

FIR_TAPS = (1.0, 3.0, 3.0, 1.0)


def fir_filter(dtype=torch.float32) -> torch.Tensor:
  t = torch.tensor(FIR_TAPS, dtype=torch.float64)
  f = torch.outer(t, t)
  return (f / f.sum()).to(dtype)


def upfirdn2d(x, f, up=1, pad=(0, 0, 0, 0), gain=1.0):
  """NVIDIA's upfirdn2d reference semantics (NCHW): zero-insert, pad, convolve.

  Args:
    x: [N, C, H, W].
    f: [fh, fw] filter; it is CONVOLVED (flipped), as upfirdn2d does by default.
    up: zeros inserted after each sample.
    pad: (x0, x1, y0, y1); negative values crop.
    gain: multiplies the filter.
  """
  n, c, h, w = x.shape
  if up > 1:
    z = x.new_zeros(n, c, h, up, w, up)
    z[:, :, :, 0, :, 0] = x
    x = z.reshape(n, c, h * up, w * up)
  x0, x1, y0, y1 = pad
  x = F.pad(x, [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)])
  x = x[:, :, max(-y0, 0):x.shape[2] - max(-y1, 0),
        max(-x0, 0):x.shape[3] - max(-x1, 0)]
  k = (f * gain).to(x.dtype).flip([0, 1])
  k = k[None, None].repeat(c, 1, 1, 1)
  return F.conv2d(x, k, groups=c)


def upsample_conv(x, weight):
  """The up-sampling 3x3 conv: conv_transpose2d(stride 2) + FIR pad 1 gain 4.

  Args:
    x: [N, I, r, r] (already modulated).
    weight: [O, I, 3, 3] stored weight, used unflipped.

  Returns:
    [N, O, 2r, 2r].
  """
  y = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
  return upfirdn2d(y, fir_filter(x.dtype), pad=(1, 1, 1, 1), gain=4.0)


def lrelu(x, clamp=None, gain=math.sqrt(2.0)):
  x = F.leaky_relu(x, 0.2) * gain
  return x if clamp is None else x.clamp(-clamp, clamp)


def dense(x, weight, bias, lr_mul=1.0):
  """Equalised-lr dense layer: x @ (W lr_mul / sqrt(in))^T + b lr_mul."""
  return F.linear(x, weight * (lr_mul / math.sqrt(weight.shape[1])),
                  bias * lr_mul)


def mapping(sd, z, num_ws, psi=1.0, cutoff=None, lr_mul=0.01):
  """z [N, z_dim] -> ws [N, num_ws, w_dim]: pixel norm, fc, truncation."""
  x = z * (z.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()
  i = 0
  while f"mapping.fc{i}.weight" in sd:
    x = lrelu(dense(x, sd[f"mapping.fc{i}.weight"], sd[f"mapping.fc{i}.bias"],
                    lr_mul))
    i += 1
  ws = x.unsqueeze(1).repeat(1, num_ws, 1)
  if psi != 1:
    avg = sd["mapping.w_avg"]
    n = num_ws if cutoff is None else cutoff
    ws[:, :n] = avg + psi * (ws[:, :n] - avg)
  return ws


def centre_crop(p, size):
  o = (p.shape[-1] - size) // 2
  return p[:, :, o:o + size, o:o + size]


def padded_conv(x, weight, styles, padding_map):
  """PadInv's padded layer: ring from the map, s*x inside, valid conv, demod.

  The map is cloned first: the original writes into it in place.
  """
  r = x.shape[-1]
  canvas = centre_crop(padding_map, r + 2).expand(x.shape[0], -1, -1, -1)
  canvas = canvas.clone()  # a copy: the map itself must stay untouched
  canvas[:, :, 1:-1, 1:-1] = x * styles[:, :, None, None]
  y = F.conv2d(canvas, weight, padding=0)
  return y * demod(weight, styles)[:, :, None, None]


def demod(weight, styles):
  """d[n, o] = rsqrt(sum_{i,kh,kw} (W[o,i,kh,kw] s[n,i])^2 + 1e-8)."""
  w = weight[None] * styles[:, None, :, None, None]  # [N, O, I, kh, kw]
  return (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()


def synthesis_layer(sd, pre, x, w, up=False, noise_mode="const",
                    conv_clamp=None, padding_map=None):
  weight = sd[pre + "weight"]
  styles = dense(w, sd[pre + "affine.weight"], sd[pre + "affine.bias"])
  if padding_map is not None:
    assert not up
    x = padded_conv(x, weight, styles, padding_map)
  else:
    x = x * styles[:, :, None, None]
    x = upsample_conv(x, weight) if up else F.conv2d(x, weight, padding=1)
    x = x * demod(weight, styles)[:, :, None, None]
  if noise_mode == "const":
    x = x + sd[pre + "noise_const"] * sd[pre + "noise_strength"]
  elif noise_mode != "none":
    raise ValueError(noise_mode)
  x = x + sd[pre + "bias"][None, :, None, None]
  return lrelu(x, conv_clamp)


def torgb(sd, pre, x, w, conv_clamp=None):
  weight = sd[pre + "weight"]
  styles = dense(w, sd[pre + "affine.weight"], sd[pre + "affine.bias"])
  styles = styles / math.sqrt(weight.shape[1])
  y = F.conv2d(x * styles[:, :, None, None], weight)
  y = y + sd[pre + "bias"][None, :, None, None]
  return y if conv_clamp is None else y.clamp(-conv_clamp, conv_clamp)


def synthesis(sd, ws, resolution, noise_mode="const", conv_clamp=None,
              paddings: Optional[Mapping[str, torch.Tensor]] = None):
  """ws [N, num_ws, w_dim] (+ NCHW padding maps) -> images [N, 3, R, R].

  ``paddings``: {"const": p0, "layer0": p1, "layer2": p3, ...} [N, C, S, S].
  """
  paddings = paddings or {}
  n = ws.shape[0]
  if "const" in paddings:
    x = centre_crop(paddings["const"], 4).expand(n, -1, -1, -1)
  else:
    x = sd["synthesis.b4.const"][None].repeat(n, 1, 1, 1)
  img = None
  for k in range(int(math.log2(resolution)) - 1):
    r = 4 * 2 ** k
    b = f"synthesis.b{r}."
    if r > 4:
      x = synthesis_layer(sd, b + "conv0.", x, ws[:, 2 * k - 1], up=True,
                          noise_mode=noise_mode, conv_clamp=conv_clamp)
    x = synthesis_layer(sd, b + "conv1.", x, ws[:, 2 * k],
                        noise_mode=noise_mode, conv_clamp=conv_clamp,
                        padding_map=paddings.get(f"layer{2 * k}"))
    y = torgb(sd, b + "torgb.", x, ws[:, 2 * k + 1], conv_clamp)
    if img is None:
      img = y
    else:
      img = upfirdn2d(img, fir_filter(img.dtype), up=2, pad=(2, 1, 2, 1),
                      gain=4.0) + y
  return img


def state_dict_shapes(resolution, z_dim, w_dim, mapping_layers, channel_base,
                      channel_max):
  """{official key: shape} of an NVIDIA config-F generator, buffers included.

  Buffers: mapping.w_avg, every layer's noise_const, and the 4x4 FIR
  ``resample_filter`` that NVIDIA registers in every synthesis layer and
  every block.
  """
  def ch(r):
    return min(channel_base // r, channel_max)

  shapes = {}
  for i in range(mapping_layers):
    shapes[f"mapping.fc{i}.weight"] = (w_dim, z_dim if i == 0 else w_dim)
    shapes[f"mapping.fc{i}.bias"] = (w_dim,)
  shapes["mapping.w_avg"] = (w_dim,)
  shapes["synthesis.b4.const"] = (ch(4), 4, 4)
  for k in range(int(math.log2(resolution)) - 1):
    r = 4 * 2 ** k
    shapes[f"synthesis.b{r}.resample_filter"] = (4, 4)
    cin = ch(4) if r == 4 else ch(r // 2)
    for name in ["conv1"] if r == 4 else ["conv0", "conv1"]:
      pre = f"synthesis.b{r}.{name}."
      shapes.update({pre + "weight": (ch(r), cin, 3, 3),
                     pre + "bias": (ch(r),),
                     pre + "affine.weight": (cin, w_dim),
                     pre + "affine.bias": (cin,), pre + "noise_const": (r, r),
                     pre + "noise_strength": (),
                     pre + "resample_filter": (4, 4)})
      cin = ch(r)
    pre = f"synthesis.b{r}.torgb."
    shapes.update({pre + "weight": (3, cin, 1, 1), pre + "bias": (3,),
                   pre + "affine.weight": (cin, w_dim),
                   pre + "affine.bias": (cin,)})
  return shapes


def is_parameter(key):
  """True for nn.Parameters, False for NVIDIA's buffers."""
  return not key.endswith(("w_avg", "noise_const", "resample_filter"))


def random_state_dict(resolution, z_dim, w_dim, mapping_layers, channel_base,
                      channel_max, seed=0, lr_mul=0.01):
  """Random NVIDIA-layout weights with non-trivial biases, noise and w_avg."""
  g = torch.Generator().manual_seed(seed)
  sd = {}
  for key, shape in state_dict_shapes(resolution, z_dim, w_dim, mapping_layers,
                                      channel_base, channel_max).items():
    x = torch.randn(shape, generator=g)
    if key.endswith("resample_filter"):
      x = fir_filter()
    elif key.startswith("mapping.fc"):  # stored as NVIDIA does: / lr_mul
      x = x / lr_mul if key.endswith("weight") else x * 0.3 / lr_mul
    elif key.endswith("affine.bias"):
      x = 1.0 + 0.3 * x
    elif key.endswith(("bias", "noise_strength")):
      x = 0.5 * x
    sd[key] = x
  return sd


def _put(tree, path, value):
  *parents, leaf = path.split("/")
  for p in parents:
    tree = tree.setdefault(p, {})
  if leaf in tree:
    raise KeyError(f"{path} written twice")
  tree[leaf] = value


def to_padinv_jax(sd, ignore=("resample_filter",)):
  """Conversion table: NVIDIA state dict -> padinv_jax {"params", "buffers"}.

  OIHW -> HWIO, dense [out, in] -> [in, out], b4.conv1 -> layer0,
  b8.conv0 -> layer1, b8.conv1 -> layer2, ..., b{4 * 2^k}.torgb -> torgb{k}.
  Every key must be used (FIR filter buffers excepted, checked to be the
  [1,3,3,1] filter).
  """
  out = {"params": {}, "buffers": {}}
  fir = fir_filter().numpy()

  def put(col, path, value):
    _put(out[col], path, np.asarray(value, np.float32))

  for key, v in sd.items():
    v = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v
    parts = key.split(".")
    if parts[-1] in ignore:
      np.testing.assert_allclose(v, fir, atol=1e-7, err_msg=key)
      continue
    if parts[0] == "mapping":
      if parts[1] == "w_avg":
        put("buffers", "mapping/w_avg", v)
      else:
        put("params", f"mapping/{parts[1]}/{parts[2]}",
            v.T if parts[2] == "weight" else v)
      continue
    assert parts[0] == "synthesis", key
    if parts[2] == "const":
      put("params", "synthesis/const", v.transpose(1, 2, 0))
      continue
    k = int(math.log2(int(parts[1][1:]))) - 2
    layer = {"conv0": f"layer{2 * k - 1}", "conv1": f"layer{2 * k}",
             "torgb": f"torgb{k}"}[parts[2]]
    rest = parts[3:]
    base = f"synthesis/{layer}"
    if rest[0] == "affine":
      put("params", f"{base}/affine/affine/{rest[1]}",
          v.T if rest[1] == "weight" else v)
    elif rest[0] == "weight":
      put("params", f"{base}/weight", v.transpose(2, 3, 1, 0))
    elif rest[0] == "noise_const":
      put("buffers", f"{base}/noise_const", v)
    elif rest[0] in ("bias", "noise_strength"):
      put("params", f"{base}/{rest[0]}", v)
    else:
      raise KeyError(f"unexpected key {key}")
  return out
