"""Faces and their 68 landmarks from dlib, the optional ``[align]`` extra.

dlib's HOG frontal face detector (upsampling the photo once, as the FFHQ
and pSp scripts do) and its 68-point shape predictor, from the prebuilt
``dlib-bin`` wheel; the model file comes from the ``face-recognition-models``
package (shape_predictor_68_face_landmarks.dat; the file is CC0, but the
model was trained on iBUG 300-W, whose terms exclude commercial use). Nothing
is downloaded at run time. Every face is returned, in dlib's order, with its
box; ``largest`` picks by box area (pSp keeps the last one, which on
scikit-image's astronaut is the mission patch, not her face).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

INSTALL = ("face detection needs the [align] extra: pip install "
           "'padinv_jax[align]' (dlib-bin and face-recognition-models)")


class MissingExtraError(RuntimeError):
  """dlib or its landmark model is not installed."""


@dataclasses.dataclass
class Face:
  box: tuple            # (left, top, right, bottom) in photo pixels
  landmarks: np.ndarray  # [68, 2] float64 (x, y)

  @property
  def area(self) -> int:
    return max(self.box[2] - self.box[0], 0) * max(self.box[3] - self.box[1], 0)


@functools.lru_cache(maxsize=1)
def _models():
  try:
    import dlib  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise MissingExtraError(INSTALL) from None
  return dlib.get_frontal_face_detector(), dlib.shape_predictor(
      predictor_path())


def predictor_path() -> str:
  """The 68-point model file of face-recognition-models, found without
  importing the package (its __init__ needs the removed pkg_resources)."""
  import importlib.util  # pylint: disable=import-outside-toplevel
  import os  # pylint: disable=import-outside-toplevel
  spec = importlib.util.find_spec("face_recognition_models")
  for root in (spec.submodule_search_locations or []) if spec else []:
    path = os.path.join(root, "models",
                        "shape_predictor_68_face_landmarks.dat")
    if os.path.isfile(path):
      return path
  raise MissingExtraError(INSTALL)


def available() -> bool:
  try:
    _models()
    return True
  except MissingExtraError:
    return False


def detect(rgb: np.ndarray, upsample: int = 1) -> list[Face]:
  """Every frontal face in a uint8 [H, W, 3] RGB photo, in dlib's order."""
  detector, predictor = _models()
  rgb = np.ascontiguousarray(rgb, np.uint8)
  faces = []
  for d in detector(rgb, upsample):
    shape = predictor(rgb, d)
    lm = np.array([[p.x, p.y] for p in shape.parts()], np.float64)
    faces.append(Face((d.left(), d.top(), d.right(), d.bottom()), lm))
  return faces


def largest(faces: list[Face]) -> list[Face]:
  return [max(faces, key=lambda f: f.area)] if faces else []
