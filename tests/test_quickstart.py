"""examples/quickstart.py runs top to bottom on a tiny random model."""

import os
import runpy
import sys

import numpy as np
from PIL import Image

import apps_testlib

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "examples",
                       "quickstart.py")


def test_quickstart_runs_and_writes_its_pictures(tmp_path, monkeypatch):
  apps_testlib.save_tiny_model(tmp_path / "model", seed=2)
  out = tmp_path / "out"
  monkeypatch.setattr(sys, "argv", ["quickstart.py", "--model",
                                    str(tmp_path / "model"), "--out",
                                    str(out)])
  runpy.run_path(EXAMPLE, run_name="__main__")
  sizes = {"inversion.png": (4 * 64, 2 * 64), "blending.png": (64, 5 * 64),
           "interpolation.png": (3 * 32, 5 * 32),
           "editing.png": (32, 6 * 32)}
  for name, (h, w) in sizes.items():
    img = np.asarray(Image.open(out / name))
    assert img.shape == (h, w, 3), name
    assert img.std() > 1, name  # not a blank picture
  assert os.path.isfile(out / "codes0.npz")
