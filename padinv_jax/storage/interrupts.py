"""SIGTERM and Ctrl-C as exceptions, so temporary folders are removed on the way out.

Writers here stage their output in a temporary sibling and rename it into
place; a signal that kills the process outright would leave the sibling
behind. ``terminate_as_interrupt`` turns SIGTERM into ``Terminated`` (a
KeyboardInterrupt) for the duration of a command, so the ``finally`` blocks
run; the command then exits 130 with one line.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys


class Terminated(KeyboardInterrupt):
  """SIGTERM arrived."""


def _raise(signum, frame):
  del signum, frame
  raise Terminated()


@contextlib.contextmanager
def _handling(signals, handler):
  """``handler`` for ``signals`` inside the block; the old ones after."""
  try:
    old = {s: signal.signal(s, handler) for s in signals}
  except ValueError:  # not the main thread: leave signals alone
    yield
    return
  try:
    yield
  finally:
    for s, h in old.items():
      signal.signal(s, h)


def terminate_as_interrupt():
  """SIGTERM raises Terminated (a KeyboardInterrupt) inside the block."""
  return _handling((signal.SIGTERM,), _raise)


_CLEANUPS = []


def register_cleanup(fn):
  """Run fn if the process is ended by exit_on_signals' handler."""
  _CLEANUPS.append(fn)


def unregister_cleanup(fn):
  if fn in _CLEANUPS:
    _CLEANUPS.remove(fn)


@contextlib.contextmanager
def exit_on_signals(message: str):
  """SIGTERM / SIGINT: run the registered cleanups, print one line, exit 130.

  An exception raised from a signal handler can land inside a garbage-
  collector callback (JAX registers one), where Python ignores it and the
  command runs on; doing the cleanup and the exit in the handler itself is
  reliable.
  """
  def handler(signum, frame):
    del signum, frame
    for fn in reversed(list(_CLEANUPS)):
      try:
        fn()
      except Exception:  # pylint: disable=broad-except
        pass
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
    os._exit(EXIT_INTERRUPTED)  # pylint: disable=protected-access

  with _handling((signal.SIGTERM, signal.SIGINT), handler):
    yield


EXIT_INTERRUPTED = 130
