"""Input pipeline: batch iterators over prepared images, and mesh prefetch.

API
  prepare_image_dataset(name, train=..., test=None, data_dir=None,
                        resolution=256) -> (builder, report)
      (padinv_jax.data.tfds_images, re-exported) Decode every image under a
      folder or inside a zip (FFHQ, CelebA-HQ test, LSUN exported to images),
      preprocess it exactly as the original (padinv_jax.data.preprocess: RGB,
      centre square crop, cv2-INTER_AREA resize) and store 256 x 256 uint8
      PNGs in an ArrayRecord TFDS dataset "padinv_images/<name>" (random
      access). Unreadable files are skipped, never fatal: they are listed in
      a warning, in the returned report and in the dataset's metadata.json.
      Also `python -m padinv_jax.data --name ffhq --train DIR_OR_ZIP ...`.
  default_data_config() -> ConfigDict   (the `config.data` fields below)
  open_source(data_config, split) -> random-access source of uint8 images
  make_train_iterator(data_config, *, global_batch, process_index,
                      process_count, seed, start_step, source=None)
      -> iterator of this process's batches {"image": float32 [B, R, R, 3] in
         [-1, 1], "index": int32 [B]}, B = global_batch / process_count.
  make_eval_iterator(data_config, *, global_batch, ...) -> a fixed-order pass
      over the held-out split, {"image", "index", "mask"}; the last batch is
      padded to full size with mask 0 (index -1) so shapes stay static.
  prefetch_to_mesh(iterator, mesh_or_sharding, size=2) -> global jax.Arrays
      sharded along 'data' (jax.make_array_from_process_local_data).

Data position (resume). The batch of step s is a pure function of (seed, s):
the stream of examples is epoch 0's permutation, then epoch 1's, ... of the
M = N (or 2N mirrored) virtual indices, each permutation an argsort of a
splitmix64 hash of (seed, epoch, index) -- numpy- and platform-independent.
Step s takes stream positions [s G, (s + 1) G) (G the global batch) and
process p the rows [p B, (p + 1) B) of it. Resuming at step s is
`make_train_iterator(..., start_step=s)`; nothing else needs saving. With
2 processes the slices concatenate to the 1-process global batch, which is
also the row order of the global array when the mesh is built from
jax.devices() (devices sorted by process).

Mirroring (FFHQ recipe, `mirror=True`): virtual index i >= N is example
i - N flipped left-right; no random flips. LSUN: `mirror=False`.

Sources. Batches read source[i]["image"] (uint8 [R, R, 3]) from a TFDS
ArrayRecord data source (tfds.testing.mock_data works too) or from memory
(ArraySource, e.g. the demo images of padinv_jax.data.demo_data); examples of
another size are preprocessed on the fly. After the source every path is the
same: mirror, then float32 x / 255 * 2 - 1 on the host (the original's
order and float32 ops). `num_workers` host threads build `host_prefetch`
batches ahead.
"""

from __future__ import annotations

import collections
import concurrent.futures
import threading
from typing import Iterator, Optional

import jax
import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from padinv_jax.data import preprocess
from padinv_jax.data.tfds_images import BUILDER_NAME
from padinv_jax.data.tfds_images import image_builder
from padinv_jax.data.tfds_images import prepare_image_dataset  # noqa: F401 (API)



def default_data_config() -> ml_collections.ConfigDict:
  """The data part of a training config (`config.data`)."""
  c = ml_collections.ConfigDict()
  # "padinv_images/<name>" (made by prepare_image_dataset), any other TFDS
  # name with an "image" feature, or "demo" (images passed in as `source`).
  c.dataset = "padinv_images/ffhq"
  c.data_dir = ml_collections.FieldReference(None, field_type=str)
  c.train_split = "train"
  c.eval_split = "test"  # e.g. "train[-500:]" to hold out part of train
  c.resolution = 256
  c.mirror = True  # FFHQ: True (doubled); LSUN: False
  c.num_workers = 4  # host threads assembling batches
  c.host_prefetch = 4  # batches prepared ahead on the host
  return c


# -- random-access sources -----------------------------------------------------


class ArraySource:
  """Images held in memory (the demo dataset), indexable like a data source."""

  def __init__(self, images: np.ndarray):
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
      raise ValueError(f"ArraySource expects uint8 [N, H, W, 3], got "
                       f"{images.dtype} {images.shape}")
    self.images = images

  def __len__(self):
    return len(self.images)

  def __getitem__(self, key):
    return {"image": self.images[key]}


