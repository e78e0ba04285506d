"""NVIDIA's TF StyleGAN1 pickles (karras2019stylegan-*.pkl) through padinv-convert.

The file is rebuilt in its dnnlib structure (a tuple G, D, Gs of
dnnlib.tflib.network.Network, version 3, components mapping / synthesis,
(name, array) variables, an embedded build source that would leave a marker
if it ran) from random NVIDIA-named weights, converted, and compared with
the independent torch StyleGAN1 reference on those weights.
"""

import numpy as np
import torch

from padinv_jax.convert import main as convert_main
from padinv_jax.storage import model_dir
from test_convert_nvidia_tf import Network, pickle_networks
from torch_ref import stylegan1_ref as ref

RES, Z, W, MLP = 32, 16, 16, 3


def sg1_pickle(sd, marker, version=3, static_extra=None):
  src = f"open({str(marker)!r}, 'w').close()\\n"
  kw = dict(resolution=RES, num_channels=3, label_size=0, latent_size=Z,
            dlatent_size=W, mapping_layers=MLP, fmap_base=512, fmap_max=32)
  kw.update(static_extra or {})
  arrays = {k: v.numpy() for k, v in sd.items()}

  def net(name, variables, components=None):
    return Network({"version": version, "name": name,
                    "static_kwargs": dict(kw),
                    "components": components or {}, "build_module_src": src,
                    "build_func_name": "G_style",
                    "variables": list(variables.items())})

  part = lambda pre: {k[len(pre):]: v for k, v in arrays.items()
                      if k.startswith(pre)}
  gen = lambda name: net(name, {"dlatent_avg": arrays["dlatent_avg"]}, {
      "mapping": net("G_mapping", part("mapping/")),
      "synthesis": net("G_synthesis", part("synthesis/"))})
  return pickle_networks((gen("G"), net("D", {"x": np.zeros(1)}), gen("Gs")))


def test_tf_stylegan1_pickle_matches_torch(tmp_path, capsys):
  sd = ref.state_dict(RES, Z, W, MLP, channel_base=512, channel_max=32,
                      seed=11)
  marker = tmp_path / "PWNED"
  src = tmp_path / "karras2019stylegan-tiny.pkl"
  src.write_bytes(sg1_pickle(sd, marker))
  dst = tmp_path / "model"
  assert convert_main.run([str(src), str(dst)]) == 0
  assert "StyleGAN1" in capsys.readouterr().out
  assert not marker.exists()
  model = model_dir.load(str(dst))
  g = model.config.generator
  assert g.family == "stylegan1" and (g.resolution, g.mapping_layers) == (
      RES, MLP)
  z = np.random.default_rng(0).standard_normal((3, Z)).astype(np.float32)
  sd64 = {k: v.double() for k, v in sd.items()}
  with torch.no_grad():
    want_ws = ref.mapping(sd64, torch.from_numpy(z).double(), 8, 0.7, 8)
    want = ref.synthesis(sd64, want_ws, RES).numpy().transpose(0, 2, 3, 1)
  ws = model.mapping(z, psi=0.7, cutoff=8)
  np.testing.assert_allclose(ws, want_ws.numpy(), rtol=1e-5, atol=1e-5)
  got = model.synthesize(ws)
  assert np.max(np.abs(got - want)) / np.max(np.abs(want)) <= 1e-5


def test_tf_stylegan1_with_a_missing_variable_is_refused(tmp_path, capsys):
  sd = ref.state_dict(RES, Z, W, MLP, channel_base=512, channel_max=32)
  del sd["synthesis/16x16/Conv1/StyleMod/bias"]
  src = tmp_path / "broken.pkl"
  src.write_bytes(sg1_pickle(sd, tmp_path / "PWNED"))
  assert convert_main.run([str(src), str(tmp_path / "m")]) == 2
  err = capsys.readouterr().err
  assert "16x16/Conv1/StyleMod/bias" in err and len(err.splitlines()) == 1
  assert not (tmp_path / "m").exists()


