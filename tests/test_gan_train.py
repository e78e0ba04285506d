"""The GAN trainer end to end on toy discs: losses move as a GAN's, exact resume.

A tiny 16 px StyleGAN2 + D (configs/gan/tiny.py) trains for a few dozen
steps in seconds; the run writes a generator-only model directory that
padinv_jax.load accepts.
"""

import importlib
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest

import padinv_jax
from padinv_jax.data import image_arrays
from padinv_jax.training import gan_trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny(**overrides):
  cfg = importlib.import_module("configs.gan.tiny").get_config()
  for k, v in overrides.items():
    node = cfg
    *parents, leaf = k.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = v
  return cfg


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("gan") / "run")
  summary = gan_trainer.train(tiny(num_steps=48, log_every=4), workdir)
  with open(os.path.join(workdir, "log.jsonl")) as f:
    log = [json.loads(line) for line in f]
  return workdir, summary, log


def test_losses_move_as_a_gan(tiny_run):
  _, summary, log = tiny_run
  assert summary["step"] == 48 and len(log) == 12
  first, early = log[0], log[:6]
  # Both start near the coin-flip values log 2 (G) and 2 log 2 (D).
  assert abs(first["loss_G"] - np.log(2)) < 0.5
  assert abs(first["loss_D"] - 2 * np.log(2)) < 0.5
  # D learns to separate reals from fakes early: real scores above fake
  # scores and mostly positive, D's loss below the coin flip.
  assert all(r["scores_real"] > r["scores_fake"] for r in early[2:])
  assert max(r["signs_real"] for r in early) > 0.5
  assert min(r["loss_D"] for r in early) < 2 * np.log(2) - 0.1
  # ... and G pushes back: its loss does not only grow.
  assert min(r["loss_G"] for r in log[3:]) < max(r["loss_G"] for r in log)
  for r in log:
    assert all(np.isfinite(v) for v in r.values()), r
  assert "pl_penalty" in first and "r1_penalty" in first


def test_outputs_and_generator_directory(tiny_run):
  workdir, summary, _ = tiny_run
  assert os.path.isfile(os.path.join(workdir, "samples", "latest.png"))
  model = padinv_jax.load(summary["generator_dir"])
  assert "encoder" not in model.params
  z = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
  img = np.asarray(model.synthesize(model.mapping(z)))
  assert img.shape == (3, 16, 16, 3) and np.isfinite(img).all()
  # G_ema differs from G after training (it is an average, not a copy).
  mngr = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"))
  state = mngr.restore(mngr.latest_step(), args=ocp.args.StandardRestore())
  g = state["g_params"]["synthesis"]["const"]
  e = state["ema"]["params"]["synthesis"]["const"]
  assert not np.array_equal(g, e)
  # w_avg was tracked away from its initial zeros.
  assert np.abs(state["g_buffers"]["mapping"]["w_avg"]).max() > 1e-3


def test_batches_are_a_function_of_the_step():
  data = image_arrays.ImageArray(image_arrays.toy_images(10, 8), seed=3,
                                 mirror=True)
  assert data.num_images == 20
  epoch = np.concatenate([data.indices(s, 4) for s in range(5)])
  assert sorted(epoch) == list(range(20))  # one epoch = each image once
  np.testing.assert_array_equal(data.batch(7, 4), data.batch(7, 4))
  two = [data.batch(3, 4, p, 2) for p in (0, 1)]
  np.testing.assert_array_equal(np.concatenate(two), data.batch(3, 4))
  i = data.indices(2, 4)
  flipped = i >= 10
  if flipped.any():
    np.testing.assert_array_equal(
        data.batch(2, 4)[flipped], data.images[i[flipped] - 10][:, :, ::-1])


@pytest.mark.parametrize("override,match", [
    ({"batch_size": 1}, "batch_size"),
    ({"loss.r1_gamma": float("nan")}, "finite"),
    ({"loss.style_mixing_prob": 2.0}, "style_mixing_prob"),
    ({"discriminator.resolution": 32}, "resolution"),
])
def test_bad_config_is_one_clear_error(tmp_path, override, match):
  with pytest.raises(ValueError, match=match):
    gan_trainer.train(tiny(**override), str(tmp_path / "w"))
  assert not os.path.exists(tmp_path / "w" / "checkpoints")


def _cmd(workdir, steps):
  return [sys.executable, "-m", "padinv_jax.training.gan_main",
          f"--config={ROOT}/configs/gan/tiny.py", f"--workdir={workdir}",
          f"--config.num_steps={steps}", "--config.ckpt_every=6",
          "--config.sample_every=1000", "--config.log_every=6"]


def _final_state(workdir):
  mngr = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"))
  return mngr.latest_step(), mngr.restore(mngr.latest_step(),
                                          args=ocp.args.StandardRestore())


def test_kill_9_and_resume_is_bit_identical(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
  ref = str(tmp_path / "ref")
  subprocess.run(_cmd(ref, 24), check=True, env=env, cwd=ROOT,
                 capture_output=True, timeout=600)
  run = str(tmp_path / "run")
  proc = subprocess.Popen(_cmd(run, 24), env=env, cwd=ROOT,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  ckpts = os.path.join(run, "checkpoints")
  deadline = time.time() + 600
  while time.time() < deadline and proc.poll() is None:
    if os.path.isdir(ckpts) and any(d.isdigit() and int(d) >= 6
                                    for d in os.listdir(ckpts)):
      break
    time.sleep(0.05)
  assert proc.poll() is None, "the run ended before it could be killed"
  time.sleep(0.5)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  subprocess.run(_cmd(run, 24), check=True, env=env, cwd=ROOT,
                 capture_output=True, timeout=600)
  (s_ref, a), (s_run, b) = _final_state(ref), _final_state(run)
  assert s_ref == s_run == 24
  import jax  # pylint: disable=g-import-not-at-top
  la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
  assert len(la) == len(lb) > 10
  for x, y in zip(la, lb):
    np.testing.assert_array_equal(x, y)


def test_the_gan_trainer_trains_a_stylegan1_too(tmp_path):
  cfg = tiny(num_steps=8, log_every=4, sample_every=8, ckpt_every=8,
             **{"model.generator.family": "stylegan1"})
  summary = gan_trainer.train(cfg, str(tmp_path / "sg1"))
  assert all(np.isfinite(v) for v in summary["last"].values())
  model = padinv_jax.load(summary["generator_dir"])
  assert model.config.generator.family == "stylegan1"


def test_cli_bad_value_is_one_line_exit_2(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
  proc = subprocess.run(_cmd(str(tmp_path / "w"), 4) + [
      "--config.batch_size=1"], env=env, cwd=ROOT, capture_output=True,
      text=True, timeout=300)
  assert proc.returncode == 2, proc.stderr[-2000:]
  lines = [l for l in proc.stderr.splitlines()
           if l.startswith("padinv-train-gan")]
  assert len(lines) == 1 and "batch_size" in lines[0]
  assert "Traceback" not in proc.stderr
