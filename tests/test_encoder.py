"""PadInv encoder: parity with an independent PyTorch reference, modes, checks.

Reference: tests/torch_ref/padinv_encoder_ref.py (official key names) on the
same random weights, converted with convert.padinv_keys.encoder_from_official.
Tolerance for whole networks (DESIGN 6): max|a - b| <= 1e-4 * max(1, max|ref|).
Small widths keep compile times low; the structure (IR-SE-50 units, three
FPN levels with 4/5/6-conv heads, padding branch) is the full one.
"""

import functools

import jax
import numpy as np
import pytest
import torch

from padinv_jax.models import config as config_lib
from padinv_jax.models import encoder as encoder_lib
from padinv_jax.models import functional
from padinv_jax.convert import padinv_keys
from torch_ref import padinv_encoder_ref as ref

import parity

SMALL = dict(stem_channels=8, stage_channels=(8, 16, 32, 32), fpn_channels=32,
             w_dim=32, codes_per_level=(1, 2, 3), pad_layer_num=4)


def _cfg(**kw):
  return config_lib.encoder_config(**{**SMALL, **kw})


def _torch_model(cfg, seed=0):
  torch.manual_seed(seed)
  m = ref.PadInvEncoderRef(
      depth=cfg.depth, stem_channels=cfg.stem_channels,
      stage_channels=cfg.stage_channels, fpn_channels=cfg.fpn_channels,
      w_dim=cfg.w_dim, codes_per_level=cfg.codes_per_level,
      encoder_type=cfg.encoder_type, use_padding_space=cfg.use_padding_space,
      pad_layer_num=cfg.pad_layer_num, pad_units=cfg.pad_units,
      units=cfg.get("units"))
  ref.randomize_(m, seed)
  m.avg_latent = torch.randn(cfg.w_dim, generator=torch.Generator()
                             .manual_seed(seed + 1)) * 0.5
  return m


def _convert(m, cfg):
  return padinv_keys.encoder_from_official(ref.state_dict_numpy(m), cfg,
                                           w_avg=m.avg_latent.numpy())


def _torch_forward(m, x_nhwc, train):
  m.train(train)
  with torch.no_grad():
    ws, maps = m(torch.from_numpy(x_nhwc.transpose(0, 3, 1, 2).copy()))
  return ws.numpy(), {k: v.numpy().transpose(0, 2, 3, 1)
                      for k, v in maps.items()}


@functools.lru_cache(maxsize=None)
def _apply_fn(model, train):
  if train:
    return jax.jit(lambda v, x: model.apply(v, x, train=True,
                                            mutable=["batch_stats"]))
  return jax.jit(lambda v, x: model.apply(v, x))


def _check(name, got, want):
  got, want = np.asarray(got), np.asarray(want)
  assert got.shape == want.shape, (name, got.shape, want.shape)
  err = float(np.abs(got - want).max())
  scale = max(1.0, float(np.abs(want).max()))
  print(f"{name}: max|diff| {err:.3g} (max|ref| {scale:.3g})")
  assert err <= 1e-4 * scale, (name, err, scale)
  return err


def test_parity_eval_and_train_with_running_stats():
  cfg = _cfg()
  tm = _torch_model(cfg)
  variables = _convert(tm, cfg)
  model = encoder_lib.build_encoder(cfg)
  x = parity.structured_images(2)

  ws, maps = _apply_fn(model, False)(variables, x)
  ws_ref, maps_ref = _torch_forward(tm, x, train=False)
  _check("eval ws", ws, ws_ref)
  assert sorted(maps) == sorted(maps_ref) == sorted(
      config_lib.padding_keys(cfg.pad_layer_num))
  for k in maps:
    assert maps[k].shape == (2, 34, 34, cfg.fpn_channels)
    _check(f"eval pad {k}", maps[k], maps_ref[k])

  (ws, maps), updates = _apply_fn(model, True)(variables, x)
  ws_ref, maps_ref = _torch_forward(tm, x, train=True)  # updates tm's stats
  _check("train ws", ws, ws_ref)
  for k in maps:
    _check(f"train pad {k}", maps[k], maps_ref[k])
  # The UPDATED running statistics (momentum 0.1, unbiased variance) of every
  # BatchNorm, read back through the converter from torch's state dict.
  after = _convert(tm, cfg)["batch_stats"]
  got = jax.tree_util.tree_leaves_with_path(updates["batch_stats"])
  want = dict(jax.tree_util.tree_leaves_with_path(after))
  assert len(got) == len(want) > 100
  worst = max(_check_quiet(v, want[p]) for p, v in got)
  print(f"updated running stats: max|diff| {worst:.3g}")
  assert worst <= 1e-5
  # ... and they did move.
  before = jax.tree_util.tree_leaves(variables["batch_stats"])
  assert max(float(np.abs(np.asarray(a) - b).max()) for a, b in zip(
      before, jax.tree_util.tree_leaves(after))) > 1e-3


