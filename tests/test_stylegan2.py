"""StyleGAN2 generator + padding space: parity, golden outputs, padding, API.

References: tests/torch_ref/stylegan2_ref.py (an independent PyTorch forward
pass, NVIDIA key names) on the same random weights, and the official code's
own outputs in ../shared/golden. Tolerance for whole networks (DESIGN 6):
max|a - b| <= 1e-4 * max(1, max|ref|).
"""

import functools
import math
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from padinv_jax.models import config as config_lib
from padinv_jax.models import functional
from padinv_jax.models import ops
from padinv_jax.models import stylegan2
from torch_ref import nvidia_pickle
from torch_ref import stylegan2_ref as ref

Z_DIM, W_DIM, MAP_LAYERS = 24, 32, 3
# 32 px: channels 64, 64, 32, 16; 128 px: 32, 32, 32, 32, 16, 8.
SMALL = {32: dict(channel_base=512, channel_max=64),
         128: dict(channel_base=1024, channel_max=32)}


def rel_diff(a, b):
  """max|a - b| / max(1, max|b|), the DESIGN section 6 measure."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  assert a.shape == b.shape, (a.shape, b.shape)
  return float(np.abs(a - b).max() / max(1.0, np.abs(b).max()))


def assert_close(a, b, tol=1e-4, what=""):
  d = rel_diff(a, b)
  print(f"{what}: max|diff| / max(1, max|ref|) = {d:.2e}")
  assert d <= tol, f"{what}: relative max diff {d:.3e} > {tol:.0e}"


def nhwc(t):
  return t.detach().numpy().transpose(0, 2, 3, 1)


def nchw(a):
  return torch.from_numpy(np.asarray(a, np.float32).transpose(0, 3, 1, 2))


def torch_rng(seed):
  return torch.Generator().manual_seed(seed)


@functools.lru_cache(maxsize=None)
def small_generator(res, conv_clamp=None):
  """(config, torch state dict, jax variables) of a random small generator."""
  cfg = config_lib.generator_config(
      resolution=res, z_dim=Z_DIM, w_dim=W_DIM, mapping_layers=MAP_LAYERS,
      conv_clamp=conv_clamp, **SMALL[res])
  sd = ref.random_state_dict(res, Z_DIM, W_DIM, MAP_LAYERS, seed=res,
                             **SMALL[res])
  return cfg, sd, ref.to_padinv_jax(sd)


def random_ws(n, res, seed, extra=0):
  num_ws = 2 * int(math.log2(res)) - 2
  return torch.randn(n, num_ws + extra, W_DIM, generator=torch_rng(seed))


def pad_res(key):
  """Resolution of the layer a padding key feeds ("const": the 4 px input)."""
  return 4 if key == "const" else 4 * 2 ** (int(key[len("layer"):]) // 2)


def random_paddings(cfg, n, size, seed):
  """NHWC numpy maps for every padding key of ``cfg``."""
  rng = np.random.default_rng(seed)
  out = {}
  for key in config_lib.padding_keys(cfg.pad_layer_num):
    c = config_lib.channels(cfg, pad_res(key))
    out[key] = rng.standard_normal((n, size, size, c)).astype(np.float32)
  return out


# --------------------------------------------------------------- conversion


def test_conversion_table_fills_the_whole_param_tree():
  cfg, _, variables = small_generator(128)
  target = jax.eval_shape(
      lambda k: functional.init_generator(k, cfg), jax.random.key(0))
  got = jax.tree_util.tree_map(lambda x: x.shape, variables)
  want = jax.tree_util.tree_map(lambda x: x.shape, target)
  assert got == want


# ---------------------------------------------------------- parity vs torch


@pytest.mark.parametrize("psi,cutoff", [(1.0, None), (0.7, None), (0.7, 3)])
def test_mapping_matches_torch(psi, cutoff):
  cfg, sd, variables = small_generator(32)
  z = torch.randn(2, Z_DIM, generator=torch_rng(1))
  want = ref.mapping(sd, z, 8, psi=psi, cutoff=cutoff).numpy()
  got = functional.mapping(variables, z.numpy(), config=cfg, psi=psi,
                           cutoff=cutoff)
  assert got.shape == (2, 8, W_DIM)
  assert_close(got, want, what=f"mapping psi={psi} cutoff={cutoff}")
  # psi may be traced (e.g. a slider under jit).
  jitted = jax.jit(lambda p: functional.mapping(
      variables, z.numpy(), config=cfg, psi=p, cutoff=cutoff))
  assert_close(jitted(jnp.float32(psi)), want, what="mapping, traced psi")


@pytest.mark.parametrize("res,noise_mode,clamp", [
    (32, "const", None), (32, "none", 0.5),
    (128, "const", None), (128, "none", 2.0)])
def test_synthesis_matches_torch(res, noise_mode, clamp):
  cfg, sd, variables = small_generator(res, clamp)
  ws = random_ws(2, res, seed=2)
  want = nhwc(ref.synthesis(sd, ws, res, noise_mode=noise_mode,
                            conv_clamp=clamp))
  got = functional.synthesize(variables, ws.numpy(), config=cfg,
                              noise_mode=noise_mode)
  assert got.shape == (2, res, res, 3) and got.dtype == jnp.float32
  assert np.abs(want).max() > 1.0  # non-trivial values
  if clamp is not None:  # the clamp must bite for the case to mean anything
    assert np.abs(want).max() > clamp
  assert_close(got, want, what=f"synthesis {res}px noise={noise_mode} "
               f"clamp={clamp}")


def test_mapping_then_synthesis_matches_torch():
  cfg, sd, variables = small_generator(128)
  z = torch.randn(2, Z_DIM, generator=torch_rng(3))
  want = nhwc(ref.synthesis(sd, ref.mapping(sd, z, 12, psi=0.5, cutoff=6),
                            128))
  ws = functional.mapping(variables, z.numpy(), config=cfg, psi=0.5, cutoff=6)
  got = functional.synthesize(variables, ws, config=cfg)
  assert_close(got, want, what="mapping + synthesis 128px")


def test_upsampling_conv_and_fir_float64():
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, 7, 7, 5))
  w = rng.standard_normal((3, 3, 5, 6))  # HWIO
  img = rng.standard_normal((2, 9, 9, 3))
  fir = np.asarray(ref.fir_filter(torch.float64))
  with jax.enable_x64(True):
    # What ModConv(up=2) does: dilated conv with the flipped kernel + FIR.
    y = ops.conv2d(jnp.asarray(x), jnp.asarray(w)[::-1, ::-1], padding=2,
                   lhs_dilation=2)
    y = ops.upfirdn2d(y, fir, pad=(1, 1, 1, 1), gain=4.0)
    # The image path of the skip architecture.
    up = ops.upfirdn2d(jnp.asarray(img), fir, up=2, pad=(2, 1, 2, 1),
                       gain=4.0)
    # upfirdn2d in general: asymmetric filter, negative pads, down-sampling.
    f_odd = rng.standard_normal((3, 4))
    gen = ops.upfirdn2d(jnp.asarray(img), f_odd, up=2, down=2,
                        pad=(3, -1, 2, -2), gain=1.5)
    y, up, gen = (np.asarray(a) for a in (y, up, gen))
  assert y.dtype == np.float64
  want_y = ref.upsample_conv(torch.from_numpy(x.transpose(0, 3, 1, 2)),
                             torch.from_numpy(w.transpose(3, 2, 0, 1)))
  t_img = torch.from_numpy(img.transpose(0, 3, 1, 2))
  want_up = ref.upfirdn2d(t_img, torch.from_numpy(fir), up=2,
                          pad=(2, 1, 2, 1), gain=4.0)
  want_gen = ref.upfirdn2d(t_img, torch.from_numpy(f_odd), up=2,
                           pad=(3, -1, 2, -2), gain=1.5)[:, :, ::2, ::2]
  for name, a, b in (("up-sampling conv", y, want_y),
                     ("image upsample", up, want_up),
                     ("general upfirdn2d", gen, want_gen)):
    b = b.numpy().transpose(0, 2, 3, 1)
    assert a.shape == b.shape, name
    d = float(np.abs(a - b).max())
    print(f"{name} float64: max|diff| = {d:.1e}")
    assert d <= 1e-10, name


# ------------------------------------------------------------------ golden


@pytest.fixture(scope="module")
def golden(golden_dir):
  """The official G_ema (read without running pickled code) and its outputs."""
  path = os.path.join(golden_dir, "nvidia_g32_visible.pkl")
  sd, kwargs = nvidia_pickle.load_network(path)
  syn = kwargs["synthesis_kwargs"]
  cfg = config_lib.generator_config(
      resolution=kwargs["img_resolution"], z_dim=kwargs["z_dim"],
      w_dim=kwargs["w_dim"],
      mapping_layers=kwargs["mapping_kwargs"]["num_layers"],
      channel_base=syn["channel_base"], channel_max=syn["channel_max"],
      conv_clamp=float(syn["conv_clamp"]))
  refs = dict(np.load(os.path.join(golden_dir,
                                   "nvidia_g32_visible_ref.npz")))
  return cfg, sd, ref.to_padinv_jax(sd), refs


@pytest.mark.parametrize("psi,cutoff,key", [
    (1.0, None, "ws"), (0.7, None, "ws_psi07"), (0.7, 4, "ws_psi07_cut4")])
def test_golden_mapping(golden, psi, cutoff, key):
  cfg, _, variables, refs = golden
  got = functional.mapping(variables, refs["z"], config=cfg, psi=psi,
                           cutoff=cutoff)
  assert_close(got, refs[key], what=f"golden {key}")


@pytest.mark.parametrize("ws_key,noise_mode,img_key", [
    ("ws", "const", "img"), ("ws", "none", "img_noise_none"),
    ("ws_direct", "const", "img_direct")])
def test_golden_synthesis(golden, ws_key, noise_mode, img_key):
  cfg, sd, variables, refs = golden
  want = refs[img_key].transpose(0, 2, 3, 1)
  # Batched with a filler code up to 4 samples: op-by-op JAX then reuses
  # the kernels it compiled for the other cases (samples are independent).
  ws = np.concatenate([refs[ws_key], refs["ws"]])[:4]
  got = functional.synthesize(variables, ws, config=cfg,
                              noise_mode=noise_mode)[:len(want)]
  assert_close(got, want, what=f"golden {img_key}")
  # The torch reference the other tests trust matches the official code too.
  t_sd = {k: torch.from_numpy(v) for k, v in sd.items()}
  mine = ref.synthesis(t_sd, torch.from_numpy(refs[ws_key]), cfg.resolution,
                       noise_mode=noise_mode, conv_clamp=cfg.conv_clamp)
  assert_close(nhwc(mine), want, what=f"torch reference vs golden {img_key}")


def test_golden_weights_read_the_same_by_the_converter(golden, golden_dir):
  """Cross-check: the package's loader (padinv_jax.convert) gives the same
  config and variables as this file's own reader + conversion table."""
  from padinv_jax.convert import main as convert_main
  cfg, _, variables, _ = golden
  result = convert_main.convert_file(
      os.path.join(golden_dir, "nvidia_g32_visible.pkl"))
  got_cfg = config_lib.gen_part(result.config)
  for field in cfg:
    assert got_cfg[field] == cfg[field], field
  got = result.params["generator"]
  assert (jax.tree_util.tree_structure(got)
          == jax.tree_util.tree_structure(variables))
  for a, b in zip(jax.tree_util.tree_leaves(got),
                  jax.tree_util.tree_leaves(variables)):
    np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------- padding space


