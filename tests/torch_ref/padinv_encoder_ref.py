"""Independent PyTorch reference of the PadInv / pSp / e4e encoder (NCHW, OIHW).

Written from DESIGN.md section 2 for parity tests; module attribute names
follow the official PadInv state-dict keys (input_layer.*, backbone_stages.
{s}.{b}.{res_layer,shortcut_layer}.*, fpn.lateral_layers.{i},
latent_heads.{j}.{convs,linear}.*, padding_extractor.{k}.*,
padding_modulation_heads.{k}.*) so the official-key converter can be tested
on its state dict. Widths are configurable so tiny networks run fast.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

UNITS = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 152: (3, 8, 36, 3)}


class SqueezeExcite(nn.Module):

  def __init__(self, c, reduction=16):
    super().__init__()
    hidden = max(1, c // reduction)
    self.fc1 = nn.Conv2d(c, hidden, 1, bias=False)
    self.fc2 = nn.Conv2d(hidden, c, 1, bias=False)

  def forward(self, x):
    s = x.mean(dim=(2, 3), keepdim=True)
    return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))


class IRSEUnit(nn.Module):
  """res_layer = [BN, conv3x3, PReLU, conv3x3/s, BN, SE]; shortcut."""

  def __init__(self, cin, cout, stride):
    super().__init__()
    if cin == cout:  # a 1x1 max-pool with stride s is a plain subsample
      self.shortcut_layer = nn.MaxPool2d(1, stride)
    else:
      self.shortcut_layer = nn.Sequential(
          nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
          nn.BatchNorm2d(cout))
    self.res_layer = nn.Sequential(
        nn.BatchNorm2d(cin),
        nn.Conv2d(cin, cout, 3, stride=1, padding=1, bias=False),
        nn.PReLU(cout),
        nn.Conv2d(cout, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        SqueezeExcite(cout))

  def forward(self, x):
    return self.res_layer(x) + self.shortcut_layer(x)


class EqualLinear(nn.Module):

  def __init__(self, cin, cout):
    super().__init__()
    self.weight = nn.Parameter(torch.randn(cout, cin))
    self.bias = nn.Parameter(torch.zeros(cout))

  def forward(self, x):
    return F.linear(x, self.weight / math.sqrt(self.weight.shape[1]),
                    self.bias)


class Map2Style(nn.Module):

  def __init__(self, cin, cout, side):
    super().__init__()
    layers = []
    for k in range(int(round(math.log2(side)))):
      layers += [nn.Conv2d(cin if k == 0 else cout, cout, 3, 2, 1),
                 nn.LeakyReLU(0.01)]
    self.convs = nn.Sequential(*layers)
    self.linear = EqualLinear(cout, cout)
    self.cout = cout

  def forward(self, x):
    return self.linear(self.convs(x).reshape(x.shape[0], self.cout))


class FPN(nn.Module):

  def __init__(self, in_channels, width):
    super().__init__()
    self.lateral_layers = nn.ModuleList(
        [nn.Conv2d(c, width, 1) for c in in_channels[:-1]])

  def forward(self, feats):
    out = [lat(f) for lat, f in zip(self.lateral_layers, feats)]
    out.append(feats[-1])
    for i in range(len(out) - 1, 0, -1):
      out[i - 1] = out[i - 1] + F.interpolate(
          out[i], size=out[i - 1].shape[2:], mode="bilinear",
          align_corners=True)
    return out


class PadInvEncoderRef(nn.Module):
  """forward(x NCHW) -> (ws [N, codes, w_dim], {"const", "layer0", ...})."""

  def __init__(self, depth=50, stem_channels=64,
               stage_channels=(64, 128, 256, 512), fpn_channels=512,
               w_dim=512, codes_per_level=(3, 4, 11), encoder_type="psp",
               use_padding_space=True, pad_layer_num=4, pad_units=2,
               units=None):
    super().__init__()
    self.codes_per_level = tuple(codes_per_level)
    self.e4e = encoder_type == "e4e"
    self.use_padding_space = use_padding_space
    self.pad_layer_num = pad_layer_num
    self.input_layer = nn.Sequential(
        nn.Conv2d(3, stem_channels, 3, 1, 1, bias=False),
        nn.BatchNorm2d(stem_channels), nn.PReLU(stem_channels))
    stages, cin = [], stem_channels
    counts = UNITS[depth] if units is None else tuple(units)
    for count, cout in zip(counts, stage_channels):
      stages.append(nn.Sequential(*[
          IRSEUnit(cin if b == 0 else cout, cout, 2 if b == 0 else 1)
          for b in range(count)]))
      cin = cout
    self.backbone_stages = nn.ModuleList(stages)
    levels = len(self.codes_per_level)
    self.fpn = FPN(list(stage_channels[-levels:]), fpn_channels)
    heads = []
    for level, count in enumerate(self.codes_per_level):
      # The original hard-codes the level sides for 256 px input.
      heads += [Map2Style(fpn_channels, w_dim, 16 * 2 ** level)
                for _ in range(count)]
    self.latent_heads = nn.ModuleList(heads)
    if use_padding_space:
      self.padding_extractor = nn.Sequential(*[
          IRSEUnit(fpn_channels, fpn_channels, 1) for _ in range(pad_units)])
      self.padding_modulation_heads = nn.ModuleList(
          [nn.Conv2d(fpn_channels, fpn_channels, 1)
           for _ in range(pad_layer_num)])
    self.avg_latent = torch.zeros(w_dim)

  def forward(self, x):
    x = self.input_layer(x)
    feats = []
    for stage in self.backbone_stages:
      x = stage(x)
      feats.append(x)
    levels = len(self.codes_per_level)
    feats = self.fpn(feats[-levels:])[::-1]
    codes, j = [], 0
    for level, count in enumerate(self.codes_per_level):
      for _ in range(count):
        codes.append(self.latent_heads[j](feats[level]))
        j += 1
    ws = torch.stack(codes, 1)
    if self.e4e:
      ws = torch.cat([ws[:, :1], ws[:, :1] + ws[:, 1:]], 1)
    ws = ws + self.avg_latent
    if not self.use_padding_space:
      return ws, {}
    p = self.padding_extractor(feats[1])
    side = 2 ** (self.pad_layer_num + 1) + 2
    p0 = F.interpolate(p, size=(side, side), mode="bicubic",
                       align_corners=True)
    maps = {"const": p0}
    for k, head in enumerate(self.padding_modulation_heads):
      maps[f"layer{2 * k}"] = head(p0)
    return ws, maps


def randomize_(model: nn.Module, seed: int, bn_stats: bool = True) -> None:
  """Random but well-scaled weights: conv/linear U(+-1/sqrt(fan_in)) plus
  non-trivial BN affine, running stats, PReLU slopes and biases."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in model.named_parameters():
      if p.ndim >= 2:
        fan_in = int(np.prod(p.shape[1:]))
        bound = 1.0 / math.sqrt(fan_in)
        if name.endswith("linear.weight"):  # EqualLinear: N(0, 1) stored
          p.copy_(torch.randn(p.shape, generator=g))
        else:
          p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * bound * 1.7)
      elif name.endswith("bias"):
        p.copy_(torch.randn(p.shape, generator=g) * 0.1)
      else:  # BN scale or PReLU slope
        base = 0.25 if p.shape and _is_prelu(model, name) else 1.0
        p.copy_(base + torch.randn(p.shape, generator=g) * 0.1)
    if bn_stats:
      for name, b in model.named_buffers():
        if name.endswith("running_mean"):
          b.copy_(torch.randn(b.shape, generator=g) * 0.1)
        elif name.endswith("running_var"):
          b.copy_(0.5 + torch.rand(b.shape, generator=g))


def _is_prelu(model, pname):
  mod = model.get_submodule(pname.rsplit(".", 1)[0])
  return isinstance(mod, nn.PReLU)


def state_dict_numpy(model: nn.Module) -> dict:
  # Copies: .numpy() aliases the tensors, which train-mode forwards update in
  # place (and JAX may read numpy inputs asynchronously without copying).
  return {k: v.detach().cpu().numpy().copy()
          for k, v in model.state_dict().items()}