def _check_quiet(got, want):
  return float(np.abs(np.asarray(got) - np.asarray(want)).max())


def test_e4e_codes_are_deltas_on_the_first_and_match_torch():
  psp, e4e = _cfg(), _cfg(encoder_type="e4e")
  tm = _torch_model(psp, seed=3)
  variables = _convert(tm, psp)
  x = parity.structured_images(2, seed=3)
  ws_psp, _ = _apply_fn(encoder_lib.build_encoder(psp), False)(variables, x)
  ws_e4e, maps = _apply_fn(encoder_lib.build_encoder(e4e), False)(variables, x)
  # Same weights: e4e's code i = head_0 + head_i (+ w_avg once).
  w_avg = variables["buffers"]["w_avg"]
  d = np.asarray(ws_psp) - w_avg
  want = np.concatenate([d[:, :1], d[:, :1] + d[:, 1:]], 1) + w_avg
  np.testing.assert_allclose(ws_e4e, want, rtol=1e-5, atol=1e-5)
  tm.e4e = True
  ws_ref, maps_ref = _torch_forward(tm, x, train=False)
  _check("e4e ws", ws_e4e, ws_ref)
  _check("e4e pad layer6", maps["layer6"], maps_ref["layer6"])


def test_psp_mode_has_no_padding_branch_and_no_paddings():
  cfg = _cfg(use_padding_space=False)
  tm = _torch_model(cfg, seed=5)
  variables = _convert(tm, cfg)
  assert not any(k.startswith("pad_") for k in variables["params"])
  x = parity.structured_images(2, seed=5)
  ws, maps = _apply_fn(encoder_lib.build_encoder(cfg), False)(variables, x)
  assert maps == {}
  ws_ref, maps_ref = _torch_forward(tm, x, train=False)
  assert maps_ref == {}
  _check("pSp ws", ws, ws_ref)


def test_configuration_errors_are_clear():
  with pytest.raises(ValueError, match="only_pad_even"):
    c = _cfg()
    c.only_pad_even = False
    encoder_lib.build_encoder(c)
  with pytest.raises(ValueError, match="stage_channels"):
    encoder_lib.build_encoder(_cfg(fpn_channels=16))
  with pytest.raises(ValueError, match="depth"):
    encoder_lib.build_encoder(_cfg(depth=34))
  mc = config_lib.tiny_model_config()
  mc.generator.channel_max = 64  # 4..16 px layers now have 64 channels
  with pytest.raises(ValueError, match="fpn_channels"):
    encoder_lib.check_compatible(mc)
  mc = config_lib.tiny_model_config()
  mc.encoder.pad_layer_num = 3
  with pytest.raises(ValueError, match="pad_layer_num"):
    encoder_lib.check_compatible(mc)
  mc = config_lib.tiny_model_config()
  mc.encoder.w_dim = 16
  with pytest.raises(ValueError, match="w_dim"):
    encoder_lib.check_compatible(mc)


def test_converter_names_missing_unexpected_and_misshaped_keys():
  cfg = _cfg()
  sd = ref.state_dict_numpy(_torch_model(cfg))
  w_avg = np.zeros(cfg.w_dim, np.float32)
  bad = dict(sd)
  del bad["latent_heads.2.convs.4.bias"]
  bad["latent_heads.9.linear.weight"] = np.zeros((3, 3), np.float32)
  bad["fpn.lateral_layers.0.weight"] = sd["fpn.lateral_layers.0.weight"][:3]
  with pytest.raises(Exception) as e:
    padinv_keys.encoder_from_official(bad, cfg, w_avg=w_avg)
  msg = str(e.value)
  assert "latent_heads.2.convs.4.bias" in msg
  assert "latent_heads.9.linear.weight" in msg
  assert "fpn.lateral_layers.0.weight" in msg
  with pytest.raises(Exception, match="w_avg"):
    padinv_keys.encoder_from_official(sd, cfg)