def test_const_centre_and_zero_rings_equal_the_plain_generator():
  cfg, _, variables = small_generator(32)
  ws = random_ws(2, 32, seed=4).numpy()
  plain = functional.synthesize(variables, ws, config=cfg)
  size = config_lib.padding_size(cfg.pad_layer_num)  # 34
  maps = random_paddings(cfg, 2, size, seed=5)  # random inside and outside
  o = (size - 4) // 2
  maps["const"][:, o:o + 4, o:o + 4] = variables["params"]["synthesis"][
      "const"]
  for key in maps:
    if key != "const":
      r = pad_res(key)
      o = (size - r - 2) // 2
      crop = maps[key][:, o:o + r + 2, o:o + r + 2]
      crop[:, 0] = crop[:, -1] = crop[:, :, 0] = crop[:, :, -1] = 0.0
  padded = functional.synthesize(variables, ws, maps, config=cfg)
  zeros = {k: np.zeros_like(v) for k, v in maps.items()}
  zeros["const"] = maps["const"]
  padded0 = functional.synthesize(variables, ws, zeros, config=cfg)
  assert_close(padded, plain, tol=1e-6, what="zero rings vs no paddings")
  assert_close(padded0, plain, tol=1e-6, what="all-zero maps vs no paddings")


@pytest.mark.parametrize("batch_of_maps", [1, 2])
def test_padded_layer_matches_torch(batch_of_maps):
  cfg, sd, variables = small_generator(32)
  layer = stylegan2.ModConv(32, 16)  # layer4: 16 px, 32 -> 32 channels
  lv = {c: variables[c]["synthesis"]["layer4"] for c in ("params", "buffers")}
  rng = np.random.default_rng(6)
  x = rng.standard_normal((2, 16, 16, 32)).astype(np.float32)
  w = rng.standard_normal((2, W_DIM)).astype(np.float32)
  pmap = rng.standard_normal((batch_of_maps, 22, 22, 32)).astype(np.float32)
  got = layer.apply(lv, x, w, pmap, "const")
  t_map = nchw(pmap)
  before = t_map.clone()
  want = ref.synthesis_layer(sd, "synthesis.b16.conv1.", nchw(x),
                             torch.from_numpy(w), padding_map=t_map)
  assert torch.equal(t_map, before)  # the reference cloned the map
  assert_close(got, nhwc(want), tol=1e-5, what="padded layer vs torch")


