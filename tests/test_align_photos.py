"""Faces in the wild with the real detector: dlib on scikit-image's astronaut.

The photo is public domain (NASA), shipped in scikit-image's test data. Its
HOG detector at upsample 1 also finds the mission patch on her suit: every
face is aligned and the largest is marked.
"""

import json
import os

import numpy as np
import pytest
from PIL import Image

from padinv_jax.cli import main as cli
from padinv_jax.data import align
from padinv_jax.data import face_detect
import apps_testlib

pytestmark = pytest.mark.skipif(not face_detect.available(),
                                reason="the [align] extra is not installed")


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory):
  import skimage.data  # pylint: disable=g-import-not-at-top
  d = tmp_path_factory.mktemp("photos")
  p = d / "astronaut.png"
  Image.fromarray(skimage.data.astronaut()).save(p)
  return p


def _psnr(a, b):
  mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
  return 10 * np.log10(255.0 ** 2 / max(mse, 1e-12))


def _largest_crop(rgb, size=256):
  faces = face_detect.detect(rgb)
  f = face_detect.largest(faces)[0]
  return np.asarray(align.align_face(Image.fromarray(rgb), f.landmarks,
                                     output_size=size,
                                     transform_size=4 * size).image)


def test_align_command_aligns_every_face(tmp_path, astronaut, capsys):
  out = tmp_path / "aligned"
  cli.main(["align", str(astronaut), "--out", str(out), "--size", "256"])
  capsys.readouterr()
  names = sorted(os.listdir(out))
  assert names == ["align_summary.json", "astronaut_face0.json",
                   "astronaut_face0.png", "astronaut_face1.json",
                   "astronaut_face1.png"]
  t = [json.loads((out / f"astronaut_face{k}.json").read_text())
       for k in (0, 1)]
  assert sum(x["largest"] for x in t) == 1
  big = next(x for x in t if x["largest"])
  assert big["box"][1] < 200  # her face, not the patch on her chest
  assert Image.open(out / "astronaut_face0.png").size == (256, 256)
  summary = json.loads((out / "align_summary.json").read_text())
  assert summary["faces"] == 2 and summary["photos_without_face"] == []


def test_photos_without_a_face_are_listed(tmp_path, astronaut, capsys):
  blank = tmp_path / "blank.png"
  Image.fromarray(np.full((200, 200, 3), 90, np.uint8)).save(blank)
  with pytest.raises(SystemExit) as e:
    cli.main(["align", str(astronaut), str(blank), "--out",
              str(tmp_path / "a"), "--size", "256", "--largest"])
  assert e.value.code == 1
  assert "blank.png: no face found" in capsys.readouterr().err
  assert len(list((tmp_path / "a").glob("*.png"))) == 1
  with pytest.raises(SystemExit) as e:
    cli.main(["align", str(blank), "--out", str(tmp_path / "b")])
  assert e.value.code == 2 and not os.path.exists(tmp_path / "b")
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "no face found" in err


@pytest.mark.parametrize("angle,scale,shift", [(0, 1.0, (37, -21)),
                                               (0, 1.3, (0, 0)),
                                               (20, 1.0, (10, 5))])
def test_similar_photos_give_nearly_the_same_crop(astronaut, angle, scale,
                                                  shift):
  rgb = np.asarray(Image.open(astronaut))
  h, w = rgb.shape[:2]
  big = Image.new("RGB", (2 * w, 2 * h))
  big.paste(Image.fromarray(rgb), (w // 2, h // 2))
  moved = big.rotate(angle, resample=Image.Resampling.BICUBIC,
                     center=(w, h), translate=shift)
  if scale != 1.0:
    moved = moved.resize((int(2 * w * scale), int(2 * h * scale)),
                         Image.Resampling.LANCZOS)
  a = _largest_crop(np.asarray(big))
  b = _largest_crop(np.asarray(moved))
  assert _psnr(a, b) >= 27, _psnr(a, b)


def test_invert_align_paste_back_end_to_end(tmp_path, astronaut, capsys):
  model = tmp_path / "model"
  apps_testlib.save_tiny_model(str(model))
  out = tmp_path / "inv"
  cli.main(["invert", str(astronaut), "--align", "--largest", "--paste-back",
            "--model", str(model), "--out", str(out)])
  capsys.readouterr()
  pasted = np.asarray(Image.open(out / "paste" / "astronaut.png"))
  photo = np.asarray(Image.open(astronaut))
  assert pasted.shape == photo.shape
  t = json.loads((out / "aligned" / "astronaut_face0.json").read_text())
  ys, xs = np.mgrid[:photo.shape[0], :photo.shape[1]].astype(float)
  u, v, _, _ = align.aligned_coordinates(t, xs, ys)
  outside = np.minimum(np.minimum(u, 1 - u), np.minimum(v, 1 - v)) <= 0
  np.testing.assert_array_equal(pasted[outside], photo[outside])
  assert np.abs(pasted.astype(int) - photo).max() > 0  # the face changed
  assert (out / "codes" / "astronaut_face0.npz").is_file()


def test_blend_and_interpolate_take_aligned_photos(tmp_path, astronaut,
                                                   capsys):
  model = tmp_path / "model"
  apps_testlib.save_tiny_model(str(model))
  out = tmp_path / "blend"
  cli.main(["blend", "--contour", str(astronaut), "--details",
            str(astronaut), "--align", "--paste-back", "--model", str(model),
            "--out", str(out)])
  cli.main(["interpolate", str(astronaut), str(astronaut), "--align",
            "--model", str(model), "--out", str(tmp_path / "interp"),
            "--steps", "3"])
  capsys.readouterr()
  pasted = Image.open(out / "paste" /
                      "contour-astronaut_details-astronaut.png")
  assert pasted.size == Image.open(astronaut).size
  assert list((tmp_path / "interp").glob("*.gif"))
