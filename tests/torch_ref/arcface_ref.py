"""Independent PyTorch reference of TreB1eN's ArcFace IR-SE backbone, NCHW.

Module structure (and so the state-dict keys) as InsightFace_Pytorch's
model_ir_se50.pth: ``input_layer.{0,1,2}`` (conv, BN, PReLU),
``body.{k}`` bottleneck_IR_SE units with ``shortcut_layer`` (MaxPool2d(1, s)
or Sequential(conv 1x1, BN)) and ``res_layer.{0..5}`` (BN, conv, PReLU, conv,
BN, SEModule with fc1/fc2), ``output_layer.{0,3,4}`` (BN2d, Linear, BN1d).
``ArcFaceRef.embed`` adds PadInv's preprocessing (resize to 256, crop,
adaptive average pool) and the L2 normalisation, with torch's own ops.
Widths are parameters so the tests can run a narrow network on a CPU.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

UNITS = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 152: (3, 8, 36, 3)}


class SEModule(nn.Module):

  def __init__(self, channels, reduction=16):
    super().__init__()
    hidden = max(1, channels // reduction)
    self.fc1 = nn.Conv2d(channels, hidden, 1, bias=False)
    self.fc2 = nn.Conv2d(hidden, channels, 1, bias=False)

  def forward(self, x):
    s = F.adaptive_avg_pool2d(x, 1)
    return x * torch.sigmoid(self.fc2(F.relu(self.fc1(s))))


class BottleneckIRSE(nn.Module):

  def __init__(self, cin, depth, stride):
    super().__init__()
    if cin == depth:
      self.shortcut_layer = nn.MaxPool2d(1, stride)
    else:
      self.shortcut_layer = nn.Sequential(
          nn.Conv2d(cin, depth, 1, stride, bias=False), nn.BatchNorm2d(depth))
    self.res_layer = nn.Sequential(
        nn.BatchNorm2d(cin),
        nn.Conv2d(cin, depth, 3, 1, 1, bias=False),
        nn.PReLU(depth),
        nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
        nn.BatchNorm2d(depth),
        SEModule(depth, 16))

  def forward(self, x):
    return self.res_layer(x) + self.shortcut_layer(x)


class ArcFaceRef(nn.Module):

  def __init__(self, depth=50, stem=64, widths=(64, 128, 256, 512),
               input_size=112, emb=512):
    super().__init__()
    self.input_size = input_size
    self.input_layer = nn.Sequential(
        nn.Conv2d(3, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem),
        nn.PReLU(stem))
    units, cin = [], stem
    for n, w in zip(UNITS[depth], widths):
      for u in range(n):
        units.append(BottleneckIRSE(cin, w, 2 if u == 0 else 1))
        cin = w
    self.body = nn.Sequential(*units)
    side = input_size // 16
    self.output_layer = nn.Sequential(
        nn.BatchNorm2d(widths[-1]), nn.Dropout(0.4), nn.Flatten(),
        nn.Linear(widths[-1] * side * side, emb), nn.BatchNorm1d(emb))

  def forward(self, x):
    return self.output_layer(self.body(self.input_layer(x)))

  def embed(self, images):
    """PadInv's ArcFace forward on NCHW images in [-1, 1]."""
    x = images
    if x.shape[2:4] != (256, 256):
      x = F.interpolate(x, size=(256, 256), mode="bilinear",
                        align_corners=False)
    x = x[:, :, 35:223, 32:220]
    x = F.adaptive_avg_pool2d(x, (self.input_size, self.input_size))
    e = self.forward(x)
    return e / e.norm(p=2, dim=1, keepdim=True)


def make_arcface(seed=0, **kw) -> ArcFaceRef:
  """Random ArcFace in eval mode with non-trivial BN statistics and PReLUs."""
  torch.manual_seed(seed)
  m = ArcFaceRef(**kw)
  with torch.no_grad():
    for mod in m.modules():
      if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
        mod.weight.uniform_(0.5, 1.5)
        mod.bias.uniform_(-0.2, 0.2)
        mod.running_mean.uniform_(-0.2, 0.2)
        mod.running_var.uniform_(0.5, 2.0)
        mod.num_batches_tracked.fill_(100)
      elif isinstance(mod, nn.PReLU):
        mod.weight.uniform_(0.0, 0.5)
  return m.eval()
