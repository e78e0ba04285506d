"""NVIDIA stylegan2-ada-pytorch pickles through padinv-convert.

The golden pickle (made by the official code) and small random pickles in
the same persistence layout are converted with the real command, loaded with
padinv_jax.load and compared with the golden outputs / the independent
PyTorch reference (tests/torch_ref/stylegan2_ref.py).
Tolerance: max|a - b| <= 1e-4 * max(1, max|ref|).
"""

import math
import os

import numpy as np
import pytest
import torch

import padinv_jax
from padinv_jax.models import discriminator as d_lib
from padinv_jax.storage import model_dir
from padinv_jax.storage import part_dir
from padinv_jax.convert import main as convert_main
from torch_ref import discriminator_ref
from torch_ref import nvidia_persistence
from torch_ref import stylegan2_ref as ref
from parity import assert_close


def nhwc(t):
  return np.asarray(t.detach().numpy() if torch.is_tensor(t) else t
                    ).transpose(0, 2, 3, 1)


def convert(tmp_path, src, *args, name="out"):
  dst = tmp_path / name
  rc = convert_main.run([str(src), str(dst), *args])
  assert rc == 0
  return model_dir.load(str(dst))


# ------------------------------------------------------------------ golden

def test_golden_nvidia_pickle(tmp_path, golden_dir, capsys):
  model = convert(tmp_path, os.path.join(golden_dir, "nvidia_g32_visible.pkl"))
  out = capsys.readouterr().out
  assert "NVIDIA" in out and "G_ema" in out and "32 px" in out
  g = model.config.generator
  assert (g.resolution, g.z_dim, g.w_dim, g.mapping_layers, g.channel_base,
          g.channel_max, g.conv_clamp) == (32, 64, 64, 8, 1024, 128, 256.0)
  r = np.load(os.path.join(golden_dir, "nvidia_g32_visible_ref.npz"))
  assert_close(model.mapping(r["z"]), r["ws"], "ws")
  assert_close(model.mapping(r["z"], psi=0.7), r["ws_psi07"], "ws psi 0.7")
  assert_close(model.mapping(r["z"], psi=0.7, cutoff=4), r["ws_psi07_cut4"],
               "ws psi 0.7 cutoff 4")
  assert_close(model.synthesize(r["ws"]), nhwc(r["img"]), "img const")
  assert_close(model.synthesize(r["ws"], noise_mode="none"),
               nhwc(r["img_noise_none"]), "img none")
  assert_close(model.synthesize(r["ws_direct"]), nhwc(r["img_direct"]),
               "img ws_direct")


# ----------------------------------------------------------- random pickles

ARCH = dict(resolution=16, z_dim=24, w_dim=16, mapping_layers=3,
            channel_base=128, channel_max=16)


def nvidia_pickle(sd_g, sd_g_ema=None, init_kwargs=None, extra=None,
                  module_src="# none\n") -> bytes:
  nets = {}
  for name, sd in (("G", sd_g), ("G_ema", sd_g_ema or sd_g)):
    nets[name] = nvidia_persistence.tree_from_state_dict(
        sd, {"": "Generator", "mapping": "MappingNetwork",
             "synthesis": "SynthesisNetwork"}, init_kwargs, module_src)
  nets["D"] = nvidia_persistence.Persistent(
      "Discriminator", nvidia_persistence.module_state({}, {}))
  nets["training_set_kwargs"] = {"resolution": ARCH["resolution"]}
  nets["augment_pipe"] = None
  nets.update(extra or {})
  return nvidia_persistence.dumps(nets)


def init_kwargs(arch=ARCH, conv_clamp=None, lr_mul=0.01, **over):
  kw = dict(z_dim=arch["z_dim"], c_dim=0, w_dim=arch["w_dim"],
            img_resolution=arch["resolution"], img_channels=3,
            mapping_kwargs=dict(num_layers=arch["mapping_layers"],
                                lr_multiplier=lr_mul),
            synthesis_kwargs=dict(channel_base=arch["channel_base"],
                                  channel_max=arch["channel_max"],
                                  num_fp16_res=0, conv_clamp=conv_clamp))
  kw.update(over)
  return kw


