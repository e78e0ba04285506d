"""Fast unit tests of the training pieces: gradient treatment, optimisers,
losses and the ArcFace initialisation of the encoder."""

import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from padinv_jax.models import config as config_lib
from padinv_jax.models import encoder as encoder_lib
from padinv_jax.storage import part_dir
from padinv_jax.evaluation import metrics
from padinv_jax.training import train_lib
from padinv_jax.training import trainer
from padinv_jax.losses import arcface as arcface_lib


def test_sanitize_grads_is_the_originals_treatment():
  g = {"a": jnp.array([np.nan, np.inf, -np.inf, 3e5, -3e5, 0.5])}
  out = np.asarray(train_lib.sanitize_grads(g, 1e5)["a"])
  np.testing.assert_array_equal(out, [0.0, 1e5, -1e5, 1e5, -1e5, 0.5])


def _optim(name, **kw):
  c = ml_collections.ConfigDict(dict(name=name, lr=0.05, b1=0.9, b2=0.999,
                                     eps=1e-8))
  c.update(kw)
  return c


@pytest.mark.parametrize("name", ["adam", "ranger"])
def test_optimizers_minimise_a_quadratic(name):
  tx = train_lib.make_optimizer(_optim(name))
  target = jnp.arange(12.0).reshape(3, 4) / 10
  # Zero-mean over the input axis: gradient centralisation (Ranger) keeps
  # updates of a rank-2 weight in that subspace, by design.
  target = target - target.mean(axis=0)
  params = {"w": jnp.zeros((3, 4)), "b": jnp.zeros(4)}
  loss = lambda p: jnp.sum((p["w"] - target) ** 2) + jnp.sum(
      (p["b"] - 1) ** 2)
  state = tx.init(params)
  first = float(loss(params))

  @jax.jit
  def step(params, state):
    grads = jax.grad(loss)(params)
    updates, state = tx.update(grads, state, params)
    return jax.tree_util.tree_map(lambda p, u: p + u, params, updates), state

  for _ in range(400):
    params, state = step(params, state)
  assert float(loss(params)) < 0.05 * first


def test_ranger_lookahead_syncs_every_6_steps():
  tx = train_lib._lookahead(sync_period=6, alpha=0.5)  # pylint: disable=protected-access
  p = {"x": jnp.zeros(())}
  st = tx.init(p)
  for k in range(1, 7):
    u, st = tx.update({"x": jnp.ones(())}, st, p)
    p = {"x": p["x"] + u["x"]}
    if k < 6:
      assert float(p["x"]) == k  # fast weights move freely
  # Step 6: fast would be 6, slow (0) moves half way and both become 3.
  assert float(p["x"]) == 3.0


def test_gradient_centralisation_removes_the_mean_of_rank2_grads():
  gc = train_lib._centralize_gradients()  # pylint: disable=protected-access
  g = {"k": jnp.arange(6.0).reshape(3, 2), "b": jnp.ones(2)}
  out, _ = gc.update(g, gc.init(g))
  np.testing.assert_allclose(np.asarray(out["k"]).mean(0), 0, atol=1e-6)
  np.testing.assert_array_equal(out["b"], g["b"])


def test_wnorm_is_the_frobenius_norm_with_a_safe_gradient():
  d = jnp.array([[[3.0, 4.0]], [[0.0, 0.0]]])
  np.testing.assert_allclose(train_lib.safe_frobenius(d), [5.0, 0.0])
  g = jax.grad(lambda x: jnp.sum(train_lib.safe_frobenius(x)))(d)
  assert np.all(np.isfinite(g))
  np.testing.assert_allclose(g[0], [[0.6, 0.8]], rtol=1e-6)
  np.testing.assert_array_equal(g[1], 0.0)


def test_skip_nonfinite_keeps_params_and_default_always_steps():
  tx = train_lib.make_optimizer(_optim("adam"))
  p = {"w": jnp.ones(3)}
  st = tx.init(p)
  g = {"w": jnp.array([np.nan, 1.0, 1.0])}
  kept, _, ok = train_lib._apply(tx, g, st, p, jnp.array(False), True)  # pylint: disable=protected-access
  assert not bool(ok)
  np.testing.assert_array_equal(kept["w"], p["w"])
  stepped, _, _ = train_lib._apply(  # pylint: disable=protected-access
      tx, train_lib.sanitize_grads(g, 1e5), st, p, jnp.array(False), False)
  assert np.asarray(stepped["w"])[0] == 1.0  # NaN -> 0 gradient: unchanged
  assert np.all(np.asarray(stepped["w"])[1:] < 1.0)
  # A finite loss whose step makes a parameter infinite is skipped too.
  huge = train_lib.make_optimizer(_optim("sgd", lr=10.0))
  big = {"w": jnp.array([3e38, 1.0, 1.0])}
  out, _, ok = train_lib._apply(  # pylint: disable=protected-access
      huge, {"w": jnp.array([-1e38, 0.0, 0.0])}, huge.init(big), big,
      jnp.array(True), True)
  assert not bool(ok)
  np.testing.assert_array_equal(out["w"], big["w"])