@pytest.mark.parametrize("res,size", [(32, 34), (32, 38), (128, 34)])
def test_padded_generator_matches_torch(res, size):
  cfg, sd, variables = small_generator(res)
  ws = random_ws(2, res, seed=7)
  maps = random_paddings(cfg, 2, size, seed=8)
  maps["layer2"] = maps["layer2"][:1]  # one map broadcast over the batch
  t_maps = {k: nchw(v) for k, v in maps.items()}
  copies = {k: v.clone() for k, v in t_maps.items()}
  want = nhwc(ref.synthesis(sd, ws, res, paddings=t_maps))
  assert all(torch.equal(t_maps[k], copies[k]) for k in t_maps)
  got = functional.synthesize(variables, ws.numpy(), maps, config=cfg)
  assert_close(got, want, what=f"padded generator {res}px S={size}")
  # The paddings matter: without them the output is different.
  plain = nhwc(ref.synthesis(sd, ws, res))
  assert np.abs(plain - want).max() > 1e-2


def test_only_the_ring_of_p3_and_only_num_ws_codes_matter():
  cfg, _, variables = small_generator(32)
  ws = random_ws(2, 32, seed=9, extra=4).numpy()  # 12 codes for 8 ws
  maps = random_paddings(cfg, 2, 34, seed=10)
  base = np.asarray(functional.synthesize(variables, ws, maps, config=cfg))
  # layer2 runs at 8 px: its ring is the border of rows/cols 12..21.
  ring = np.zeros((34, 34), bool)
  ring[12:22, 12:22] = True
  ring[13:21, 13:21] = False
  noise = np.random.default_rng(11).standard_normal(maps["layer2"].shape)
  for where, should_change in ((ring, True), (~ring, False)):
    changed = dict(maps)
    changed["layer2"] = np.where(where[None, :, :, None],
                                 maps["layer2"] + noise, maps["layer2"])
    out = np.asarray(functional.synthesize(variables, ws, changed,
                                           config=cfg))
    assert (np.abs(out - base).max() > 1e-3) == should_change
  ws2 = ws.copy()
  ws2[:, 8:] = np.random.default_rng(12).standard_normal(ws2[:, 8:].shape)
  out = functional.synthesize(variables, ws2, maps, config=cfg)
  np.testing.assert_array_equal(out, base)