def open_source(data_config, split: str):
  """A random-access source (len, [i]) of {"image": uint8 [R, R, 3]} examples."""
  name = data_config.dataset
  if name == "demo":
    raise ValueError("dataset 'demo' has no files: build the images with "
                     "padinv_jax.data.demo_data.make_demo_dataset and pass "
                     "source=ArraySource(images)")
  if name.startswith(BUILDER_NAME + "/"):
    builder = image_builder(name.split("/", 1)[1],
                            data_dir=data_config.data_dir,
                            resolution=data_config.resolution)
  else:
    builder = tfds.builder(name, data_dir=data_config.data_dir)
  try:
    return builder.as_data_source(split)
  except (AssertionError, FileNotFoundError, KeyError) as e:
    raise FileNotFoundError(
        f"TFDS dataset {name!r} split {split!r} is not prepared under "
        f"data_dir={data_config.data_dir!r} ({e}). Prepare it first: python "
        f"-m padinv_jax.data.pipeline --name NAME --train DIR_OR_ZIP [--test ...] "
        f"--data_dir DIR") from e


def _load(source, indices, num_real, resolution):
  """uint8 [len(indices), R, R, 3]; virtual index >= num_real is mirrored."""
  real = [int(i) % num_real for i in indices]
  # One record at a time: tfds' mock data sources break __getitems__, and
  # batches are assembled by several threads anyway (concurrent reads of an
  # ArrayRecord source are safe: checked with 8 threads).
  examples = [source[k] for k in real]
  out = np.empty((len(real), resolution, resolution, 3), np.uint8)
  for j, (i, ex) in enumerate(zip(indices, examples)):
    img = np.asarray(ex["image"])
    if img.shape != (resolution, resolution, 3):
      img = preprocess.preprocess(_as_rgb(img, i), resolution)
    out[j] = img[:, ::-1] if i >= num_real else img
  return out


def _as_rgb(img, i):
  if img.ndim == 3 and img.shape[-1] == 1:
    img = np.repeat(img, 3, axis=-1)
  if img.ndim != 3 or img.shape[-1] != 3 or img.dtype != np.uint8:
    raise ValueError(f"example {i}: expected a uint8 RGB image, got "
                     f"{img.dtype} {img.shape}")
  return img


# -- deterministic order -------------------------------------------------------


def _splitmix64(x: np.ndarray) -> np.ndarray:
  x = x + np.uint64(0x9E3779B97F4A7C15)
  x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
  x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
  return x ^ (x >> np.uint64(31))


def epoch_permutation(seed: int, epoch: int, size: int) -> np.ndarray:
  """The order of `size` virtual indices in `epoch` (a pure function)."""
  with np.errstate(over="ignore"):
    key = _splitmix64(np.array([seed & (2**64 - 1)], np.uint64))
    key = _splitmix64(key ^ np.array([epoch], np.uint64))
    h = _splitmix64(np.arange(size, dtype=np.uint64) ^ key)
  return np.argsort(h, kind="stable").astype(np.int64)


