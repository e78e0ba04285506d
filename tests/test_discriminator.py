"""StyleGAN2 resnet discriminator: parity with an independent PyTorch reference
under NVIDIA's and Hammer's key names; per-device minibatch-stddev groups."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from padinv_jax.models import discriminator as d_lib
from padinv_jax.convert import d_keys
from torch_ref import discriminator_ref as ref

CFG = dict(resolution=32, channel_base=512, channel_max=32,
           mbstd_group_size=4, mbstd_num_channels=1)


def _images(n, res=32, seed=0):
  """Smooth gradients plus noise: not spatially constant."""
  rng = np.random.default_rng(seed)
  yy, xx = np.meshgrid(np.linspace(-1, 1, res), np.linspace(-1, 1, res),
                       indexing="ij")
  base = np.stack([xx, yy, xx * yy], -1)[None]
  return (0.6 * base + 0.4 * rng.standard_normal((n, res, res, 3))).astype(
      np.float32)


def _torch_scores(sd, x, cfg):
  with torch.no_grad():
    return ref.forward(sd, torch.from_numpy(x.transpose(0, 3, 1, 2)), cfg)[
        :, 0].numpy()


def _scores(d_vars, x, cfg, num_shards=1):
  # One compiled program instead of op-by-op dispatch (much faster on CPU).
  fn = jax.jit(lambda v, im: d_lib.d_scores(v, im, config=cfg,
                                            num_shards=num_shards))
  return fn(d_vars, jnp.asarray(x))


def _assert_close(got, want):
  err = np.max(np.abs(np.asarray(got) - want))
  tol = 1e-4 * max(1.0, np.max(np.abs(want)))
  assert err <= tol, f"max|diff| {err:.3g} > {tol:.3g}"
  print(f"max|diff| = {err:.3g} (max|ref| {np.max(np.abs(want)):.3g})")
  return err


@pytest.mark.parametrize("conv_clamp", [None, 0.5])
def test_nvidia_parity(conv_clamp):
  cfg = dict(CFG, conv_clamp=conv_clamp)
  sd = ref.make_state_dict(cfg, seed=1)
  d_vars = d_keys.discriminator_from_nvidia(
      sd, d_lib.discriminator_config(**cfg))
  x = _images(4)
  want = _torch_scores(sd, x, cfg)
  got = _scores(d_vars, x, d_lib.discriminator_config(**cfg))
  assert np.std(want) > 1e-3  # scores differ per image
  _assert_close(got, want)


def test_clamp_is_active():
  """The clamped config must really differ (else its parity proves nothing)."""
  x = _images(4)
  sd = ref.make_state_dict(CFG, seed=1)
  a = _torch_scores(sd, x, dict(CFG, conv_clamp=None))
  b = _torch_scores(sd, x, dict(CFG, conv_clamp=0.5))
  assert np.max(np.abs(a - b)) > 1e-2


def test_hammer_keys_parity():
  sd = ref.make_state_dict(CFG, seed=2)
  hammer = ref.to_hammer(sd, CFG)
  cfg = d_lib.discriminator_config(**CFG)
  d_vars = d_keys.discriminator_from_hammer(hammer, cfg)
  x = _images(4, seed=3)
  _assert_close(_scores(d_vars, x, cfg), _torch_scores(sd, x, CFG))


def test_mbstd_groups_stay_within_device_shards():
  """8 images on 2 devices, group 4: each device's 4 images form one group."""
  sd = ref.make_state_dict(CFG, seed=4)
  # Make the stddev channel matter, and the two devices' batches differ in
  # spread, so that wrong grouping shows far above float noise.
  sd["b4.conv.weight"][:, -1] *= 30.0
  cfg = d_lib.discriminator_config(**CFG)
  d_vars = d_keys.discriminator_from_nvidia(sd, cfg)
  x = _images(8, seed=5)
  x[4:] *= 2.0
  per_device = np.concatenate([_torch_scores(sd, x[:4], CFG),
                               _torch_scores(sd, x[4:], CFG)])

  sharded = _scores(d_vars, x, cfg, num_shards=2)
  _assert_close(sharded, per_device)

  # The same under a global jit over a 2-device ('data',) mesh.
  mesh = Mesh(np.array(jax.devices()[:2]), ("data",))
  xs = jax.device_put(x, NamedSharding(mesh, P("data")))
  fn = jax.jit(lambda v, im: d_lib.d_scores(v, im, config=cfg, num_shards=2))
  _assert_close(fn(d_vars, xs), per_device)

  # Grouping across devices (one group over 8, strided) is different.
  across = _scores(d_vars, x, cfg, num_shards=1)
  _assert_close(across, _torch_scores(sd, x, CFG))
  assert np.max(np.abs(np.asarray(across) - per_device)) > 1e-2