# ------------------------------------------------------------ full configs


@pytest.mark.parametrize("res,num_ws", [(1024, 18), (256, 14)])
def test_full_size_configs(res, num_ws):
  cfg = config_lib.generator_config(resolution=res)
  variables = jax.eval_shape(
      lambda k: functional.init_generator(k, cfg), jax.random.key(0))
  n_params = functional.num_params(variables["params"])
  n_buffers = functional.num_params(variables["buffers"])
  # NVIDIA's layout counted from its own key list (tests/torch_ref), with
  # its 4x4 FIR buffers (one per layer and one per block), which this port
  # keeps as a constant instead.
  nv = ref.state_dict_shapes(res, 512, 512, 8, 32768, 512)
  nv_params = sum(math.prod(s) for k, s in nv.items() if ref.is_parameter(k))
  nv_filters = sum(math.prod(s) for k, s in nv.items()
                   if k.endswith("resample_filter"))
  nv_buffers = sum(math.prod(s) for k, s in nv.items()
                   if not ref.is_parameter(k))
  print(f"{res}px: params {n_params:,} (NVIDIA layout {nv_params:,}), "
        f"buffers {n_buffers:,} + FIR buffers {nv_filters} = {nv_buffers:,}")
  assert n_params == nv_params
  assert n_buffers + nv_filters == nv_buffers
  if res == 1024:
    assert n_params == 30_370_060  # NVIDIA's count for config-F G
  z = jax.ShapeDtypeStruct((2, 512), jnp.float32)
  ws = jax.eval_shape(functools.partial(functional.mapping, config=cfg),
                      variables, z)
  assert ws.shape == (2, num_ws, 512)
  pads = {k: jax.ShapeDtypeStruct(
      (2, 34, 34, config_lib.channels(cfg, pad_res(k))),
      jnp.float32) for k in config_lib.padding_keys(4)}
  img = jax.eval_shape(functools.partial(functional.synthesize, config=cfg),
                       variables, ws, pads)
  assert img.shape == (2, res, res, 3) and img.dtype == jnp.float32