def test_match_resolution_reduces_large_outputs_and_small_inputs():
  x256 = jnp.arange(2 * 256 * 256 * 3, dtype=jnp.float32).reshape(
      2, 256, 256, 3)
  big = jnp.repeat(jnp.repeat(x256, 4, 1), 4, 2)
  a, b = metrics.match_resolution(big, x256, "avgpool")
  np.testing.assert_allclose(a, x256)
  a, b = metrics.match_resolution(big, x256, "nearest")
  np.testing.assert_array_equal(a, x256)
  small = x256[:, ::8, ::8]
  a, b = metrics.match_resolution(small, x256)
  assert a.shape == b.shape == (2, 32, 32, 3)
  np.testing.assert_allclose(
      b, x256.reshape(2, 32, 8, 32, 8, 3).mean(axis=(2, 4)), rtol=1e-6)


def _random_tree(shapes, seed):
  rng = np.random.default_rng(seed)
  return jax.tree_util.tree_map(
      lambda s: rng.standard_normal(s.shape).astype(s.dtype), shapes)


def test_encoder_body_initialised_from_arcface(tmp_path):
  cfg = config_lib.model_config(
      {"resolution": 32, "z_dim": 16, "w_dim": 16, "channel_base": 512,
       "channel_max": 16},
      {"stem_channels": 8, "stage_channels": (8, 16, 16, 16),
       "fpn_channels": 16, "w_dim": 16})
  enc = _random_tree(encoder_lib.encoder_shapes(cfg), 0)
  arch = dict(stem_channels=8, stage_channels=(8, 16, 16, 16),
              embedding_dim=16)
  arc = _random_tree(jax.eval_shape(
      lambda k: arcface_lib.init_arcface(k, **arch), jax.random.key(0)), 1)
  path = tmp_path / "arcface"
  part_dir.save_part(str(path), "arcface",
                     {"input_size": 112, "depth": 50, **arch}, arc)
  state = types.SimpleNamespace(
      params=enc["params"], batch_stats=enc["batch_stats"],
      replace=lambda **kw: types.SimpleNamespace(**kw))
  new = trainer._init_from_arcface(state, str(path))  # pylint: disable=protected-access
  for ours, theirs in (("stem", "input_layer"), ("body", "body")):
    for a, b in zip(jax.tree_util.tree_leaves(new.params[ours]),
                    jax.tree_util.tree_leaves(arc["params"][theirs])):
      np.testing.assert_array_equal(a, b)
  # The rest of the encoder keeps its own initialisation.
  for a, b in zip(jax.tree_util.tree_leaves(new.params["fpn_lateral0"]),
                  jax.tree_util.tree_leaves(enc["params"]["fpn_lateral0"])):
    np.testing.assert_array_equal(a, b)

  tiny = config_lib.tiny_model_config(32)  # (1, 1, 1, 1) units: refused
  enc2 = _random_tree(encoder_lib.encoder_shapes(tiny), 0)
  state2 = types.SimpleNamespace(params=enc2["params"],
                                 batch_stats=enc2["batch_stats"])
  with pytest.raises(ValueError, match="does not fit"):
    trainer._init_from_arcface(state2, str(path))  # pylint: disable=protected-access


