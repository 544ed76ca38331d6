"""Sampling profiles of running server processes with py-spy, summed into a short table.

    with sampling(pids, seconds=8) as profile:   # py-spy record on each pid, in the background
        run_load(...)
    print(profile.table(top=25))

py-spy reads the processes from outside (ptrace), so the server runs unchanged, gunicorn's own
code included. Each process is recorded in py-spy's raw format (one line per distinct stack,
`frame;frame;...;frame COUNT`, outermost first), idle samples left out (`py-spy record` without
--idle), then every worker's lines are added up. The table gives, per function, its **own**
share (samples where it was the innermost frame) and its **total** share (samples where it was
anywhere on the stack, counted once per sample), as a share of the busy samples.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from harness import BIN, ROOT, HarnessError

LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
# `function (path/to/file.py:123)`: drop the line number so a function counts as one.
FRAME = re.compile(r"^(?P<name>.*) \((?P<path>[^()]*?)(?::\d+)?\)$")


def py_spy() -> str:
    """The py-spy command (a dev dependency), or HarnessError saying how to get it."""
    candidate = BIN / "py-spy"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("py-spy")
    if found:
        return found
    raise HarnessError("py-spy is not installed: `make install-dev` installs it (a dev dependency)")


def short_frame(frame: str) -> str:
    """`request_reset (service/resets/requests.py)`: the function and its file, the file relative
    to the project or to site-packages, without the line."""
    match = FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match.group("path")
    for marker in ("site-packages/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    else:
        path = path.removeprefix(str(ROOT) + "/")
    return f"{match.group('name')} ({path})"


@dataclass
class Profile:
    """Stacks sampled from some processes, added up."""

    stacks: Counter[tuple[str, ...]] = field(default_factory=Counter)

    def add_raw(self, text: str) -> None:
        for line in text.splitlines():
            match = LINE.match(line.strip())
            if match:
                frames = tuple(short_frame(frame) for frame in match.group("stack").split(";") if frame)
                self.stacks[frames] += int(match.group("count"))

    @property
    def samples(self) -> int:
        return sum(self.stacks.values())

    def shares(self) -> tuple[Counter[str], Counter[str]]:
        """(own samples, total samples) per function."""
        own: Counter[str] = Counter()
        total: Counter[str] = Counter()
        for frames, count in self.stacks.items():
            if not frames:
                continue
            own[frames[-1]] += count
            for name in set(frames):
                total[name] += count
        return own, total

    def table(self, top: int = 25) -> str:
        """Two tables: the functions with the most own time, and with the most total time."""
        samples = self.samples
        if not samples:
            return "(no samples: was the process busy?)"
        own, total = self.shares()
        lines = [f"{samples} busy samples; own = innermost frame, total = anywhere on the stack", "",
                 f"{'own %':>6} {'total %':>8}  function (file), by own time"]
        for name, count in own.most_common(top):
            lines.append(f"{100 * count / samples:6.1f} {100 * total[name] / samples:8.1f}  {name}")
        # Frames on (nearly) every stack are the server's main loop: nothing to learn from them.
        inner = [(name, count) for name, count in total.most_common() if count < 0.95 * samples]
        lines += ["", f"{'total %':>8} {'own %':>6}  function (file), by total time (frames on >= 95% of stacks left out)"]
        for name, count in inner[:top]:
            lines.append(f"{100 * count / samples:8.1f} {100 * own[name] / samples:6.1f}  {name}")
        return "\n".join(lines)


@contextmanager
def sampling(pids: list[int], seconds: float, rate: int = 250) -> Iterator[Profile]:
    """Record each pid with py-spy for `seconds` while the block runs; the Profile fills in
    when the block ends (py-spy is waited for)."""
    command = py_spy()
    profile = Profile()
    with tempfile.TemporaryDirectory(prefix="resetdesk-pyspy-") as tmp:
        recorders: list[tuple[subprocess.Popen[bytes], Path]] = []
        try:
            for pid in pids:
                out = Path(tmp) / f"{pid}.txt"
                recorders.append((subprocess.Popen(
                    [command, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
                     "--rate", str(rate), "--format", "raw", "--output", str(out), "--nonblocking"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                ), out))
            yield profile
        finally:
            for process, out in recorders:
                try:
                    _, errors = process.communicate(timeout=seconds + 30)
                except subprocess.TimeoutExpired:
                    process.terminate()
                    _, errors = process.communicate()
                if out.exists():
                    profile.add_raw(out.read_text(errors="replace"))
                elif process.returncode:
                    raise HarnessError(f"py-spy failed: {errors.decode(errors='replace')[-500:]}")
