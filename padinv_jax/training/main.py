"""Command line of the trainer (train.py and the padinv-train console script).

  padinv-train --config configs/tiny.py --workdir demo_out
  padinv-train --config configs/ffhq1024.py --workdir runs/x \
      --config.batch_size=32 --config.data.path=/data/ffhq

The config is locked: a mistyped override fails instead of being ignored.
Multi-host: pass --coordinator_address, --num_processes and --process_id
(or set JAX's usual environment variables on a managed cluster).
"""

from __future__ import annotations

import json
import os
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "Path to a config file with get_config().",
    lock_config=True)
flags.DEFINE_string("workdir", None, "Where checkpoints, logs and grids go.")
flags.DEFINE_string("coordinator_address", None,
                    "host:port of process 0 for multi-process training.")
flags.DEFINE_integer("num_processes", None, "Number of processes.")
flags.DEFINE_integer("process_id", None, "This process's index.")
flags.DEFINE_integer("local_device_count", None,
                     "CPU only: fake this many local devices (tests).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if FLAGS.local_device_count:
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               " --xla_force_host_platform_device_count="
                               f"{FLAGS.local_device_count}")
  from padinv_jax.training import xla_flags  # pylint: disable=g-import-not-at-top
  xla_flags.add_defaults()
  import jax  # pylint: disable=g-import-not-at-top
  if FLAGS.coordinator_address or FLAGS.num_processes:
    jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address,
                               num_processes=FLAGS.num_processes,
                               process_id=FLAGS.process_id)
  from padinv_jax.training import checkpoints  # pylint: disable=g-import-not-at-top
  from padinv_jax.training import trainer  # pylint: disable=g-import-not-at-top
  try:
    final = trainer.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except (ValueError, FileNotFoundError, checkpoints.NonFiniteStateError,
          checkpoints.CorruptCheckpointsError) as e:
    print(f"padinv-train: error: {' '.join(str(e).split())}", file=sys.stderr)
    sys.exit(2)
  except KeyboardInterrupt:
    print("padinv-train: interrupted; resume with the same command (the last "
          "checkpoint is kept)", file=sys.stderr)
    sys.exit(130)
  if jax.process_count() > 1:
    # Reach the coordination service's shutdown barrier together: a process
    # that finishes minutes before the others (process 0 writes the logs)
    # otherwise times it out on a busy host.
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices("padinv_train_done")
  if jax.process_index() == 0:
    summary = {k: v for k, v in final.items() if k != "history"}
    if final["history"]:
      summary["first_loss"] = final["history"][0]["loss"]
      summary["last_loss"] = final["history"][-1]["loss"]
    print(json.dumps(summary, indent=2))
    print(f"outputs in {os.path.abspath(FLAGS.workdir)} (model/, grid.png, "
          "final_metrics.json, tensorboard/, checkpoints/)")
  if jax.process_count() > 1:
    jax.distributed.shutdown()


def _config_import_path(argv):
  """Lets variant configs `from configs import base` from anywhere."""
  paths = [os.getcwd()]
  for i, a in enumerate(argv):
    path = None
    if a.startswith("--config="):
      path = a.split("=", 1)[1]
    elif a == "--config" and i + 1 < len(argv):
      path = argv[i + 1]
    if path:
      paths.append(os.path.dirname(os.path.dirname(os.path.abspath(path))))
  for p in paths:
    if p not in sys.path:
      sys.path.insert(0, p)


def run():
  _config_import_path(sys.argv)
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main)


if __name__ == "__main__":
  run()
