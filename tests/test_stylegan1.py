"""StyleGAN1 against an independent PyTorch reference (NVIDIA names, random weights).

The reference (tests/torch_ref/stylegan1_ref.py) runs in float64 with the
real fused transposed conv; padinv_jax runs float32. Relative <= 1e-5 on
mapping (with truncation), synthesis at 32 px (nearest + conv) and 128 px
(fused), const and no noise, and with padding maps.
"""


import jax
import numpy as np
import pytest
import torch

from padinv_jax.convert import stylegan1_keys
from padinv_jax.models import config as config_lib
from padinv_jax.models import functional
from torch_ref import stylegan1_ref as ref

ARCH = dict(z_dim=16, w_dim=16, mapping_layers=3, channel_base=1024,
            channel_max=32)


def _setup(resolution, seed=0):
  sd = ref.state_dict(resolution, ARCH["z_dim"], ARCH["w_dim"],
                      ARCH["mapping_layers"], ARCH["channel_base"],
                      ARCH["channel_max"], seed=seed)
  cfg = config_lib.generator_config(family="stylegan1",
                                    resolution=resolution, **ARCH)
  g = stylegan1_keys.convert_generator({k: v.numpy() for k, v in sd.items()},
                                       cfg, "test G")
  return sd, cfg, g


def _t(x):
  return torch.from_numpy(np.ascontiguousarray(x, np.float64))


def _sd64(sd):
  return {k: v.double() for k, v in sd.items()}


def _rel(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("psi,cutoff", [(1.0, None), (0.7, 8), (0.5, 3)])
def test_mapping_and_truncation(psi, cutoff):
  sd, cfg, g = _setup(32)
  z = np.random.default_rng(1).standard_normal((4, 16)).astype(np.float32)
  got = functional.mapping(g, z, config=cfg, psi=psi, cutoff=cutoff)
  with torch.no_grad():
    want = ref.mapping(_sd64(sd), _t(z), config_lib.num_ws(cfg), psi, cutoff)
  assert _rel(got, want.numpy()) <= 1e-5


@pytest.mark.parametrize("resolution", [32, 128])
@pytest.mark.parametrize("noise", ["const", "none"])
def test_synthesis_matches_reference(resolution, noise):
  sd, cfg, g = _setup(resolution, seed=resolution)
  nws = config_lib.num_ws(cfg)
  ws = np.random.default_rng(2).standard_normal((3, nws, 16)).astype(
      np.float32)
  got = jax.jit(lambda v, w: functional.synthesize(
      v, w, config=cfg, noise_mode=noise))(g, ws)
  with torch.no_grad():
    want = ref.synthesis(_sd64(sd), _t(ws), resolution, noise).numpy()
  want = want.transpose(0, 2, 3, 1)
  assert np.std(want) > 0.1
  assert _rel(got, want) <= 1e-5, _rel(got, want)


def _maps(cfg, n, seed=3):
  rng = np.random.default_rng(seed)
  s = config_lib.padding_size(cfg.pad_layer_num)
  out = {}
  for key in config_lib.padding_keys(cfg.pad_layer_num):
    c = config_lib.channels(cfg, 4 if key == "const" else
                            4 * 2 ** (int(key[5:]) // 2))
    out[key] = rng.standard_normal((n, s, s, c)).astype(np.float32)
  return out


def test_padded_generator_matches_reference():
  sd, cfg, g = _setup(64, seed=5)
  nws = config_lib.num_ws(cfg)
  ws = np.random.default_rng(4).standard_normal((2, nws, 16)).astype(
      np.float32)
  maps = _maps(cfg, 2)
  got = functional.synthesize(g, ws, maps, config=cfg)
  with torch.no_grad():
    want = ref.synthesis(_sd64(sd), _t(ws), 64, "const",
                         {k: _t(v.transpose(0, 3, 1, 2))
                          for k, v in maps.items()}).numpy()
  assert _rel(got, want.transpose(0, 2, 3, 1)) <= 1e-5
  plain = functional.synthesize(g, ws, config=cfg)
  assert np.max(np.abs(np.asarray(got) - np.asarray(plain))) > 1e-2


def test_learned_const_and_zero_rings_equal_the_plain_generator():
  _, cfg, g = _setup(32, seed=6)
  ws = np.random.default_rng(7).standard_normal(
      (2, config_lib.num_ws(cfg), 16)).astype(np.float32)
  maps = {k: np.zeros_like(v) for k, v in _maps(cfg, 2).items()}
  s = maps["const"].shape[1]
  o = (s - 4) // 2
  maps["const"][:, o:o + 4, o:o + 4] = np.asarray(
      g["params"]["synthesis"]["4x4_Const"]["const"])
  f = jax.jit(lambda v, w, p: functional.synthesize(v, w, p, config=cfg))
  np.testing.assert_array_equal(f(g, ws, maps), f(g, ws, {}))


def test_importer_is_strict():
  sd, cfg, _ = _setup(32)
  flat = {k: v.numpy() for k, v in sd.items()}
  bad = dict(flat)
  del bad["synthesis/8x8/Conv1/bias"]
  with pytest.raises(Exception, match="8x8/Conv1/bias"):
    stylegan1_keys.convert_generator(bad, cfg, "G")
  bad = dict(flat, **{"synthesis/lod": np.float32(1.0)})
  with pytest.raises(Exception, match="lod"):
    stylegan1_keys.convert_generator(bad, cfg, "G")
  tf_names = {("G_synthesis/" + k[len("synthesis/"):]) if k.startswith(
      "synthesis/") else k: v for k, v in flat.items()}
  a = stylegan1_keys.convert_generator(tf_names, cfg, "G")
  b = stylegan1_keys.convert_generator(flat, cfg, "G")
  jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)


def test_generator_paddings_reproduce_the_plain_stylegan1():
  from padinv_jax.inversion import apps  # pylint: disable=g-import-not-at-top
  _, cfg, g = _setup(32, seed=8)
  ws = np.random.default_rng(9).standard_normal(
      (2, config_lib.num_ws(cfg), 16)).astype(np.float32)
  pads = apps.generator_paddings(g, 2, config=cfg)
  f = jax.jit(lambda v, w, p: functional.synthesize(v, w, p, config=cfg))
  np.testing.assert_array_equal(f(g, ws, pads), f(g, ws, {}))
