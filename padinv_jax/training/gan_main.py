"""Command line of the GAN trainer (the padinv-train-gan console script).

  padinv-train-gan --config configs/gan/fashion32.py --workdir runs/fashion32
  padinv-train-gan --config configs/gan/tiny.py --workdir /tmp/t \
      --config.num_steps=100

Run again with the same workdir to resume. The config is locked: a
mistyped override fails. Bad values end with one line and exit 2.
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
flags.DEFINE_string("workdir", None, "Checkpoints, samples, logs, generator/.")
flags.DEFINE_string("coordinator_address", None,
                    "host:port of process 0 for multi-process training.")
flags.DEFINE_integer("num_processes", None, "Number of processes.")
flags.DEFINE_integer("process_id", None, "This process's index.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from padinv_jax.training import xla_flags  # pylint: disable=g-import-not-at-top
  xla_flags.add_defaults()
  import jax  # pylint: disable=g-import-not-at-top
  if FLAGS.coordinator_address or FLAGS.num_processes:
    jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address,
                               num_processes=FLAGS.num_processes,
                               process_id=FLAGS.process_id)
  from padinv_jax.training import checkpoints  # pylint: disable=g-import-not-at-top
  from padinv_jax.training import gan_trainer  # pylint: disable=g-import-not-at-top
  try:
    summary = gan_trainer.train(FLAGS.config, FLAGS.workdir)
  except (ValueError, FileNotFoundError, checkpoints.NonFiniteStateError,
          checkpoints.CorruptCheckpointsError) as e:
    print(f"padinv-train-gan: error: {' '.join(str(e).split())}",
          file=sys.stderr)
    sys.exit(2)
  except KeyboardInterrupt:
    print("padinv-train-gan: interrupted; resume with the same command "
          "(the last checkpoint is kept)", file=sys.stderr)
    sys.exit(130)
  if jax.process_index() == 0:
    print(json.dumps(summary, indent=2))
    print(f"outputs in {os.path.abspath(FLAGS.workdir)} (generator/, "
          "samples/, log.jsonl, tensorboard/, checkpoints/)")


def run():
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main)


if __name__ == "__main__":
  run()
