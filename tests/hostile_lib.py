"""Helpers for the hostile-input tests: capped subprocesses, crafted files."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
import zipfile
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rss_mb(pid: int) -> float:
  try:
    with open(f"/proc/{pid}/status") as f:
      for line in f:
        if line.startswith("VmRSS:"):
          return int(line.split()[1]) / 1024
  except OSError:
    pass
  return 0.0


def run_capped(args, cap_mb: float, timeout: float = 300, env=None):
  """Run a command, killing it if its RSS passes cap_mb (so a regression
  fails the test instead of exhausting the machine).

  Returns:
    (returncode, stdout, stderr, peak RSS in MB, killed_for_memory).
  """
  env = dict(os.environ if env is None else env)
  env.setdefault("JAX_PLATFORMS", "cpu")
  env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
  proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=env, cwd=ROOT, text=True)
  peak, killed, t0 = 0.0, False, time.time()
  while proc.poll() is None:
    peak = max(peak, _rss_mb(proc.pid))
    if peak > cap_mb:
      proc.kill()
      killed = True
      break
    if time.time() - t0 > timeout:
      proc.kill()
      break
    time.sleep(0.02)
  out, err = proc.communicate()
  return proc.returncode, out, err, peak, killed


def python(code: str):
  return [sys.executable, "-c", code]


def lying_zip(src, dst, member: str, payload_size: int):
  """Copy torch zip ``src`` to ``dst`` with ``member`` replaced by
  payload_size zero bytes, deflated, whose sizes in both the local header
  and the central directory claim file_size == compress_size (as an
  attacker writes them). Streamed: no payload-sized buffer here.
  """
  with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
    for info in zin.infolist():
      if info.filename != member:
        zout.writestr(info, zin.read(info))
    zi = zipfile.ZipInfo(member)
    zi.compress_type = zipfile.ZIP_DEFLATED
    with zout.open(zi, "w", force_zip64=False) as f:
      block = b"\0" * (1 << 20)
      for _ in range(payload_size >> 20):
        f.write(block)
  data = bytearray(open(dst, "rb").read())
  name = member.encode()
  i = data.find(b"PK\x03\x04")
  while i >= 0:
    n = struct.unpack_from("<H", data, i + 26)[0]
    if data[i + 30:i + 30 + n] == name:
      # Streamed entries keep sizes in a data descriptor (flag bit 3):
      # write the lie into the header and the descriptor alike.
      csize = struct.unpack_from("<I", data, i + 18)[0]
      struct.pack_into("<I", data, i + 22, csize)
      break
    i = data.find(b"PK\x03\x04", i + 4)
  j = data.find(b"PK\x01\x02")
  while j >= 0:
    n = struct.unpack_from("<H", data, j + 28)[0]
    if data[j + 46:j + 46 + n] == name:
      csize = struct.unpack_from("<I", data, j + 20)[0]
      struct.pack_into("<I", data, j + 24, csize)
      break
    j = data.find(b"PK\x01\x02", j + 4)
  d = data.find(b"PK\x07\x08")
  if d >= 0:
    csize = struct.unpack_from("<I", data, d + 8)[0]
    struct.pack_into("<I", data, d + 12, csize)
  open(dst, "wb").write(bytes(data))


def png_bomb(path, side: int = 12000):
  """A valid grey PNG of side x side zeros: ~140 KB declaring side^2 px."""
  def chunk(kind, body):
    return (struct.pack(">I", len(body)) + kind + body +
            struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
  comp = zlib.compressobj(9)
  row = b"\x00" * (side + 1)
  idat = bytearray()
  for _ in range(side):
    idat += comp.compress(row)
  idat += comp.flush()
  ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
  with open(path, "wb") as f:
    f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) +
            chunk(b"IDAT", bytes(idat)) + chunk(b"IEND", b""))