def random_sd(seed, lr_mul=0.01, arch=ARCH):
  return ref.random_state_dict(**arch, seed=seed, lr_mul=lr_mul)


@pytest.mark.parametrize("conv_clamp,lr_mul,with_kwargs,mode", [
    (0.5, 0.05, True, "const"), (None, 0.01, False, "none")])
def test_random_nvidia_pickle_matches_torch(tmp_path, conv_clamp, lr_mul,
                                            with_kwargs, mode):
  # with_kwargs=False: no _init_kwargs, the architecture is read from shapes.
  sd = random_sd(1, lr_mul)
  kw = init_kwargs(conv_clamp=conv_clamp, lr_mul=lr_mul) if with_kwargs else None
  src = tmp_path / "net.pkl"
  src.write_bytes(nvidia_pickle(random_sd(2, lr_mul), sd, kw))
  model = convert(tmp_path, src)  # G_ema = sd
  g = model.config.generator
  assert (g.resolution, g.z_dim, g.w_dim, g.mapping_layers, g.channel_base,
          g.channel_max) == tuple(ARCH.values())
  num_ws = 2 * int(math.log2(ARCH["resolution"])) - 2
  z = torch.randn(3, ARCH["z_dim"], generator=torch.Generator().manual_seed(0))
  for psi, cutoff in ((1.0, None), (0.6, 2)):
    want = ref.mapping(sd, z, num_ws, psi, cutoff, lr_mul=lr_mul)
    assert_close(model.mapping(z.numpy(), psi=psi, cutoff=cutoff), want,
                 f"ws psi {psi} cutoff {cutoff}")
  ws = torch.randn(3, num_ws, ARCH["w_dim"],
                   generator=torch.Generator().manual_seed(1))
  want = ref.synthesis(sd, ws, ARCH["resolution"], mode, conv_clamp)
  assert_close(model.synthesize(ws.numpy(), noise_mode=mode), nhwc(want),
               f"img {mode}")


def test_entry_selects_the_network(tmp_path):
  sd_g, sd_ema = random_sd(3), random_sd(4)
  src = tmp_path / "net.pkl"
  src.write_bytes(nvidia_pickle(sd_g, sd_ema, init_kwargs()))
  m_g = convert(tmp_path, src, "--entry", "G", name="g")
  m_ema = convert(tmp_path, src, name="ema")
  np.testing.assert_array_equal(
      m_g.params["generator"]["params"]["synthesis"]["const"],
      sd_g["synthesis.b4.const"].numpy().transpose(1, 2, 0))
  np.testing.assert_array_equal(
      m_ema.params["generator"]["params"]["synthesis"]["const"],
      sd_ema["synthesis.b4.const"].numpy().transpose(1, 2, 0))


def _refused(tmp_path, src, capsys, *words, args=()):
  dst = tmp_path / "refused"
  rc = convert_main.run([str(src), str(dst), *args])
  err = capsys.readouterr().err.strip()
  assert rc == 2 and "\n" not in err, err
  for w in words:
    assert w in err, err
  assert not dst.exists()
  return err


def test_wrong_resolution_lists_offending_keys(tmp_path, capsys):
  src = tmp_path / "net.pkl"
  src.write_bytes(nvidia_pickle(random_sd(5),
                                init_kwargs=init_kwargs(img_resolution=32)))
  _refused(tmp_path, src, capsys, "missing", "synthesis.b32.conv0.weight")


def test_missing_layer_lists_the_key(tmp_path, capsys):
  sd = random_sd(6)
  del sd["synthesis.b8.conv0.affine.weight"]
  src = tmp_path / "net.pkl"
  src.write_bytes(nvidia_pickle(sd, init_kwargs=init_kwargs()))
  _refused(tmp_path, src, capsys, "missing 1", "synthesis.b8.conv0.affine.weight")


