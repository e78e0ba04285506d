"""GAN losses and updates against an independent PyTorch statement of StyleGAN2Loss.

On the same random NVIDIA-layout weights and the same draws (z, mixing z
and cutoff, path-length noise; const synthesis noise), the four phases'
loss values and parameter gradients match tests/torch_ref/gan_loss_ref.py;
the G_ema update and the lazy-regularisation Adam are checked by hand.
"""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import torch

from padinv_jax.convert import d_keys
from padinv_jax.losses import gan as gan_loss
from padinv_jax.models import config as config_lib
from padinv_jax.models import discriminator as d_lib
from padinv_jax.training import gan_config
from padinv_jax.training import gan_lib
from torch_ref import discriminator_ref as d_ref
from torch_ref import gan_loss_ref
from torch_ref import stylegan2_ref as g_ref

RES = 16
G_ARCH = dict(resolution=RES, z_dim=8, w_dim=8, mapping_layers=2,
              channel_base=64, channel_max=8)
D_CFG = dict(resolution=RES, channel_base=64, channel_max=8,
             mbstd_group_size=2, mbstd_num_channels=1)
N = 4
NUM_WS = 2 * int(math.log2(RES)) - 2


def _rel(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))


def _assert_tree_close(got, want, tol=1e-4):
  """Each leaf within tol of the gradient's scale (its largest entry in any
  leaf), and within 10 tol of its own: float32 sums of many small terms in
  a leaf of tiny gradients lose digits that no implementation keeps."""
  flat_g = dict(jax.tree_util.tree_leaves_with_path(got))
  flat_w = dict(jax.tree_util.tree_leaves_with_path(want))
  assert set(flat_g) == set(flat_w)
  scale = max(float(np.max(np.abs(v))) for v in flat_w.values())
  for k in flat_w:
    a, b = np.asarray(flat_g[k], np.float64), np.asarray(flat_w[k], np.float64)
    err = float(np.max(np.abs(a - b)))
    name = jax.tree_util.keystr(k)
    assert err <= tol * scale, (name, err, scale)
    assert err <= 10 * tol * max(float(np.max(np.abs(b))), 1e-12), name