# ------------------------------------------------------- jit, grad, errors


def test_jit_compiles_once_per_shape_and_grads_are_finite():
  cfg, _, variables = small_generator(32)
  @jax.jit
  @chex.assert_max_traces(n=2)
  def run(variables, ws, paddings):
    return functional.synthesize(variables, ws, paddings, config=cfg)

  maps = random_paddings(cfg, 2, 34, seed=13)
  for seed in (14, 15):  # same shapes, new values: no retrace
    run(variables, random_ws(2, 32, seed).numpy(), maps)
  maps1 = {k: v[:1] for k, v in maps.items()}
  for seed in (16, 17):  # one new shape: exactly one more trace
    run(variables, random_ws(1, 32, seed).numpy(), maps1)
  with pytest.raises(AssertionError):  # a third shape would exceed the count
    run(variables, random_ws(3, 32, 18).numpy(), None)

  def loss(ws, paddings):
    img = functional.synthesize(variables, ws, paddings, config=cfg)
    return jnp.mean(jnp.square(img))

  ws = random_ws(2, 32, 19).numpy()
  g_ws, g_pad = jax.jit(jax.grad(loss, argnums=(0, 1)))(ws, maps)
  assert np.isfinite(g_ws).all() and np.abs(g_ws).max() > 0
  for key, g in g_pad.items():
    g = np.asarray(g)
    assert np.isfinite(g).all(), key
    # Only what the generator reads gets a gradient: the 4x4 centre of p0,
    # the ring of the (r + 2) crop of the layer maps.
    r = 4 if key == "const" else pad_res(key) + 2
    o = (34 - r) // 2
    used = np.zeros((34, 34), bool)
    used[o:o + r, o:o + r] = True
    if key != "const":
      used[o + 1:o + r - 1, o + 1:o + r - 1] = False
    assert np.abs(g[:, used]).max() > 0, key
    assert np.abs(g[:, ~used]).max() == 0, key


