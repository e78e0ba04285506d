"""The converter's error types: each one is shown to people as one line."""


class ConvertError(Exception):
  """A file cannot be converted; the message says what, where and what to do."""


class UnsafePickleError(ConvertError):
  """The pickle asks to run something a weight file has no business running."""


class CorruptFileError(ConvertError):
  """The file is not a readable pickle / PyTorch file (truncated, damaged)."""


class MismatchError(ConvertError):
  """The weights do not fit the target network (missing, extra, mis-shaped)."""