@pytest.fixture(scope="module")
def setup():
  torch.manual_seed(0)
  g_sd = g_ref.random_state_dict(**G_ARCH, seed=3)
  g_sd["mapping.w_avg"] = torch.zeros(G_ARCH["w_dim"])
  d_np = d_ref.make_state_dict(D_CFG, seed=4)
  g_vars = g_ref.to_padinv_jax(g_sd)
  d_cfg = d_lib.discriminator_config(**D_CFG)
  d_vars = d_keys.discriminator_from_nvidia(d_np, d_cfg)
  gen_cfg = config_lib.generator_config(**G_ARCH)
  cfg = ml_collections.ConfigDict({"model": {"generator": gen_cfg},
                                   "discriminator": d_cfg})
  nets = gan_lib.build_nets(cfg)
  rng = np.random.default_rng(5)
  z = rng.standard_normal((N, 8)).astype(np.float32)
  z_mix = rng.standard_normal((N, 8)).astype(np.float32)
  pl_noise = (rng.standard_normal((N // 2, RES, RES, 3)) / RES).astype(
      np.float32)
  real = np.tanh(rng.standard_normal((N, RES, RES, 3))).astype(np.float32)
  draws = gan_loss.Draws(jnp.asarray(z), jnp.asarray(z_mix),
                         jnp.asarray(3, jnp.int32), None,
                         jnp.asarray(pl_noise))
  return dict(g_sd=g_sd, d_np=d_np, g_vars=g_vars, d_vars=d_vars,
              d_cfg=d_cfg, nets=nets, z=z, z_mix=z_mix, pl_noise=pl_noise,
              real=real, draws=draws)


# The reference runs in float64: its numbers are then the exact values that
# the float32 JAX code must reach to within float32 noise (second-order
# gradients of R1 and the path length lose ~1e-4 in float32 either side).
def _t(x):
  return torch.from_numpy(np.ascontiguousarray(x, np.float64))


def _torch_g(g_sd):
  return {k: (v.detach().double().clone().requires_grad_(
      g_ref.is_parameter(k))) for k, v in g_sd.items()}


def _torch_d(d_np):
  return {k: torch.tensor(v, dtype=torch.float64,
                          requires_grad=not k.endswith("resample_filter"))
          for k, v in d_np.items()}


def _g_grads_to_jax(grads, g_sd):
  full = {k: grads[k].float() if k in grads else v.detach()
          for k, v in g_sd.items()}
  return g_ref.to_padinv_jax(full)["params"]


def _d_grads_to_jax(grads, d_np, d_cfg):
  full = {k: (grads[k].float().numpy() if k in grads else v)
          for k, v in d_np.items()}
  return d_keys.discriminator_from_nvidia(full, d_cfg)["params"]


def test_g_main_matches_torch(setup):
  s = setup
  loss, aux = gan_loss.g_main_loss(
      s["g_vars"]["params"], s["g_vars"]["buffers"], s["d_vars"], s["draws"],
      nets=s["nets"])
  grads = jax.grad(lambda p: gan_loss.g_main_loss(
      p, s["g_vars"]["buffers"], s["d_vars"], s["draws"],
      nets=s["nets"])[0])(s["g_vars"]["params"])
  g_sd = _torch_g(s["g_sd"])
  t_loss, t_grads = gan_loss_ref.g_main(
      g_sd, _torch_d(s["d_np"]), D_CFG, _t(s["z"]),
      _t(s["z_mix"]), 3, NUM_WS, RES)
  assert _rel(loss, t_loss.item()) <= 1e-5
  _assert_tree_close(grads, _g_grads_to_jax(t_grads, s["g_sd"]))
  # The w_avg statistic is the mean of the unmixed w.
  w = np.asarray(s["nets"].mapping(s["g_vars"], jnp.asarray(s["z"])))
  np.testing.assert_allclose(aux["w_mean"], w.mean(0), rtol=1e-6)


def test_path_length_matches_torch(setup):
  s = setup
  pl_mean = jnp.asarray(0.3, jnp.float32)

  def f(p):
    return gan_loss.g_pl_loss(p, s["g_vars"]["buffers"], pl_mean, s["draws"],
                              nets=s["nets"])

  (loss, aux), grads = jax.value_and_grad(f, has_aux=True)(
      s["g_vars"]["params"])
  g_sd = _torch_g(s["g_sd"])
  t_loss, t_grads, t_mean = gan_loss_ref.g_pl(
      g_sd, _t(s["z"]), _t(s["z_mix"]), 3,
      _t(s["pl_noise"].transpose(0, 3, 1, 2)), 0.3,
      NUM_WS, RES)
  assert t_loss.item() > 0
  assert _rel(loss, t_loss.item()) <= 1e-4
  assert _rel(aux["pl_mean"], t_mean) <= 1e-5
  _assert_tree_close(grads, _g_grads_to_jax(t_grads, s["g_sd"]))


def test_d_main_matches_torch(setup):
  s = setup
  g_vars = s["g_vars"]
  f = lambda p: gan_loss.d_main_loss(p, g_vars, jnp.asarray(s["real"]),
                                     s["draws"], nets=s["nets"])
  (loss, _), grads = jax.value_and_grad(f, has_aux=True)(
      s["d_vars"]["params"])
  t_loss, t_grads = gan_loss_ref.d_main(
      _torch_g(s["g_sd"]), _torch_d(s["d_np"]), D_CFG,
      _t(s["real"].transpose(0, 3, 1, 2)),
      _t(s["z"]), _t(s["z_mix"]), 3, NUM_WS, RES)
  assert _rel(loss, t_loss.item()) <= 1e-5
  _assert_tree_close(grads, _d_grads_to_jax(t_grads, s["d_np"], s["d_cfg"]))


def test_r1_matches_torch(setup):
  s = setup
  f = lambda p: gan_loss.d_r1_loss(p, jnp.asarray(s["real"]), nets=s["nets"],
                                   r1_gamma=10.0)
  (loss, aux), grads = jax.value_and_grad(f, has_aux=True)(
      s["d_vars"]["params"])
  t_loss, t_grads = gan_loss_ref.d_r1(
      _torch_d(s["d_np"]), D_CFG,
      _t(s["real"].transpose(0, 3, 1, 2)), 10.0)
  assert t_loss.item() > 0
  assert _rel(loss, t_loss.item()) <= 1e-4
  np.testing.assert_allclose(float(aux["r1_penalty"]) * 5.0 * 16.0,
                             float(loss), rtol=1e-5)
  _assert_tree_close(grads, _d_grads_to_jax(t_grads, s["d_np"], s["d_cfg"]))


def test_no_mixing_when_cutoff_is_num_ws(setup):
  s = setup
  ws, _ = gan_loss.mix_ws(s["nets"], s["g_vars"], s["draws"].z,
                          s["draws"].z_mix, jnp.asarray(NUM_WS))
  w = s["nets"].mapping(s["g_vars"], s["draws"].z)
  np.testing.assert_array_equal(ws, jnp.broadcast_to(w[:, None], ws.shape))
  ws3, _ = gan_loss.mix_ws(s["nets"], s["g_vars"], s["draws"].z,
                           s["draws"].z_mix, jnp.asarray(3))
  w2 = s["nets"].mapping(s["g_vars"], s["draws"].z_mix)
  np.testing.assert_array_equal(ws3[:, :3], ws[:, :3])
  np.testing.assert_array_equal(ws3[:, 3:], jnp.broadcast_to(
      w2[:, None], ws3[:, 3:].shape))


def test_draw_cutoff_distribution():
  nets = gan_loss.GanNets(None, None, None, 8, 4, 16)
  cuts = np.array([int(gan_loss.draw(jax.random.PRNGKey(i), 2, nets,
                                     mixing_prob=0.9).cutoff)
                   for i in range(400)])
  assert set(cuts) <= set(range(1, 9))
  frac_unmixed = np.mean(cuts == 8)  # P(no mixing) = 1 - 0.9
  assert 0.03 < frac_unmixed < 0.2
  assert set(cuts[cuts < 8]) == set(range(1, 8))


def test_ema_by_hand():
  cfg = gan_config.gan_config(16)
  cfg.batch_size, cfg.ema_kimg, cfg.ema_rampup = 32, 10.0, 0.05
  # Step 0: cur_nimg = 0 -> ema_nimg = 0 -> beta = 0 (a copy).
  assert float(gan_lib.ema_beta(0.0, 32, 10.0, 0.05)) == 0.0
  # Step 100: cur_nimg 3200, ramp 160 < 10000 -> beta = 0.5^(32/160).
  np.testing.assert_allclose(gan_lib.ema_beta(100.0, 32, 10.0, 0.05),
                             0.5 ** (32 / 160), rtol=1e-6)
  # Late: capped at ema_kimg; no ramp-up -> always the cap.
  np.testing.assert_allclose(gan_lib.ema_beta(1e6, 32, 10.0, 0.05),
                             0.5 ** (32 / 10000), rtol=1e-6)
  np.testing.assert_allclose(gan_lib.ema_beta(0.0, 32, 10.0, None),
                             0.5 ** (32 / 10000), rtol=1e-6)
  p = {"a": jnp.asarray([1.0, 2.0])}
  e = {"a": jnp.asarray([3.0, 6.0])}
  state = gan_lib.GanState(step=jnp.asarray(100, jnp.int32), g_params=p,
                           g_buffers={"b": jnp.asarray(7.0)}, d_params=None,
                           g_opt=None, d_opt=None,
                           ema={"params": e, "buffers": {"b": jnp.asarray(0.)}},
                           pl_mean=jnp.zeros([]), rng=jax.random.PRNGKey(0))
  new, _ = gan_lib.ema(state, cfg=cfg)
  beta = 0.5 ** (32 / 160)
  np.testing.assert_allclose(new.ema["params"]["a"],
                             [1 + 2 * beta, 2 + 4 * beta], rtol=1e-6)
  assert float(new.ema["buffers"]["b"]) == 7.0 and int(new.step) == 101


def test_lazy_adam_correction_by_hand():
  # G: interval 4 -> ratio 0.8: lr x 0.8, beta2 = 0.99^0.8, beta1 = 0.
  tx = gan_lib.lazy_adam(0.002, (0.0, 0.99), 1e-8, 4)
  p = jnp.asarray([1.0, -1.0])
  g = jnp.asarray([0.5, -2.0])
  opt = tx.init(p)
  upd, opt = tx.update(g, opt, p)
  ratio = 0.8
  b2 = 0.99 ** ratio
  v = (1 - b2) * g ** 2 / (1 - b2)  # bias-corrected second moment, step 1
  m = g                             # beta1 = 0: m is the gradient
  want = -0.002 * ratio * m / (np.sqrt(v) + 1e-8)
  np.testing.assert_allclose(upd, want, rtol=1e-5)  # float32 1 - b2
  upd2, _ = tx.update(g * 0.5, opt, p)
  v2 = (b2 * (1 - b2) * g ** 2 + (1 - b2) * (0.5 * g) ** 2) / (1 - b2 ** 2)
  np.testing.assert_allclose(upd2, -0.002 * ratio * 0.5 * g /
                             (np.sqrt(v2) + 1e-8), rtol=1e-5)
  # D: interval 16 -> ratio 16/17.
  cfg = gan_config.gan_config(16)
  _, d_tx = gan_lib.make_optimizers(cfg)
  upd, _ = d_tx.update(g, d_tx.init(p), p)
  np.testing.assert_allclose(upd, -0.002 * 16 / 17 * np.sign(g), rtol=1e-5)


def test_sanitize_is_torch_nan_to_num():
  g = jnp.asarray([np.nan, np.inf, -np.inf, 3.0])
  want = torch.nan_to_num(torch.tensor([np.nan, np.inf, -np.inf, 3.0]),
                          nan=0.0, posinf=1e5, neginf=-1e5).numpy()
  np.testing.assert_array_equal(gan_loss.sanitize(g), want)