def test_full_size_parameter_count():
  """IR-SE-50 PadInv encoder at full size, counted with jax.eval_shape.

  Formula (PyTorch parameters only: conv/linear weights and biases, BN
  weight/bias, PReLU; BN running stats are buffers). IR-SE unit cin->cout:
  BN 2cin + 3x3 9cin.cout + PReLU cout + 3x3 9cout^2 + BN 2cout + SE
  2cout.(cout/16) [+ shortcut 1x1 cin.cout + BN 2cout when cin != cout].
    stem: 3*3*3*64 + BN 2*64 + PReLU 64                         =      1,920
    body [3, 4, 14, 3] units (stages 223,680 / 1,124,992 /
      16,385,792 / 13,213,696)                                  = 30,948,160
    FPN laterals: 128*512+512 + 256*512+512                     =    197,632
    Map2Style convs: 3x4 + 4x5 + 11x6 = 98 x (9*512*512+512)     = 231,261,184
    equalised linears: 18 x (512*512+512)                        =  4,727,808
    pSp / no padding branch                                      = 267,136,704
  which is pSp's "about 267.1M" 18-head encoder. The padding branch adds
    2 IR-SE units 512->512 (2 x 4,296,704) + 4 x 1x1 (512*512+512) = 10,558,464
  PadInv encoder total                                           = 277,695,168
  """
  cfg = config_lib.encoder_config()
  shapes = encoder_lib.encoder_shapes(cfg)
  n = functional.num_params(shapes["params"])

  def unit(cin, cout):
    p = cin * 2 + 9 * cin * cout + cout + 9 * cout * cout + 2 * cout
    p += 2 * cout * (cout // 16)
    if cin != cout:
      p += cin * cout + 2 * cout
    return p

  body = 0
  for stage in __import__("padinv_jax.models.irse").models.irse.unit_specs(50):
    body += sum(unit(s.in_channels, s.out_channels) for s in stage)
  stem = 27 * 64 + 3 * 64
  fpn = 128 * 512 + 512 + 256 * 512 + 512
  heads = 98 * (9 * 512 * 512 + 512) + 18 * (512 * 512 + 512)
  pad = 2 * unit(512, 512) + 4 * (512 * 512 + 512)
  print(f"body {body:,} heads {heads:,} pad {pad:,} total {n:,}")
  assert n == stem + body + fpn + heads + pad == 277_695_168
  n_psp = functional.num_params(encoder_lib.encoder_shapes(
      config_lib.encoder_config(use_padding_space=False))["params"])
  assert n_psp == stem + body + fpn + heads == 267_136_704
  assert n - n_psp == pad


def test_depths_100_and_152_have_the_original_unit_counts():
  for depth, counts in ((100, (3, 13, 30, 3)), (152, (3, 8, 36, 3))):
    body = encoder_lib.encoder_shapes(_cfg(depth=depth))["params"]["body"]
    per_stage = [sum(k.startswith(f"stage{s}_") for k in body)
                 for s in range(4)]
    assert tuple(per_stage) == counts
    # Only first units that change width (8->16->32; 32->32 in this small
    # config's last stage) have a shortcut conv; the rest subsample.
    assert sorted(k for k in body if "shortcut_conv" in body[k]) == [
        "stage1_unit0", "stage2_unit0"]


def test_batch_statistics_cover_the_global_batch_across_devices():
  """SyncBN: sharded jit and pmap(axis_name) give the single-device update."""
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
  from padinv_jax.models import irse
  n_dev = jax.device_count()
  assert n_dev == 8  # conftest fakes 8 CPU devices
  unit = irse.IRSEUnit(16, stride=2)
  x = np.random.default_rng(0).standard_normal((n_dev, 8, 8, 8)).astype(
      np.float32)
  variables = unit.init(jax.random.key(0), x)

  def step(v, x):
    return unit.apply(v, x, train=True, mutable=["batch_stats"])

  y, want = jax.jit(step)(variables, x)
  mesh = Mesh(np.array(jax.devices()), ("data",))
  xs = jax.device_put(x, NamedSharding(mesh, P("data")))
  y_sharded, got = jax.jit(step)(variables, xs)
  np.testing.assert_allclose(y_sharded, y, rtol=1e-5, atol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5,
                                                       atol=1e-6), got, want)

  unit_p = irse.IRSEUnit(16, stride=2, axis_name="batch")
  y_p, got_p = jax.pmap(
      lambda v, x: unit_p.apply(v, x, train=True, mutable=["batch_stats"]),
      axis_name="batch", in_axes=(None, 0))(variables, x[:, None])
  np.testing.assert_allclose(np.asarray(y_p)[:, 0], y, rtol=1e-5, atol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a[0], b, rtol=1e-5,
                                                       atol=1e-6), got_p, want)
