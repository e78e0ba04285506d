"""(in progress)"""


def detect(obj):
  del obj
  return None