def test_random_noise_has_one_stream_per_layer_and_needs_a_key():
  cfg, _, variables = small_generator(32)
  # layers 1 and 2 (both 8 px) output lrelu(noise + 10) * sqrt(2) exactly
  # when their weights are zero (demodulated conv = 0), so the noise they
  # drew can be read back from their outputs.
  params = jax.tree_util.tree_map(np.array, variables["params"])
  for name in ("layer1", "layer2"):
    p = params["synthesis"][name]
    p["weight"][:] = 0.0
    p["bias"][:] = 10.0
    p["noise_strength"] = np.float32(1.0)
  v = {"params": params, "buffers": variables["buffers"]}
  g = stylegan2.build_generator(cfg)
  ws = random_ws(2, 32, 20).numpy()

  @jax.jit
  def run(key):
    return g.apply(v, ws, None, "random", key, method="synthesize",
                   capture_intermediates=True, mutable=["intermediates"])

  def noises(key):
    img, state = run(key)
    inter = state["intermediates"]["synthesis"]
    out = [np.asarray(inter[n]["__call__"][0]) / math.sqrt(2) - 10.0
           for n in ("layer1", "layer2")]
    return np.asarray(img), out

  img_a, (n1, n2) = noises(jax.random.key(0))
  img_b, _ = noises(jax.random.key(0))
  img_c, (m1, _) = noises(jax.random.key(1))
  np.testing.assert_array_equal(img_a, img_b)  # a key gives one answer
  for n in (n1, n2):
    assert n.shape == (2, 8, 8, 64)
    np.testing.assert_allclose(n, n[..., :1].repeat(64, -1), atol=1e-5)
    assert 0.5 < n.std() < 1.5  # unit-variance noise, not const or zero
    assert np.abs(n[0] - n[1]).max() > 0.1  # per sample
  assert np.abs(n1 - n2).max() > 0.1  # a different stream per layer
  assert np.abs(n1 - m1).max() > 0.1  # a different key, different noise
  with pytest.raises(ValueError, match="rng"):
    functional.synthesize(variables, ws, config=cfg, noise_mode="random")
  with pytest.raises(ValueError, match="noise_mode"):
    functional.synthesize(variables, ws, config=cfg, noise_mode="fixed")


def test_bad_input_raises_value_error():
  cfg, _, variables = small_generator(32)
  ws = random_ws(2, 32, 21).numpy()
  maps = random_paddings(cfg, 2, 34, seed=22)

  def synth(ws=ws, paddings=None, config=cfg):
    return functional.synthesize(variables, ws, paddings, config=config)

  cases = [
      (lambda: synth(ws=ws[0]), "rank"),
      (lambda: synth(ws=ws[:, :7]), "at least 8"),
      (lambda: synth(ws=ws[..., :16]), "w_dim"),
      (lambda: synth(paddings={"layer2": maps["layer2"][:, :31, :31]}),
       "layer2"),  # S - r odd
      (lambda: synth(paddings={"layer6": maps["layer6"][:, :32, :32]}),
       "layer6"),  # too small for the 32 px layer (needs 34)
      (lambda: synth(paddings={"layer0": maps["layer0"][:, :, :30]}),
       "layer0"),  # not square
      (lambda: synth(paddings={"layer4": maps["layer2"]}), "layer4"),  # C
      (lambda: synth(paddings={"const": np.concatenate([maps["const"]] * 2)}),
       "const"),  # batch 4 for 2 ws
      (lambda: synth(paddings={"layer1": maps["layer0"]}), "unknown"),
      (lambda: synth(paddings={"p0": maps["const"]}), "unknown"),
      (lambda: synth(paddings={"layer8": maps["layer6"]},
                     config=config_lib.generator_config(
                         **{**cfg.to_dict(), "pad_layer_num": 5})),
       "only layers 0..6"),
      (lambda: functional.mapping(variables, np.zeros((2, 7)), config=cfg),
       "z"),
  ]
  for fn, match in cases:
    with pytest.raises(ValueError, match=match):
      fn()