def test_mbstd_strided_groups_match_nvidia():
  """A local batch of 8 with group 4: sample j joins group j % 2."""
  rng = np.random.default_rng(0)
  x = rng.standard_normal((8, 4, 4, 6)).astype(np.float32)
  got = d_lib.minibatch_stddev(jnp.asarray(x), 4, 2)
  want = ref.mbstd(torch.from_numpy(x.transpose(0, 3, 1, 2)), 4, 2)
  _assert_close(got, want.numpy().transpose(0, 2, 3, 1))


def test_mbstd_rejects_uneven_shards():
  x = jnp.zeros((6, 4, 4, 8))
  with pytest.raises(ValueError, match="multiple of the group size"):
    d_lib.minibatch_stddev(x, 4, 1, num_shards=1)
  with pytest.raises(ValueError, match="equal device shards"):
    d_lib.minibatch_stddev(x, 4, 1, num_shards=4)


def test_r1_gradient_is_finite():
  cfg = d_lib.discriminator_config(**CFG)
  d_vars = d_keys.discriminator_from_nvidia(ref.make_state_dict(CFG), cfg)
  x = jnp.asarray(_images(4))
  g = jax.jit(jax.grad(
      lambda im: d_lib.d_scores(d_vars, im, config=cfg).sum()))(x)
  assert g.shape == x.shape and bool(jnp.all(jnp.isfinite(g)))
  assert float(jnp.abs(g).max()) > 0


def test_init_matches_converted_tree():
  cfg = d_lib.discriminator_config(**CFG)
  shapes = jax.eval_shape(lambda: d_lib.init_discriminator(jax.random.key(0),
                                                           cfg))
  conv = d_keys.discriminator_from_nvidia(ref.make_state_dict(CFG), cfg)
  assert (jax.tree_util.tree_map(lambda a: a.shape, shapes)
          == jax.tree_util.tree_map(np.shape, conv))


def test_converter_refuses_bad_files():
  cfg = d_lib.discriminator_config(**CFG)
  sd = ref.make_state_dict(CFG, seed=6)

  missing = dict(sd)
  del missing["b16.conv0.bias"]
  with pytest.raises(ValueError, match="b16/conv0/bias"):
    d_keys.discriminator_from_nvidia(missing, cfg)

  bad_filter = dict(sd)
  bad_filter["b32.conv1.resample_filter"] = np.ones((4, 4), np.float32) / 16
  with pytest.raises(ValueError, match="b32.conv1.resample_filter"):
    d_keys.discriminator_from_nvidia(bad_filter, cfg)

  conditional = dict(sd, **{"mapping.fc0.weight": np.zeros((2, 2))})
  with pytest.raises(ValueError, match="mapping.fc0.weight"):
    d_keys.discriminator_from_nvidia(conditional, cfg)

  wrong_res = d_lib.discriminator_config(**dict(CFG, resolution=64))
  with pytest.raises(ValueError, match="b64"):
    d_keys.discriminator_from_nvidia(sd, wrong_res)