def hammer_state_dict(sd):
  """NVIDIA-named reference weights -> Hammer's StyleGAN1 generator keys."""
  from padinv_jax.convert import stylegan1_keys  # pylint: disable=g-import-not-at-top
  names = [n.replace("_", "/", 1) for n in stylegan1_keys.layer_names(RES)]
  out = {"w_avg": sd["dlatent_avg"], "synthesis.lod": sd["synthesis/lod"]}
  for k, v in sd.items():
    if k.startswith("mapping/Dense"):
      i, leaf = k.split("/")[1][5:], k.split("/")[2]
      out[f"mapping.dense{i}.{leaf}"] = v.T if leaf == "weight" else v
  # Hammer registers the kernel as a [1, 1, 3, 3] buffer (models/
  # stylegan_generator.py, ModulateConvLayer).
  blur = (torch.tensor([[1., 2., 1.], [2., 4., 2.], [1., 2., 1.]]) / 16)[None, None]
  for i, n in enumerate(names):
    pre, h = f"synthesis/{n}/", f"synthesis.layer{i}."
    if i == 0:
      out[h + "const"] = sd[pre + "const"]
    else:
      out[h + "weight"] = sd[pre + "weight"].permute(3, 2, 0, 1)
    if "Conv0_up" in n:
      out[h + "filter"] = blur
    out[h + "bias"] = sd[pre + "bias"]
    out[h + "style.weight"] = sd[pre + "StyleMod/weight"].T
    out[h + "style.bias"] = sd[pre + "StyleMod/bias"]
    out[h + "noise_strength"] = sd[pre + "Noise/weight"].reshape(1, -1, 1, 1)
    out[h + "noise"] = sd[f"synthesis/noise{i}"]
  n_out = int(np.log2(RES)) - 1
  for b in range(n_out):
    lod = n_out - 1 - b
    out[f"synthesis.output{b}.weight"] = sd[
        f"synthesis/ToRGB_lod{lod}/weight"].permute(3, 2, 0, 1)
    out[f"synthesis.output{b}.bias"] = sd[f"synthesis/ToRGB_lod{lod}/bias"]
  return out


def test_hammer_stylegan1_checkpoint_matches_torch(tmp_path, capsys):
  sd = ref.state_dict(RES, Z, W, MLP, channel_base=512, channel_max=32,
                      seed=12)
  h = hammer_state_dict(sd)
  src = tmp_path / "stylegan_tiny.pth"
  torch.save({"models": {"generator_smooth": h, "generator": h}}, str(src))
  dst = tmp_path / "model"
  assert convert_main.run([str(src), str(dst)]) == 0, capsys.readouterr().err
  model = model_dir.load(str(dst))
  assert model.config.generator.family == "stylegan1"
  ws = np.random.default_rng(3).standard_normal((2, 8, W)).astype(np.float32)
  with torch.no_grad():
    want = ref.synthesis({k: v.double() for k, v in sd.items()},
                         torch.from_numpy(ws).double(), RES)
  want = want.numpy().transpose(0, 2, 3, 1)
  got = model.synthesize(ws)
  assert np.max(np.abs(got - want)) / np.max(np.abs(want)) <= 1e-5


def test_rosinality_style_based_gan_is_refused_with_the_reason(tmp_path,
                                                               capsys):
  g = {"generator.progression.0.conv1.input": torch.randn(1, 8, 4, 4),
       "style.1.linear.weight_orig": torch.randn(8, 8)}
  src = tmp_path / "train_step-3.model"
  torch.save({"generator": g, "g_running": g, "discriminator": {}}, str(src))
  assert convert_main.run([str(src), str(tmp_path / "m")]) == 2
  err = capsys.readouterr().err
  assert "style-based-gan" in err and "bias" in err
  assert len(err.strip().splitlines()) == 1
