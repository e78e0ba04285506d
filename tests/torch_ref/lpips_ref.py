"""Independent PyTorch reference of LPIPS v0.1 (AlexNet / VGG16 trunk), NCHW.

Built as richzhang/PerceptualSimilarity builds it: a torchvision-shaped
``features`` nn.Sequential (so its state dict has the official
``features.{i}.weight/bias`` keys) and ``lin{k}`` = Sequential(Dropout, 1x1
conv without bias) with keys ``lin{k}.model.1.weight``. Random weights come
from PyTorch's default initialisers (the lin weights are made non-negative
as the trained ones are).
"""

from __future__ import annotations

import torch
import torch.nn as nn

SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


def alexnet_features() -> nn.Sequential:
  return nn.Sequential(
      nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(),
      nn.MaxPool2d(3, 2),
      nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(),
      nn.MaxPool2d(3, 2),
      nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
      nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
      nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),
      nn.MaxPool2d(3, 2))


def vgg16_features() -> nn.Sequential:
  layers, cin = [], 3
  for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512,
            "M", 512, 512, 512, "M"):
    if v == "M":
      layers.append(nn.MaxPool2d(2, 2))
    else:
      layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU()]
      cin = v
  return nn.Sequential(*layers)


# Index (into features) of the ReLU whose output is tapped, per trunk.
TAPS = {"alex": (1, 4, 7, 9, 11), "vgg": (3, 8, 15, 22, 29)}
CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}


class NetLin(nn.Module):

  def __init__(self, cin):
    super().__init__()
    self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(cin, 1, 1, bias=False))

  def forward(self, x):
    return self.model(x)


class LPIPSRef(nn.Module):
  """LPIPS(x, y) -> [N] per-image distance, inputs NCHW in [-1, 1]."""

  def __init__(self, net: str = "alex"):
    super().__init__()
    self.net_name = net
    self.features = alexnet_features() if net == "alex" else vgg16_features()
    for k, c in enumerate(CHANNELS[net]):
      setattr(self, f"lin{k}", NetLin(c))
    self.register_buffer("shift", torch.tensor(SHIFT)[None, :, None, None])
    self.register_buffer("scale", torch.tensor(SCALE)[None, :, None, None])

  def trunk(self, x):
    outs, taps = [], TAPS[self.net_name]
    h = (x - self.shift) / self.scale
    for i, layer in enumerate(self.features):
      h = layer(h)
      if i in taps:
        outs.append(h)
      if i == taps[-1]:
        break
    return outs

  def forward(self, x, y):
    total = 0.0
    for k, (fx, fy) in enumerate(zip(self.trunk(x), self.trunk(y))):
      nx = fx / (torch.sqrt(torch.sum(fx ** 2, dim=1, keepdim=True)) + 1e-10)
      ny = fy / (torch.sqrt(torch.sum(fy ** 2, dim=1, keepdim=True)) + 1e-10)
      d = getattr(self, f"lin{k}")((nx - ny) ** 2)
      total = total + d.mean(dim=(2, 3))
    return total[:, 0]


def make_lpips(net: str = "alex", seed: int = 0) -> LPIPSRef:
  """Random-weight LPIPS in eval mode; lin weights made non-negative."""
  torch.manual_seed(seed)
  m = LPIPSRef(net).eval()
  with torch.no_grad():
    for k in range(5):
      w = getattr(m, f"lin{k}").model[1].weight
      w.abs_()
  return m


def split_state_dict(model: LPIPSRef):
  """(alexnet/vgg ``features.*`` state dict, lpips ``lin*`` state dict)."""
  sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
  trunk = {k: v for k, v in sd.items() if k.startswith("features.")}
  lin = {k: v for k, v in sd.items() if k.startswith("lin")}
  return trunk, lin
