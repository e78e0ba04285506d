"""The tiny ModelConfig's encoder: real init (PyTorch default initialisers),
forward at 256 px, and the generator consuming its codes and padding maps.

Separate from test_encoder.py because compiling a flax init of the whole
encoder (~350 variables) is the slowest step of the encoder tests.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from padinv_jax.models import config as config_lib
from padinv_jax.models import encoder as encoder_lib
from padinv_jax.models import functional

import parity


def test_tiny_model_config_runs_end_to_end_with_the_generator():
  cfg = config_lib.tiny_model_config()
  encoder_lib.check_compatible(cfg)
  enc = encoder_lib.init_encoder(jax.random.key(0), cfg)
  # PyTorch default initialisers: BN 1/0, PReLU 0.25, conv U(+-1/sqrt(fan_in)).
  p = enc["params"]
  assert np.all(p["stem"]["bn"]["scale"] == 1) and np.all(
      p["stem"]["prelu"]["weight"] == 0.25)
  k = p["head0"]["conv0"]["kernel"]
  bound = 1 / np.sqrt(9 * k.shape[2])
  assert float(jnp.abs(k).max()) <= bound and float(jnp.abs(k).max()) > 0.9 * (
      bound)
  assert 0.9 < float(jnp.std(p["head0"]["linear"]["weight"])) < 1.1
  assert np.all(p["head0"]["linear"]["bias"] == 0)
  assert enc["buffers"]["w_avg"].shape == (cfg.encoder.w_dim,)
  gen = functional.init_generator(jax.random.key(1), cfg)
  model = encoder_lib.build_encoder(cfg)
  ws, maps = jax.jit(model.apply)(enc, parity.structured_images(1))
  assert ws.shape == (1, 18, 32)
  img = functional.synthesize(gen, ws, maps, config=cfg)
  assert img.shape == (1, 32, 32, 3) and bool(jnp.all(jnp.isfinite(img)))
  img_plain = functional.synthesize(gen, ws, None, config=cfg)
  assert float(jnp.abs(img - img_plain).max()) > 1e-3  # paddings matter


def test_shared_head_patches_equal_per_head_convs(monkeypatch):
  """On CPU the heads of a level share one im2col (ops.conv_patches); the
  codes and their gradients must equal the per-head convs'."""
  from padinv_jax.models import ops  # pylint: disable=g-import-not-at-top
  cfg = config_lib.tiny_model_config()
  enc = encoder_lib.init_encoder(jax.random.key(2), cfg)
  model = encoder_lib.build_encoder(cfg)
  x = parity.structured_images(2, seed=3)

  def run():
    loss = lambda p: jnp.sum(jnp.sin(model.apply({**enc, "params": p}, x)[0]))
    return jax.jit(jax.value_and_grad(loss))(enc["params"])

  assert ops.cpu_conv_rewrites()
  shared_src = str(jax.make_jaxpr(lambda v: model.apply(v, x))(enc))
  (loss_a, grad_a) = run()
  monkeypatch.setattr(ops, "CPU_CONV_REWRITES", False)
  assert not ops.cpu_conv_rewrites()
  assert str(jax.make_jaxpr(lambda v: model.apply(v, x))(enc)) != shared_src
  (loss_b, grad_b) = run()
  np.testing.assert_allclose(loss_a, loss_b, rtol=1e-5)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(grad_a),
                          jax.tree_util.tree_leaves(grad_b)):
    scale = max(1e-6, float(jnp.abs(b).max()))
    assert float(jnp.abs(a - b).max()) <= 1e-4 * scale, path


def test_bfloat16_encoder_keeps_float32_params_and_outputs():
  """dtype=bfloat16 changes only the convs' operands: the same variables,
  float32 codes and maps, close to float32; other dtypes are refused."""
  import jax.numpy as jnp
  from padinv_jax.models import config as config_lib
  from padinv_jax.models import encoder as encoder_lib
  cfg = config_lib.tiny_model_config(resolution=32)
  v = encoder_lib.init_encoder(jax.random.PRNGKey(0), cfg)
  px = int(cfg.encoder.input_size)
  x = jax.random.uniform(jax.random.PRNGKey(1), (2, px, px, 3),
                         minval=-1.0, maxval=1.0)
  f32 = jax.jit(encoder_lib.build_encoder(cfg.encoder).apply)(v, x)
  bf16_enc = encoder_lib.build_encoder(cfg.encoder, dtype="bfloat16")
  bf16 = jax.jit(bf16_enc.apply)(v, x)
  shapes = lambda t: jax.tree_util.tree_map(lambda a: (a.shape, a.dtype), t)
  assert shapes(jax.eval_shape(bf16_enc.init, jax.random.PRNGKey(0), x)) == (
      shapes(v))
  for a, b in zip(jax.tree_util.tree_leaves(bf16),
                  jax.tree_util.tree_leaves(f32)):
    assert a.dtype == jnp.float32 and not np.array_equal(a, b)
    np.testing.assert_allclose(a, b, atol=0.05 * float(np.abs(b).max()))
  with pytest.raises(ValueError, match="float32 or bfloat16"):
    encoder_lib.build_encoder(cfg.encoder, dtype="float16")
