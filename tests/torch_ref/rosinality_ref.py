"""Independent PyTorch reference of rosinality's stylegan2-pytorch Generator.

Written for the tests from that code base's published semantics, over its
own key names (NCHW):
  style.{1..n_mlp}.{weight, bias}      EqualLinear, lr_mul 0.01, fused lrelu
  input.input [1, C, 4, 4]
  conv1 / convs.{j}: StyledConv = ModulatedConv2d (conv.weight
      [1, O, I, 3, 3] x 1/sqrt(I*9), conv.modulation EqualLinear with bias
      init 1, demodulated; up-sampling ones use a grouped conv_transpose2d
      and a [1,3,3,1] blur with gain 4), NoiseInjection (noise.weight [1]),
      FusedLeakyReLU (activate.bias)
  to_rgb1 / to_rgbs.{k}: ModulatedConv2d 1x1 without demodulation + bias
      [1, 3, 1, 1]; skip up-sampled by upfirdn2d (up 2, pad (2, 1), gain 4)
  noises.noise_{i} [1, 1, r, r]
The modulated conv is computed the way rosinality does (fused grouped conv
with the weight scale inside the demodulation), not the way padinv_jax does.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from torch_ref.stylegan2_ref import fir_filter, upfirdn2d


def _lrelu(x, bias):
  return F.leaky_relu(x + bias.view(1, -1, *[1] * (x.ndim - 2)), 0.2) * math.sqrt(2)


def _equal_linear(x, sd, pre, lr_mul=1.0, act=False):
  w = sd[pre + "weight"]
  out = F.linear(x, w * (lr_mul / math.sqrt(w.shape[1])))
  b = sd[pre + "bias"] * lr_mul
  return _lrelu(out, b) if act else out + b


def modulated_conv(sd, pre, x, w, demodulate=True, up=False):
  weight = sd[pre + "weight"]  # [1, O, I, k, k]
  n, cin, h, wd = x.shape
  _, cout, _, k, _ = weight.shape
  style = _equal_linear(w, sd, pre + "modulation.").view(n, 1, cin, 1, 1)
  weight = weight * style / math.sqrt(cin * k * k)
  if demodulate:
    weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8).view(
        n, cout, 1, 1, 1)
  if up:
    weight = weight.transpose(1, 2).reshape(n * cin, cout, k, k)
    out = F.conv_transpose2d(x.reshape(1, n * cin, h, wd), weight, stride=2,
                             groups=n)
    out = out.view(n, cout, out.shape[-2], out.shape[-1])
    return upfirdn2d(out, fir_filter(), pad=(1, 1, 1, 1), gain=4.0)
  out = F.conv2d(x.reshape(1, n * cin, h, wd),
                 weight.reshape(n * cout, cin, k, k), padding=k // 2, groups=n)
  return out.view(n, cout, h, wd)


def styled_conv(sd, pre, x, w, noise, up=False):
  out = modulated_conv(sd, pre + "conv.", x, w, up=up)
  if noise is not None:
    out = out + sd[pre + "noise.weight"] * noise
  return _lrelu(out, sd[pre + "activate.bias"])


def to_rgb(sd, pre, x, w, skip=None):
  out = modulated_conv(sd, pre + "conv.", x, w, demodulate=False)
  out = out + sd[pre + "bias"]
  if skip is not None:
    out = out + upfirdn2d(skip, fir_filter(), up=2, pad=(2, 1, 2, 1), gain=4.0)
  return out


def mapping(sd, z, truncation=1.0, truncation_latent=None, lr_mul=0.01):
  x = z * torch.rsqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-8)
  i = 1
  while f"style.{i}.weight" in sd:
    x = _equal_linear(x, sd, f"style.{i}.", lr_mul, act=True)
    i += 1
  if truncation != 1:
    x = truncation_latent + truncation * (x - truncation_latent)
  return x


def generate(sd, latent, use_noise=True):
  """latent [N, n_latent, style_dim] -> images [N, 3, R, R] (noise buffers)."""
  n = latent.shape[0]
  num_layers = len([k for k in sd if k.startswith("noises.")])
  noise = [sd[f"noises.noise_{i}"] if use_noise else None
           for i in range(num_layers)]
  out = sd["input.input"].repeat(n, 1, 1, 1)
  out = styled_conv(sd, "conv1.", out, latent[:, 0], noise[0])
  skip = to_rgb(sd, "to_rgb1.", out, latent[:, 1])
  i, j = 1, 0
  while f"convs.{j}.conv.weight" in sd:
    out = styled_conv(sd, f"convs.{j}.", out, latent[:, i], noise[j + 1],
                      up=True)
    out = styled_conv(sd, f"convs.{j + 1}.", out, latent[:, i + 1],
                      noise[j + 2])
    skip = to_rgb(sd, f"to_rgbs.{j // 2}.", out, latent[:, i + 2], skip)
    i, j = i + 2, j + 2
  return skip


def random_state_dict(size, style_dim, n_mlp, channels, seed=0, lr_mul=0.01):
  """Random rosinality-layout generator weights.

  Args:
    size: output resolution.
    style_dim: z and w width.
    n_mlp: mapping depth.
    channels: {resolution: channels}.
    seed: torch seed.
    lr_mul: mapping lr multiplier (weights stored / lr_mul, as initialised).
  """
  g = torch.Generator().manual_seed(seed)

  def randn(*shape, scale=1.0, shift=0.0):
    return shift + scale * torch.randn(*shape, generator=g)

  kernel = fir_filter() * 4
  sd = {}
  for i in range(1, n_mlp + 1):
    sd[f"style.{i}.weight"] = randn(style_dim, style_dim) / lr_mul
    sd[f"style.{i}.bias"] = randn(style_dim, scale=0.3) / lr_mul
  sd["input.input"] = randn(1, channels[4], 4, 4)

  def styled(pre, cin, cout, up):
    sd[pre + "conv.weight"] = randn(1, cout, cin, 3, 3)
    sd[pre + "conv.modulation.weight"] = randn(cin, style_dim)
    sd[pre + "conv.modulation.bias"] = randn(cin, scale=0.3, shift=1.0)
    sd[pre + "noise.weight"] = randn(1, scale=0.5)
    sd[pre + "activate.bias"] = randn(cout, scale=0.5)
    if up:
      sd[pre + "conv.blur.kernel"] = kernel.clone()

  def rgb(pre, cin, up):
    sd[pre + "conv.weight"] = randn(1, 3, cin, 1, 1)
    sd[pre + "conv.modulation.weight"] = randn(cin, style_dim)
    sd[pre + "conv.modulation.bias"] = randn(cin, scale=0.3, shift=1.0)
    sd[pre + "bias"] = randn(1, 3, 1, 1, scale=0.5)
    if up:
      sd[pre + "upsample.kernel"] = kernel.clone()

  styled("conv1.", channels[4], channels[4], False)
  rgb("to_rgb1.", channels[4], False)
  log_size = int(math.log2(size))
  for k, r in enumerate(2 ** i for i in range(3, log_size + 1)):
    styled(f"convs.{2 * k}.", channels[r // 2], channels[r], True)
    styled(f"convs.{2 * k + 1}.", channels[r], channels[r], False)
    rgb(f"to_rgbs.{k}.", channels[r], True)
  for i in range((log_size - 2) * 2 + 1):
    r = 2 ** ((i + 5) // 2)
    sd[f"noises.noise_{i}"] = randn(1, 1, r, r)
  return sd
