"""The trainer's view of the input: resumable train batches and eval passes.

Dataset "demo" is made on the fly from the frozen generator
(padinv_jax.data.demo_data: generator samples plus shifted / cropped / flipped
copies outside its range), split into train and held-out images; dataset
"fashion_mnist" reads the original IDX files (padinv_jax.data.fashion_mnist,
data.data_dir or the Debian package's folder): its train split for training,
its test split for evaluation; anything else is a TFDS dataset opened by
padinv_jax.data.pipeline.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Callable, Iterator, NamedTuple

from absl import logging
import jax
import ml_collections

from padinv_jax.data import pipeline as data_lib
from padinv_jax.data import demo_data
from padinv_jax.data import embedded
from padinv_jax.data import fashion_mnist


class TrainData(NamedTuple):
  """iterate(start_step) -> this process's float batches [B, 256, 256, 3];
  eval_batches() -> a fixed pass of {"image", "mask"} (None: no eval)."""
  iterate: Callable[[int], Iterator]
  eval_batches: Callable[[], Iterator] | None
  num_train: int


def build(cfg, model_cfg, gen_vars, workdir: str) -> TrainData:
  """Train / eval sources for cfg.data (see padinv_jax.data.pipeline)."""
  d = cfg.data
  train_source = eval_source = None
  if d.get("image_dir"):
    d = _prepare_from_images(d, workdir)
  if d.dataset == "demo":
    n_eval = int(d.num_eval_images)
    images = demo_data.make_demo_dataset(
        gen_vars, model_cfg, int(d.num_demo_images) + n_eval, seed=cfg.seed,
        resolution=d.resolution)
    train_source = data_lib.ArraySource(images[n_eval:])
    eval_source = data_lib.ArraySource(images[:n_eval]) if n_eval else None
  elif d.dataset == "fashion_mnist":
    train_source = data_lib.ArraySource(
        fashion_mnist.load("train", d.data_dir, size=d.resolution)[0])
    if d.eval_split and d.num_eval_images:
      # Test images other than the 300 shipped with the package, which the
      # demo and the reconstruction metrics hold out.
      test = fashion_mnist.load("test", d.data_dir, size=d.resolution)[0]
      keep = embedded.fashion_other_test_indices(len(test))
      eval_source = data_lib.ArraySource(test[keep[:int(d.num_eval_images)]])
  else:
    train_source = data_lib.open_source(d, d.train_split)
    if d.eval_split and d.num_eval_images:
      try:
        eval_source = _Head(data_lib.open_source(d, d.eval_split),
                            int(d.num_eval_images))
      except (FileNotFoundError, ValueError, KeyError) as e:
        logging.warning("no evaluation: split %r of %s is not available (%s)",
                        d.eval_split, d.dataset, e)

  def iterate(start_step):
    it = data_lib.make_train_iterator(
        d, global_batch=cfg.batch_size, seed=cfg.seed, start_step=start_step,
        source=train_source)
    return (b["image"] for b in it)

  eval_batches = None
  if eval_source is not None:
    eval_batches = functools.partial(
        data_lib.make_eval_iterator, d, global_batch=cfg.batch_size,
        process_index=jax.process_index(), process_count=jax.process_count(),
        source=eval_source)
  return TrainData(iterate, eval_batches, len(train_source))


def _prepare_from_images(d, workdir):
  """Builds the TFDS dataset from data.image_dir once; reports skipped files."""
  d = ml_collections.ConfigDict(d.to_dict())
  name = d.dataset.split("/", 1)[1] if d.dataset.startswith(
      data_lib.BUILDER_NAME + "/") else "custom"
  with d.ignore_type():
    d.dataset = f"{data_lib.BUILDER_NAME}/{name}"
    d.data_dir = d.data_dir or os.path.join(os.path.abspath(workdir), "tfds")
  if d.eval_image_dir is None and d.eval_split == "test":
    d.eval_split = ""
  # One process builds (a shared data_dir is assumed); the others wait.
  report = {}
  if jax.process_index() == 0:
    _, report = data_lib.prepare_image_dataset(
        name, train=d.image_dir, test=d.eval_image_dir, data_dir=d.data_dir,
        resolution=d.resolution)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices("padinv_data_prepared")
  skipped = [f["path"] + ": " + f["reason"] for split in report.values()
             for f in split]
  if skipped:
    logging.warning("skipped %d unreadable image(s) (listed in %s):\n  %s",
                    len(skipped), os.path.join(workdir, "skipped_files.json"),
                    "\n  ".join(skipped))
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "skipped_files.json"), "w") as f:
      json.dump(report, f, indent=2)
  return d


class _Head:
  """The first n examples of a random-access source."""

  def __init__(self, source, n):
    self.source, self.n = source, min(n, len(source))

  def __len__(self):
    return self.n

  def __getitem__(self, i):
    if i >= self.n:
      raise IndexError(i)
    return self.source[i]