def test_extra_and_misshaped_keys_listed(tmp_path, capsys):
  sd = random_sd(7)
  sd["synthesis.b8.conv1.extra"] = torch.zeros(2)
  sd["synthesis.b16.torgb.bias"] = torch.zeros(4)
  src = tmp_path / "net.pkl"
  src.write_bytes(nvidia_pickle(sd, init_kwargs=init_kwargs()))
  _refused(tmp_path, src, capsys, "unexpected 1", "synthesis.b8.conv1.extra",
           "mis-shaped 1", "synthesis.b16.torgb.bias")


def test_non_fir_resample_filter_refused(tmp_path, capsys):
  sd = random_sd(8)
  sd["synthesis.b8.conv0.resample_filter"] = torch.ones(4, 4) / 16
  src = tmp_path / "net.pkl"
  src.write_bytes(nvidia_pickle(sd, init_kwargs=init_kwargs()))
  _refused(tmp_path, src, capsys, "synthesis.b8.conv0.resample_filter",
           "FIR")


def test_stylegan3_and_conditional_refused(tmp_path, capsys):
  sd = random_sd(9)
  sg3 = dict(sd, **{"synthesis.input.weight": torch.zeros(4, 2),
                    "synthesis.L0_36_512.weight": torch.zeros(2)})
  src = tmp_path / "sg3.pkl"
  src.write_bytes(nvidia_pickle(sg3, init_kwargs=init_kwargs()))
  _refused(tmp_path, src, capsys, "StyleGAN3")
  cond = dict(sd, **{"mapping.embed.weight": torch.zeros(16, 10)})
  src = tmp_path / "cond.pkl"
  src.write_bytes(nvidia_pickle(cond, init_kwargs=init_kwargs(c_dim=10)))
  _refused(tmp_path, src, capsys, "conditional")


def test_discriminator_entry_writes_a_d_part(tmp_path):
  d_cfg = dict(resolution=16, channel_base=128, channel_max=16,
               mbstd_group_size=2)
  d_sd = discriminator_ref.make_state_dict(d_cfg, seed=11)
  d_net = nvidia_persistence.tree_from_state_dict(
      {k: torch.from_numpy(v) for k, v in d_sd.items()},
      {"": "Discriminator"},
      dict(c_dim=0, img_resolution=16, img_channels=3, architecture="resnet",
           channel_base=128, channel_max=16, num_fp16_res=0, conv_clamp=None,
           epilogue_kwargs=dict(mbstd_group_size=2)))
  src = tmp_path / "net.pkl"
  src.write_bytes(nvidia_pickle(random_sd(10), init_kwargs=init_kwargs(),
                                extra={"D": d_net}))
  assert convert_main.run([str(src), str(tmp_path / "d"), "--entry", "D"]) == 0
  d_vars = part_dir.load_part(str(tmp_path / "d"), "discriminator")
  x = np.random.default_rng(1).uniform(-1, 1, (4, 16, 16, 3)).astype(np.float32)
  got = d_lib.d_scores(d_vars, x, config=d_lib.discriminator_config(**d_cfg))
  want = discriminator_ref.forward(d_sd, torch.from_numpy(
      x.transpose(0, 3, 1, 2)), d_cfg)[:, 0]
  assert_close(got, want.numpy(), "D scores")


def test_unknown_entry_refused(tmp_path, capsys):
  src = tmp_path / "net.pkl"
  src.write_bytes(nvidia_pickle(random_sd(10), init_kwargs=init_kwargs()))
  _refused(tmp_path, src, capsys, "no entry 'G_x'", args=("--entry", "G_x"))
  _refused(tmp_path, src, capsys, "not an NVIDIA network",
           args=("--entry", "augment_pipe"))


def test_overwrite_replaces_a_model_dir(tmp_path, golden_dir):
  src = os.path.join(golden_dir, "nvidia_g32_visible.pkl")
  dst = tmp_path / "m"
  assert convert_main.run([src, str(dst)]) == 0
  assert convert_main.run([src, str(dst)]) == 2
  assert convert_main.run([src, str(dst), "--overwrite"]) == 0
  assert padinv_jax.storage.model_dir.load(str(dst)).config.generator.resolution == 32
