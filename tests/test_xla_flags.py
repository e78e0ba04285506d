"""The training commands' XLA:CPU defaults (training/xla_flags.py)."""

import os
import subprocess
import sys

import pytest

from padinv_jax.training import xla_flags

FLAG = f"--{xla_flags.MEMORY_SCHEDULER}=false"


def test_added_beside_the_users_flags():
  env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
  out = xla_flags.add_defaults(env)
  assert out == env["XLA_FLAGS"]
  assert out.split() == ["--xla_force_host_platform_device_count=8", FLAG]
  assert xla_flags.add_defaults({}) == FLAG


def test_the_users_own_setting_wins():
  env = {"XLA_FLAGS": f"--{xla_flags.MEMORY_SCHEDULER}=true"}
  assert xla_flags.add_defaults(env) == f"--{xla_flags.MEMORY_SCHEDULER}=true"


def test_warns_when_the_backend_already_started(monkeypatch):
  import jax  # pylint: disable=import-outside-toplevel
  jax.devices()
  monkeypatch.setenv("XLA_FLAGS", "")
  with pytest.warns(UserWarning, match="child processes only"):
    xla_flags.add_defaults()
  assert FLAG in os.environ["XLA_FLAGS"]


def test_the_training_commands_set_it_before_the_backend_starts():
  """padinv-train / padinv-train-gan parse their config (which must not
  start the backend) and add the flag in main() before the first jax
  call: run main() up to the trainer and look."""
  code = (
      "import os, sys\n"
      "from absl import flags\n"
      "from padinv_jax.training import {mod} as m, {trainer} as t\n"
      "def stop(*a, **k):\n"
      "  from jax._src import xla_bridge as xb\n"
      "  print('FLAGS', os.environ['XLA_FLAGS'], xb.backends_are_initialized())\n"
      "  sys.exit(0)\n"
      "t.{fn} = stop\n"
      "flags.FLAGS(['x', '--config=configs/{cfg}', '--workdir=unused'])\n"
      "m.main(['x'])\n")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")
  for mod, trainer, fn, cfg in (
      ("main", "trainer", "train_and_evaluate", "tiny.py"),
      ("gan_main", "gan_trainer", "train", "gan/tiny.py")):
    out = subprocess.run(
        [sys.executable, "-c", code.format(mod=mod, trainer=trainer, fn=fn,
                                           cfg=cfg)],
        cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    line = [l for l in out.stdout.splitlines() if l.startswith("FLAGS")][-1]
    assert FLAG in line and line.endswith("False"), line
    assert "child processes only" not in out.stderr
