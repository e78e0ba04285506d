"""Every format converts with torch hidden from the converter.

The source files are written here with torch (as the other convert tests
write them); the conversions then run in a subprocess where an import hook
makes ``import torch`` fail. Their outputs must equal, bit for bit, the
in-process conversions that the parity tests check against PyTorch.
"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import torch

from padinv_jax.storage import model_dir
from padinv_jax.storage import part_dir
from padinv_jax.convert import main as convert_main
from torch_ref import arcface_ref
from torch_ref import lpips_ref
from torch_ref import rosinality_ref
import test_convert_hammer
import test_convert_nvidia
import test_convert_nvidia_tf
import test_convert_psp

_RUNNER = textwrap.dedent("""
    import importlib.abc, json, sys

    class _HideTorch(importlib.abc.MetaPathFinder):
      def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
          raise ImportError("torch is hidden in this test")
        return None

    sys.meta_path.insert(0, _HideTorch())
    for k in [k for k in sys.modules if k == "torch" or k.startswith("torch.")]:
      del sys.modules[k]
    from padinv_jax.convert import main
    jobs = json.loads(sys.argv[1])
    rcs = [main.run(job) for job in jobs]
    assert "torch" not in sys.modules, "something imported torch"
    print("RCS=" + json.dumps(rcs))
""")


def _sources(d, golden_dir):
  """(name, src, extra args, kind) for one file of every format."""
  jobs = []
  # NVIDIA: the golden pickle and a random persistence-layout pickle.
  jobs.append(("nvidia_golden", os.path.join(golden_dir,
                                             "nvidia_g32_visible.pkl"), [],
               "model"))
  nv = d / "nvidia.pkl"
  nv.write_bytes(test_convert_nvidia.nvidia_pickle(
      test_convert_nvidia.random_sd(1),
      init_kwargs=test_convert_nvidia.init_kwargs()))
  jobs.append(("nvidia_random", str(nv), [], "model"))
  tf = d / "nvidia_tf.pkl"
  tf.write_bytes(test_convert_nvidia_tf.tf_pickle(
      test_convert_nvidia_tf.ref.random_state_dict(
          **test_convert_nvidia_tf.ARCH, seed=7), d / "PWNED"))
  jobs.append(("nvidia_tf", str(tf), [], "model"))
  # rosinality (legacy torch format).
  ros = d / "rosinality.pt"
  torch.save({"g_ema": rosinality_ref.random_state_dict(16, 16, 2, {
      4: 16, 8: 16, 16: 8}, seed=2), "latent_avg": torch.randn(16)},
             str(ros), _use_new_zipfile_serialization=False)
  jobs.append(("rosinality", str(ros), [], "model"))
  # PadInv training checkpoint and Hammer GAN checkpoint with a D.
  nets = test_convert_hammer.make_nets()
  train = test_convert_hammer.train_ckpt(nets, d / "train.pth")
  jobs.append(("padinv", str(train), [], "model"))
  d_cfg = dict(resolution=32, channel_base=1024, channel_max=32)
  from torch_ref import discriminator_ref  # pylint: disable=import-outside-toplevel
  d_sd = discriminator_ref.to_hammer(
      discriminator_ref.make_state_dict(d_cfg, seed=3), d_cfg)
  gan = d / "gan.pth"
  torch.save({"models": {"generator": nets["h_sd"],
                         "generator_smooth": nets["h_sd"],
                         "discriminator": {k: torch.from_numpy(v)
                                           for k, v in d_sd.items()}}},
             str(gan))
  jobs.append(("hammer", str(gan), [], "model"))
  jobs.append(("hammer_d", str(gan), ["--entry", "discriminator"],
               "discriminator"))
  # pSp and e4e.
  psp = test_convert_psp.make_psp_files(d)
  jobs.append(("psp", str(psp["psp"]), [], "model"))
  jobs.append(("e4e", str(psp["e4e"]), [], "model"))
  # ArcFace (legacy format) and LPIPS (two files).
  arc = arcface_ref.make_arcface(seed=4, stem=8, widths=(8, 16, 16, 32),
                                 emb=24)
  torch.save(arc.state_dict(), str(d / "arcface.pth"),
             _use_new_zipfile_serialization=False)
  jobs.append(("arcface", str(d / "arcface.pth"), [], "arcface"))
  trunk, lin = lpips_ref.split_state_dict(lpips_ref.make_lpips("alex", 5))
  torch.save({k: torch.from_numpy(v) for k, v in trunk.items()},
             str(d / "alexnet.pth"))
  torch.save({k: torch.from_numpy(v) for k, v in lin.items()},
             str(d / "alex.pth"))
  jobs.append(("lpips", f"{d / 'alexnet.pth'}+{d / 'alex.pth'}", [],
               "lpips"))
  return jobs


def _leaves(tree):
  return {jax.tree_util.keystr(p): np.asarray(v)
          for p, v in jax.tree_util.tree_leaves_with_path(tree)}


def test_all_formats_convert_without_torch(tmp_path, golden_dir):
  jobs = _sources(tmp_path, golden_dir)
  argv = [[src, str(tmp_path / f"out_{name}"), *extra]
          for name, src, extra, _ in jobs]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  proc = subprocess.run([sys.executable, "-c", _RUNNER, json.dumps(argv)],
                        capture_output=True, text=True, env=env, timeout=600,
                        check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  rcs = json.loads(proc.stdout.split("RCS=")[-1])
  assert rcs == [0] * len(jobs), (rcs, proc.stderr[-3000:])
  for (name, src, extra, kind), args in zip(jobs, argv):
    want = convert_main.convert_file(
        src, "auto", extra[1] if extra else None)
    if kind == "model":
      got = model_dir.load(args[1]).params
      assert model_dir.load(args[1]).config.to_dict() == want.config.to_dict()
    else:
      got = part_dir.load_part(args[1], kind)
    got, want = _leaves(got), _leaves(want.params)
    assert got.keys() == want.keys(), name
    for k in want:
      np.testing.assert_array_equal(got[k], want[k], err_msg=f"{name} {k}")