@pytest.mark.parametrize("remat", ["both"])  # both paths at once (time)
def test_remat_gives_the_same_update(tmp_path, remat):
  import importlib  # pylint: disable=g-import-not-at-top
  runs = {}
  for tag in ("none", remat):
    cfg = importlib.import_module("configs.tiny").get_config()
    cfg.update(dict(num_steps=2, remat=tag, progress=False, num_devices=1,
                    eval_every=100, ckpt_every=2, log_every=1))
    cfg.optim.name = "sgd"
    cfg.optim.lr = 0.01
    final = trainer.train_and_evaluate(cfg, str(tmp_path / tag))
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
    m = ocp.CheckpointManager(str(tmp_path / tag / "checkpoints"))
    runs[tag] = (final["history"],
                 m.restore(m.latest_step(), args=ocp.args.StandardRestore()))
  (ha, a), (hb, b) = runs["none"], runs[remat]
  np.testing.assert_allclose([h["loss"] for h in ha], [h["loss"] for h in hb],
                             rtol=1e-5)
  for part in ("params", "batch_stats"):
    for x, y in zip(jax.tree_util.tree_leaves(a[part]),
                    jax.tree_util.tree_leaves(b[part])):
      scale = max(1.0, float(np.max(np.abs(x))))
      assert float(np.max(np.abs(np.asarray(x) - y))) <= 1e-5 * scale, part


def test_gradient_accumulation_is_the_mean_of_micro_batch_gradients():
  """accum_steps=2: the update uses the mean of the two micro-batch
  gradients, each micro-batch normalised with its own BatchNorm statistics
  and the running statistics updated in order (train_lib._accumulate),
  checked against the plain loss on each micro-batch by hand; with
  accum_steps=1 the step is the plain one."""
  import functools
  import importlib
  from padinv_jax.models import functional
  from padinv_jax.training import loss_nets
  cfg = importlib.import_module("configs.tiny").get_config()
  cfg.optim.name, cfg.optim.lr = "sgd", 0.05
  model_cfg = cfg.model
  encoder = encoder_lib.build_encoder(model_cfg.encoder)
  nets, frozen_nets, _ = loss_nets.build(cfg, model_cfg, num_shards=1)
  key = jax.random.PRNGKey(0)
  enc = encoder_lib.init_encoder(key, model_cfg)
  gen = functional.init_generator(jax.random.PRNGKey(1), model_cfg)
  frozen = {"generator": gen, "encoder_buffers": enc["buffers"],
            **frozen_nets}
  tx = train_lib.make_optimizer(cfg.optim)
  state = train_lib.state_from_encoder(enc, tx)
  images = jax.random.uniform(jax.random.PRNGKey(2), (8, 64, 64, 3),
                              minval=-1.0, maxval=1.0)
  step = lambda c: jax.jit(functools.partial(
      train_lib.train_step, encoder=encoder, model_cfg=model_cfg, cfg=c,
      tx=tx, nets=nets))(state, frozen, images)
  cfg2 = ml_collections.ConfigDict(cfg.to_dict())
  cfg2.accum_steps = 2
  new, m = step(cfg2)

  loss_fn = functools.partial(train_lib.encoder_loss, encoder=encoder,
                              model_cfg=model_cfg, loss_cfg=cfg.loss,
                              nets=nets)
  grad_fn = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
  stats, grads, losses = state.batch_stats, [], []
  for j in range(2):
    (loss, (stats, _, _)), g = grad_fn(state.params, stats, frozen,
                                       images[j::2])
    grads.append(g)
    losses.append(loss)
  want = jax.tree_util.tree_map(lambda p, a, b: p - 0.05 * (a + b) / 2,
                                state.params, *grads)

  def assert_update(params):
    for a, b in zip(jax.tree_util.tree_leaves(params),
                    jax.tree_util.tree_leaves(want)):
      scale = max(1.0, float(np.max(np.abs(b))))
      assert float(np.max(np.abs(np.asarray(a) - b))) <= 1e-5 * scale

  assert_update(new.params)
  for a, b in zip(jax.tree_util.tree_leaves(new.batch_stats),
                  jax.tree_util.tree_leaves(stats)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(m["loss"], np.mean(losses), rtol=1e-5)
  # Unrolled (config.accum_unroll) is the same update.
  cfg3 = ml_collections.ConfigDict(cfg2.to_dict())
  cfg3.accum_unroll = True
  assert_update(step(cfg3)[0].params)
  # Micro-batch statistics are not the large batch's: BN over all 8 images
  # gives other running statistics than two passes over 4.
  (_, (full_stats, _, _)), _ = grad_fn(state.params, state.batch_stats,
                                       frozen, images)
  diff = max(float(np.max(np.abs(np.asarray(a) - b))) for a, b in zip(
      jax.tree_util.tree_leaves(full_stats),
      jax.tree_util.tree_leaves(new.batch_stats)))
  assert diff > 1e-6
  with pytest.raises(ValueError, match="must divide the batch"):
    train_lib.micro_batches(images, 3)
