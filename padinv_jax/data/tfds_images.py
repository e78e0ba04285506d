"""TFDS dataset "padinv_images/<name>": image folders or zips, preprocessed.

Every image under a folder (recursively) or inside a zip whose name ends in
an image extension is decoded, converted to RGB, centre-cropped and area-
resized exactly as the original (padinv_jax.data.preprocess) and stored as a
lossless 256 x 256 PNG in an ArrayRecord dataset (random access), in sorted
path order (record i is the i-th usable file). Files that cannot be used are
skipped, never fatal: they are listed in a warning, in the report that
prepare_image_dataset returns and in the dataset's metadata.json
({"skipped": {split: [{"path", "reason"}]}}). Command line:
`python -m padinv_jax.data --name ffhq --train DIR_OR_ZIP [--test ...]`.
A source may also be an IDX images file (``*-images-idx3-ubyte[.gz]``, e.g.
Fashion-MNIST's): its images are put on the 32 px canvas of
padinv_jax.data.fashion_mnist and named FILE[i]:
`python -m padinv_jax.data --name fashion32 --resolution 32 --train
/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz --test
/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz`.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import io
import os
import threading
import warnings
import zipfile
from typing import Optional

import tensorflow_datasets as tfds
from PIL import Image

from padinv_jax.data import preprocess

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff",
                    ".gif", ".ppm", ".pgm")
BUILDER_NAME = "padinv_images"


class PadinvImagesConfig(tfds.core.BuilderConfig):
  """Where the images are and the stored resolution."""

  def __init__(self, *, name: str, train: Optional[str] = None,
               test: Optional[str] = None, resolution: int = 256, **kw):
    super().__init__(name=name, version="1.0.0",
                     description=f"images from {train} / {test}", **kw)
    self.train, self.test, self.resolution = train, test, resolution


class PadinvImages(tfds.core.GeneratorBasedBuilder):
  """Image folders or zips, preprocessed as the original at build time."""

  VERSION = tfds.core.Version("1.0.0")
  BUILDER_CONFIGS = []  # always a custom PadinvImagesConfig

  def _info(self) -> tfds.core.DatasetInfo:
    r = self.builder_config.resolution if self.builder_config else 256
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(r, r, 3),
                                         encoding_format="png"),
            "path": tfds.features.Text(),
        }),
        # Keep the sorted-path order: index i is the i-th usable file.
        disable_shuffling=True,
        metadata=tfds.core.MetadataDict(skipped={}),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # local files only
    cfg = self.builder_config
    out = {"train": self._generate_examples(cfg.train, "train")}
    if cfg.test:
      out["test"] = self._generate_examples(cfg.test, "test")
    return out

  def _generate_examples(self, location, split):
    skipped = []
    resolution = self.builder_config.resolution
    for path, png, reason in _ordered_map(
        lambda item: _prepare_file(*item, resolution), list_images(location)):
      if png is None:
        skipped.append({"path": path, "reason": reason})
      else:
        yield path, {"image": png, "path": path}
    self.info.metadata["skipped"][split] = skipped
    if skipped:
      lines = "\n".join(f"  {s['path']}: {s['reason']}" for s in skipped)
      warnings.warn(f"{BUILDER_NAME}/{self.builder_config.name} [{split}]: "
                    f"skipped {len(skipped)} unusable file(s):\n{lines}\n"
                    f"(also in the dataset's metadata.json)", stacklevel=1)


def _prepare_file(path, read, resolution):
  """(path, PNG bytes of the preprocessed image or None, reason if None)."""
  try:
    image = preprocess.decode_image(read(), path)
    image = preprocess.preprocess(image, resolution)
  except preprocess.ImageDecodeError as e:
    return path, None, e.reason
  except OSError as e:  # unreadable file (permissions, I/O)
    return path, None, f"cannot read: {e}"
  buf = io.BytesIO()
  # Lossless; encoding here (in threads) is several times faster than
  # letting TFDS encode in its single writer thread.
  Image.fromarray(image).save(buf, format="PNG", compress_level=6)
  return path, buf.getvalue(), None


def _ordered_map(fn, items, window: int = 256):
  """fn over items on a thread pool, results in order, bounded memory."""
  workers = min(32, os.cpu_count() or 1)
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    pending = collections.deque()
    for item in items:
      pending.append(pool.submit(fn, item))
      if len(pending) >= window:
        yield pending.popleft().result()
    while pending:
      yield pending.popleft().result()


def list_images(location: str):
  """Sorted (path, read_fn) for the image files under a folder or in a zip."""
  if not os.path.exists(location):
    raise FileNotFoundError(f"image source {location!r} does not exist; pass "
                            f"a folder of images or a .zip file")
  if os.path.isfile(location) and "-idx3-ubyte" in os.path.basename(location):
    return _idx_images(location)
  if os.path.isfile(location):
    if not zipfile.is_zipfile(location):
      raise ValueError(f"{location!r} is a file but not a zip archive; pass a "
                       f"folder of images or a .zip file")
    zf = zipfile.ZipFile(location)
    names = sorted(n for n in zf.namelist()
                   if n.lower().endswith(IMAGE_EXTENSIONS))
    lock = threading.Lock()

    def reader(n):
      def read():
        with lock:
          return zf.read(n)
      return read
    return [(f"{location}:{n}", reader(n)) for n in names]
  files = []
  for root, _, names in os.walk(location):
    files += [os.path.join(root, n) for n in names
              if n.lower().endswith(IMAGE_EXTENSIONS)]

  def file_reader(p):
    def read():
      with open(p, "rb") as f:
        return f.read()
    return read
  return [(p, file_reader(p)) for p in sorted(files)]


def _idx_images(location: str):
  """(name, read_fn) per image of an IDX file, as PNG bytes on the canvas."""
  from padinv_jax.data import fashion_mnist  # pylint: disable=g-import-not-at-top
  try:
    grey = fashion_mnist.read_idx(location, 3)
  except fashion_mnist.IdxError as e:
    raise ValueError(str(e)) from None
  side = max(32, grey.shape[1], grey.shape[2])
  side = 1 << (side - 1).bit_length()  # the next power of two

  def reader(i):
    def read():
      buf = io.BytesIO()
      Image.fromarray(fashion_mnist.to_canvas(grey[i:i + 1], side)[0]).save(
          buf, format="PNG")
      return buf.getvalue()
    return read
  return [(f"{location}[{i}]", reader(i)) for i in range(len(grey))]


def image_builder(name: str, *, data_dir: Optional[str] = None,
                  train: Optional[str] = None, test: Optional[str] = None,
                  resolution: int = 256) -> PadinvImages:
  """The builder of "padinv_images/<name>" (sources needed only to prepare)."""
  cfg = PadinvImagesConfig(name=name, train=train, test=test,
                           resolution=resolution)
  return PadinvImages(config=cfg, data_dir=data_dir,
                      file_format="array_record")


def prepare_image_dataset(name: str, *, train: str, test: Optional[str] = None,
                          data_dir: Optional[str] = None,
                          resolution: int = 256):
  """Build "padinv_images/<name>" from a folder or zip of images.

  Args:
    name: the config name; the data go to data_dir/padinv_images/<name>/.
    train: folder or .zip with the training images.
    test: optional folder or .zip with the held-out images (split "test").
    data_dir: TFDS data dir (default ~/tensorflow_datasets).
    resolution: stored square resolution (256 in every recipe).

  Returns:
    (builder, report): report is {split: [{"path", "reason"}]} of the files
    that were skipped (also in the dataset's metadata.json).
  """
  builder = image_builder(name, data_dir=data_dir, train=train, test=test,
                          resolution=resolution)
  builder.download_and_prepare()
  report = dict(builder.info.metadata.get("skipped", {}))
  return builder, report


def main(argv=None):
  """python -m padinv_jax.data --name NAME --train DIR_OR_ZIP [--test ...]."""
  p = argparse.ArgumentParser(description=main.__doc__)
  p.add_argument("--name", required=True)
  p.add_argument("--train", required=True)
  p.add_argument("--test")
  p.add_argument("--data_dir")
  p.add_argument("--resolution", type=int, default=256)
  a = p.parse_args(argv)
  builder, report = prepare_image_dataset(
      a.name, train=a.train, test=a.test, data_dir=a.data_dir,
      resolution=a.resolution)
  for split, info in builder.info.splits.items():
    print(f"{split}: {info.num_examples} images, "
          f"{len(report.get(split, []))} skipped")
  print(f"prepared at {builder.data_dir} (skipped files: metadata.json)")


if __name__ == "__main__":
  main()
