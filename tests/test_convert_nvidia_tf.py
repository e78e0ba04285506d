"""NVIDIA legacy TensorFlow StyleGAN2 pickles, read without TensorFlow.

The file is rebuilt as NVIDIA's dnnlib writes it: a tuple (G, D, Gs) of
``dnnlib.tflib.network.Network`` objects pickled through __getstate__, each
with static_kwargs, components and a list of (name, numpy array) variables
in TF's layouts (HWIO kernels, [in, out] dense, the up-sampling kernel
flipped, the style bias without its +1, as NVIDIA's legacy.py documents).
The variables come from a random NVIDIA-layout state dict, so the converted
model is compared with the independent PyTorch reference on that state
dict. The embedded build source would create a marker file if it ran.
Tolerance 1e-4 * max(1, max|ref|).
"""

import math
import os
import pickle
import sys

import numpy as np
import torch

from padinv_jax.storage import model_dir
from padinv_jax.convert import main as convert_main
from torch_ref import stylegan2_ref as ref
from parity import assert_close

ARCH = dict(resolution=16, z_dim=24, w_dim=16, mapping_layers=3,
            channel_base=128, channel_max=16)


class Network:
  """Pickles like dnnlib.tflib.network.Network (state via __getstate__)."""

  def __init__(self, state):
    self._state = state

  def __getstate__(self):
    return self._state


Network.__module__ = "dnnlib.tflib.network"


def tf_variables(sd):
  """NVIDIA PyTorch-layout generator weights -> TF variable dicts."""
  sd = {k: v.numpy() for k, v in sd.items()}
  mapping, synthesis = {}, {"lod": np.float32(0.0)}
  for k, v in sd.items():
    p = k.split(".")
    if p[0] == "mapping" and p[1] != "w_avg":
      mapping[f"Dense{p[1][2:]}/{p[2]}"] = v.T if p[2] == "weight" else v
      continue
    if p[0] != "synthesis" or p[-1] == "resample_filter":
      continue
    if p[2] == "const":
      synthesis["4x4/Const/const"] = v[None]
      continue
    r = int(p[1][1:])
    scope = {"conv0": "Conv0_up", "conv1": "Conv" if r == 4 else "Conv1",
             "torgb": "ToRGB"}[p[2]]
    pre, leaf = f"{r}x{r}/{scope}/", ".".join(p[3:])
    if leaf == "weight":
      w = v.transpose(2, 3, 1, 0)  # OIHW -> HWIO
      synthesis[pre + "weight"] = w[::-1, ::-1] if p[2] == "conv0" else w
    elif leaf == "affine.weight":
      synthesis[pre + "mod_weight"] = v.T
    elif leaf == "affine.bias":
      synthesis[pre + "mod_bias"] = v - 1.0
    elif leaf == "noise_const":
      idx = 2 * int(math.log2(r)) - (5 if p[2] == "conv0" else 4)
      synthesis[f"noise{idx}"] = v[None, None]
    else:
      synthesis[pre + leaf] = v
  return mapping, synthesis, sd["mapping.w_avg"]


def tf_pickle(sd, marker) -> bytes:
  mapping, synthesis, w_avg = tf_variables(sd)
  src = f"open({str(marker)!r}, 'w').close()\n"
  kw = dict(latent_size=ARCH["z_dim"], dlatent_size=ARCH["w_dim"],
            resolution=ARCH["resolution"], num_channels=3, label_size=0,
            mapping_layers=ARCH["mapping_layers"], fmap_base=64,
            fmap_max=ARCH["channel_max"])

  def net(name, variables, components=None, func="G_main"):
    return Network({"version": 4, "name": name, "static_kwargs": dict(kw),
                    "components": components or {}, "build_module_src": src,
                    "build_func_name": func,
                    "variables": [(k, np.array(v))
                                  for k, v in variables.items()]})

  def gen(name):
    return net(name, {"dlatent_avg": w_avg}, {
        "mapping": net("G_mapping", mapping),
        "synthesis": net("G_synthesis", synthesis)})

  return pickle_networks((gen("G"), net("D", {"Output/bias": np.zeros(1)}),
                          gen("Gs")))


def pickle_networks(obj) -> bytes:
  """pickle.dumps with dnnlib.tflib.network importable as a stand-in."""
  mods = ("dnnlib", "dnnlib.tflib", "dnnlib.tflib.network")
  saved = {m: sys.modules.get(m) for m in mods}
  for m in mods:
    sys.modules[m] = type(sys)(m)
  sys.modules["dnnlib.tflib.network"].Network = Network
  try:
    return pickle.dumps(obj, protocol=3)
  finally:
    for m, v in saved.items():
      if v is None:
        sys.modules.pop(m, None)
      else:
        sys.modules[m] = v


def test_tf_pickle_matches_torch(tmp_path, capsys):
  sd = ref.random_state_dict(**ARCH, seed=21)
  marker = tmp_path / "PWNED"
  src = tmp_path / "stylegan2-tf.pkl"
  src.write_bytes(tf_pickle(sd, marker))
  dst = tmp_path / "model"
  assert convert_main.run([str(src), str(dst)]) == 0
  out = capsys.readouterr().out
  assert "TensorFlow" in out and "Gs" in out
  assert not marker.exists()
  model = model_dir.load(str(dst))
  g = model.config.generator
  assert (g.resolution, g.z_dim, g.w_dim, g.mapping_layers) == (16, 24, 16, 3)
  num_ws = 2 * int(math.log2(ARCH["resolution"])) - 2
  gen = torch.Generator().manual_seed(0)
  z = torch.randn(3, ARCH["z_dim"], generator=gen)
  assert_close(model.mapping(z.numpy(), psi=0.5, cutoff=3),
               ref.mapping(sd, z, num_ws, 0.5, 3), "ws psi 0.5 cutoff 3")
  ws = torch.randn(3, num_ws, ARCH["w_dim"], generator=gen)
  want = ref.synthesis(sd, ws, ARCH["resolution"])
  assert_close(model.synthesize(ws.numpy()), want.numpy().transpose(0, 2, 3, 1),
               "images")


def test_tf_pickle_with_unknown_options_refused(tmp_path, capsys):
  sd = ref.random_state_dict(**ARCH, seed=22)
  data = tf_pickle(sd, tmp_path / "PWNED").replace(
      b"resolution", b"resolutiox", 1)
  src = tmp_path / "bad.pkl"
  src.write_bytes(data)
  assert convert_main.run([str(src), str(tmp_path / "m")]) == 2
  err = capsys.readouterr().err.strip()
  assert "resolutiox" in err and "\n" not in err
  assert not os.path.exists(tmp_path / "m")
