"""Independent PyTorch statement of pytorch-fid's FID Inception-v3 (NCHW).

From pytorch-fid's published semantics (src/pytorch_fid/inception.py:
fid_inception_v3 over torchvision's Inception3 blocks, the FID variants of
Mixed_5b-d / 6b-e / 7b / 7c): a functional forward over a state dict with
torchvision's key names, written without torchvision. Input [N, 3, H, W] in
[0, 1], as pytorch-fid takes it; output the [N, 2048] pool features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def conv(sd, name, x, stride=1, padding=0):
  y = F.conv2d(x, sd[f"{name}.conv.weight"], stride=stride, padding=padding)
  y = F.batch_norm(y, sd[f"{name}.bn.running_mean"],
                   sd[f"{name}.bn.running_var"], sd[f"{name}.bn.weight"],
                   sd[f"{name}.bn.bias"], training=False, eps=0.001)
  return F.relu(y)


def avg3(x):
  return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


def block_a(sd, n, x):
  b1 = conv(sd, f"{n}.branch1x1", x)
  b5 = conv(sd, f"{n}.branch5x5_2", conv(sd, f"{n}.branch5x5_1", x),
            padding=2)
  b3 = conv(sd, f"{n}.branch3x3dbl_1", x)
  b3 = conv(sd, f"{n}.branch3x3dbl_2", b3, padding=1)
  b3 = conv(sd, f"{n}.branch3x3dbl_3", b3, padding=1)
  return torch.cat([b1, b5, b3, conv(sd, f"{n}.branch_pool", avg3(x))], 1)


def block_b(sd, n, x):
  b3 = conv(sd, f"{n}.branch3x3", x, stride=2)
  bd = conv(sd, f"{n}.branch3x3dbl_1", x)
  bd = conv(sd, f"{n}.branch3x3dbl_2", bd, padding=1)
  bd = conv(sd, f"{n}.branch3x3dbl_3", bd, stride=2)
  return torch.cat([b3, bd, F.max_pool2d(x, 3, stride=2)], 1)


def block_c(sd, n, x):
  b1 = conv(sd, f"{n}.branch1x1", x)
  b7 = conv(sd, f"{n}.branch7x7_1", x)
  b7 = conv(sd, f"{n}.branch7x7_2", b7, padding=(0, 3))
  b7 = conv(sd, f"{n}.branch7x7_3", b7, padding=(3, 0))
  bd = conv(sd, f"{n}.branch7x7dbl_1", x)
  bd = conv(sd, f"{n}.branch7x7dbl_2", bd, padding=(3, 0))
  bd = conv(sd, f"{n}.branch7x7dbl_3", bd, padding=(0, 3))
  bd = conv(sd, f"{n}.branch7x7dbl_4", bd, padding=(3, 0))
  bd = conv(sd, f"{n}.branch7x7dbl_5", bd, padding=(0, 3))
  return torch.cat([b1, b7, bd, conv(sd, f"{n}.branch_pool", avg3(x))], 1)


def block_d(sd, n, x):
  b3 = conv(sd, f"{n}.branch3x3_2", conv(sd, f"{n}.branch3x3_1", x),
            stride=2)
  b7 = conv(sd, f"{n}.branch7x7x3_1", x)
  b7 = conv(sd, f"{n}.branch7x7x3_2", b7, padding=(0, 3))
  b7 = conv(sd, f"{n}.branch7x7x3_3", b7, padding=(3, 0))
  b7 = conv(sd, f"{n}.branch7x7x3_4", b7, stride=2)
  return torch.cat([b3, b7, F.max_pool2d(x, 3, stride=2)], 1)


def block_e(sd, n, x, last):
  b1 = conv(sd, f"{n}.branch1x1", x)
  b3 = conv(sd, f"{n}.branch3x3_1", x)
  b3 = torch.cat([conv(sd, f"{n}.branch3x3_2a", b3, padding=(0, 1)),
                  conv(sd, f"{n}.branch3x3_2b", b3, padding=(1, 0))], 1)
  bd = conv(sd, f"{n}.branch3x3dbl_1", x)
  bd = conv(sd, f"{n}.branch3x3dbl_2", bd, padding=1)
  bd = torch.cat([conv(sd, f"{n}.branch3x3dbl_3a", bd, padding=(0, 1)),
                  conv(sd, f"{n}.branch3x3dbl_3b", bd, padding=(1, 0))], 1)
  pooled = (F.max_pool2d(x, 3, stride=1, padding=1) if last else avg3(x))
  return torch.cat([b1, b3, bd, conv(sd, f"{n}.branch_pool", pooled)], 1)


def features(sd, x01):
  x = F.interpolate(x01, size=(299, 299), mode="bilinear",
                    align_corners=False)
  x = 2 * x - 1
  x = conv(sd, "Conv2d_1a_3x3", x, stride=2)
  x = conv(sd, "Conv2d_2a_3x3", x)
  x = conv(sd, "Conv2d_2b_3x3", x, padding=1)
  x = F.max_pool2d(x, 3, stride=2)
  x = conv(sd, "Conv2d_3b_1x1", x)
  x = conv(sd, "Conv2d_4a_3x3", x)
  x = F.max_pool2d(x, 3, stride=2)
  for n in ("Mixed_5b", "Mixed_5c", "Mixed_5d"):
    x = block_a(sd, n, x)
  x = block_b(sd, "Mixed_6a", x)
  for n in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
    x = block_c(sd, n, x)
  x = block_d(sd, "Mixed_7a", x)
  x = block_e(sd, "Mixed_7b", x, last=False)
  x = block_e(sd, "Mixed_7c", x, last=True)
  return F.adaptive_avg_pool2d(x, 1).flatten(1)