class _Order:
  """Virtual index at any stream position, caching two epochs."""

  def __init__(self, seed, size):
    self.seed, self.size = seed, size
    self.cache = collections.OrderedDict()
    self.lock = threading.Lock()

  def perm(self, epoch):
    with self.lock:
      if epoch not in self.cache:
        self.cache[epoch] = epoch_permutation(self.seed, epoch, self.size)
        while len(self.cache) > 2:
          self.cache.popitem(last=False)
      return self.cache[epoch]

  def at(self, start, count):
    pos = np.arange(start, start + count, dtype=np.int64)
    out = np.empty(count, np.int64)
    for e in np.unique(pos // self.size):
      sel = pos // self.size == e
      out[sel] = self.perm(int(e))[pos[sel] % self.size]
    return out


# -- iterators -----------------------------------------------------------------


def _process_args(global_batch, process_index, process_count):
  pi = jax.process_index() if process_index is None else process_index
  pc = jax.process_count() if process_count is None else process_count
  if global_batch % pc:
    raise ValueError(f"global batch {global_batch} is not divisible by the "
                     f"{pc} processes; pick a multiple of {pc}")
  if not 0 <= pi < pc:
    raise ValueError(f"process_index {pi} not in [0, {pc})")
  return pi, pc, global_batch // pc


class TrainIterator:
  """This process's training batches from `start_step` on (see module doc)."""

  def __init__(self, source, *, global_batch, process_index, process_count,
               seed, start_step, mirror, resolution, num_workers=4,
               host_prefetch=4):
    self.source = source
    self.num_real = len(source)
    if self.num_real == 0:
      raise ValueError("the training split has no images")
    self.size = 2 * self.num_real if mirror else self.num_real
    self.process_index, self.process_count, self.local_batch = _process_args(
        global_batch, process_index, process_count)
    self.global_batch, self.resolution = global_batch, resolution
    self.order = _Order(seed, self.size)
    self.step = start_step  # the step of the next batch returned
    self._next_submit = start_step
    self._pending = collections.deque()
    self._depth = max(1, host_prefetch)
    self._pool = concurrent.futures.ThreadPoolExecutor(max(1, num_workers))

  def indices(self, step: int) -> np.ndarray:
    """This process's virtual indices for `step` (>= N means mirrored)."""
    start = step * self.global_batch + self.process_index * self.local_batch
    return self.order.at(start, self.local_batch)

  def batch(self, step: int) -> dict:
    """The batch of `step`, computed directly (what __next__ returns)."""
    idx = self.indices(step)
    images = _load(self.source, idx, self.num_real, self.resolution)
    return {"image": preprocess.normalize(images),
            "index": idx.astype(np.int32)}

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    while len(self._pending) < self._depth:
      self._pending.append(self._pool.submit(self.batch, self._next_submit))
      self._next_submit += 1
    out = self._pending.popleft().result()
    self.step += 1
    return out

  def close(self):
    """Stop the loader threads (batches in flight are dropped)."""
    self._pool.shutdown(wait=False, cancel_futures=True)

  def __del__(self):
    pool = getattr(self, "_pool", None)
    if pool is not None:
      pool.shutdown(wait=False, cancel_futures=True)


def make_train_iterator(data_config, *, global_batch: int,
                        process_index: Optional[int] = None,
                        process_count: Optional[int] = None, seed: int = 0,
                        start_step: int = 0, source=None) -> TrainIterator:
  """Endless shuffled batches for this process, resumable at any step.

  Args:
    data_config: `config.data` (see default_data_config).
    global_batch: batch over all processes (64 in the paper's recipes).
    process_index: this process (default jax.process_index()).
    process_count: number of processes (default jax.process_count()).
    seed: data order seed.
    start_step: the step of the first batch returned (resume).
    source: optional random-access source (ArraySource for the demo);
      default opens data_config.train_split of data_config.dataset.

  Returns:
    A TrainIterator yielding {"image": float32 [B, R, R, 3] in [-1, 1],
    "index": int32 [B]} with B = global_batch / process_count.
  """
  if source is None:
    source = open_source(data_config, data_config.train_split)
  return TrainIterator(
      source, global_batch=global_batch, process_index=process_index,
      process_count=process_count, seed=seed, start_step=start_step,
      mirror=data_config.mirror, resolution=data_config.resolution,
      num_workers=data_config.num_workers,
      host_prefetch=data_config.host_prefetch)


def make_eval_iterator(data_config, *, global_batch: int,
                       process_index: Optional[int] = None,
                       process_count: Optional[int] = None,
                       source=None) -> Iterator[dict]:
  """One fixed-order pass over the held-out split (no mirror, no shuffle).

  Args:
    data_config: `config.data`; reads data_config.eval_split.
    global_batch: evaluation batch over all processes.
    process_index: this process (default jax.process_index()).
    process_count: number of processes (default jax.process_count()).
    source: optional random-access source instead of the eval split.

  Yields:
    {"image": float32 [B, R, R, 3], "index": int32 [B] (-1 for padding),
    "mask": float32 [B] (1 real, 0 padding)}; ceil(N / global_batch)
    batches; padding rows are zeros.
  """
  if source is None:
    source = open_source(data_config, data_config.eval_split)
  pi, _, local = _process_args(global_batch, process_index, process_count)
  n, r = len(source), data_config.resolution
  for b in range(-(-n // global_batch)):
    idx = np.arange(b * global_batch + pi * local,
                    b * global_batch + (pi + 1) * local)
    valid = idx < n
    images = np.zeros((local, r, r, 3), np.uint8)
    if valid.any():
      images[valid] = _load(source, idx[valid], n, r)
    x = preprocess.normalize(images)
    x[~valid] = 0.0
    yield {"image": x,
           "index": np.where(valid, idx, -1).astype(np.int32),
           "mask": valid.astype(np.float32)}


def prefetch_to_mesh(iterator, mesh_or_sharding, size: int = 2):
  """Turn per-process numpy batches into global arrays sharded on 'data'.

  Args:
    iterator: yields pytrees of per-process numpy arrays (batch-major).
    mesh_or_sharding: a jax.sharding.Mesh with a 'data' axis (batches are
      sharded along it) or a Sharding used for every leaf.
    size: how many batches to have on the devices ahead of use.

  Yields:
    The same pytrees with jax.Arrays of global batch = local x processes.
  """
  if isinstance(mesh_or_sharding, jax.sharding.Mesh):
    sharding = jax.sharding.NamedSharding(
        mesh_or_sharding, jax.sharding.PartitionSpec("data"))
  else:
    sharding = mesh_or_sharding
  queue = collections.deque()

  def put(batch):
    return jax.tree_util.tree_map(
        lambda x: jax.make_array_from_process_local_data(sharding,
                                                          np.asarray(x)),
        batch)

  for batch in iterator:
    queue.append(put(batch))
    if len(queue) > size:
      yield queue.popleft()
  while queue:
    yield queue.popleft()

