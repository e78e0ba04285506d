"""SIGTERM and Ctrl-C as exceptions, so temporary folders are removed on the way out.

Writers here stage their output in a temporary sibling and rename it into
place; a signal that kills the process outright would leave the sibling
behind. ``terminate_as_interrupt`` turns SIGTERM into ``Terminated`` (a
KeyboardInterrupt) for the duration of a command, so the ``finally`` blocks
run; the command then exits 130 with one line.
"""

from __future__ import annotations

import contextlib
import signal


class Terminated(KeyboardInterrupt):
  """SIGTERM arrived."""


def _raise(signum, frame):
  del signum, frame
  raise Terminated()


@contextlib.contextmanager
def terminate_as_interrupt():
  try:
    old = signal.signal(signal.SIGTERM, _raise)
  except ValueError:  # not the main thread: leave signals alone
    yield
    return
  try:
    yield
  finally:
    signal.signal(signal.SIGTERM, old)


EXIT_INTERRUPTED = 130
