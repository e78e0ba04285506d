"""Independent PyTorch statement of stylegan2-ada-pytorch's StyleGAN2Loss phases.

Written from the published semantics (training/loss.py as DESIGN.md section
11 states it) over the torch references of G (stylegan2_ref) and D
(discriminator_ref), NCHW. Randomness is passed in (z, mixing z, cutoff,
path-length noise) and the noise is the generator's const noise, so a test
can give both implementations the same numbers. Each function returns
(loss, {name: gradient}) with gradients for the state-dict entries that
require grad, as torch.autograd computes them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from torch_ref import discriminator_ref
from torch_ref import stylegan2_ref


def run_g(g_sd, z, z_mix, cutoff, num_ws, resolution, mixing=True):
  ws = stylegan2_ref.mapping(g_sd, z, num_ws)
  if mixing:
    ws = ws.clone()
    ws[:, cutoff:] = stylegan2_ref.mapping(g_sd, z_mix, num_ws)[:, cutoff:]
  img = stylegan2_ref.synthesis(g_sd, ws, resolution, noise_mode="const")
  return img, ws


def _grads(loss, sd):
  keys = [k for k, v in sd.items() if isinstance(v, torch.Tensor)
          and v.requires_grad]
  gs = torch.autograd.grad(loss, [sd[k] for k in keys], allow_unused=True)
  return {k: (torch.zeros_like(sd[k]) if g is None else g)
          for k, g in zip(keys, gs)}


def g_main(g_sd, d_sd, d_cfg, z, z_mix, cutoff, num_ws, resolution, gain=1.0):
  img, _ = run_g(g_sd, z, z_mix, cutoff, num_ws, resolution)
  logits = discriminator_ref.forward(d_sd, img, d_cfg)
  loss = F.softplus(-logits).mean().mul(gain)
  return loss, _grads(loss, g_sd)


def g_pl(g_sd, z, z_mix, cutoff, pl_noise_nchw, pl_mean, num_ws, resolution,
         pl_decay=0.01, pl_weight=2.0, gain=4.0):
  n = pl_noise_nchw.shape[0]
  img, ws = run_g(g_sd, z[:n], z_mix[:n], cutoff, num_ws, resolution)
  (g,) = torch.autograd.grad((img * pl_noise_nchw).sum(), [ws],
                             create_graph=True)
  lengths = g.square().sum(2).mean(1).sqrt()
  mean = torch.as_tensor(pl_mean, dtype=lengths.dtype).lerp(lengths.mean(),
                                                        pl_decay)
  loss = ((lengths - mean).square() * pl_weight).mean().mul(gain)
  return loss, _grads(loss, g_sd), float(mean.detach())


def d_main(g_sd, d_sd, d_cfg, real_nchw, z, z_mix, cutoff, num_ws,
           resolution, gain=1.0):
  with torch.no_grad():
    img, _ = run_g(g_sd, z, z_mix, cutoff, num_ws, resolution)
  fake = discriminator_ref.forward(d_sd, img, d_cfg)
  loss_gen = F.softplus(fake).mean().mul(gain)
  real = discriminator_ref.forward(d_sd, real_nchw, d_cfg)
  loss_real = F.softplus(-real).mean().mul(gain)
  loss = loss_gen + loss_real
  return loss, _grads(loss, d_sd)


def d_r1(d_sd, d_cfg, real_nchw, r1_gamma, gain=16.0):
  x = real_nchw.detach().requires_grad_(True)
  logits = discriminator_ref.forward(d_sd, x, d_cfg)
  (g,) = torch.autograd.grad(logits.sum(), [x], create_graph=True)
  r1 = g.square().sum([1, 2, 3])
  loss = (r1 * (r1_gamma / 2)).mean().mul(gain)
  return loss, _grads(loss, d_sd)
