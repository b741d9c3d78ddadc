"""Summarise a py-spy ``--format raw`` (folded stacks) profile as text:
samples per thread, and the top functions by self and by inclusive time.

    python -m tests.bench.pyspy_top PROFILE.folded [--top 25] [--match TEXT]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>[^:()]+)(?::(?P<line>\d+))?\)$")


def _name(frame: str) -> str:
    """``fn (path/to/file.py:12)`` -> ``fn (file.py)`` without the line."""
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m["file"]
    for marker in ("site-packages/", "python3.11/", "python3.12/", "python3.13/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{m['fn']} ({path})"


def summarise(path: Path, top: int, match: str | None) -> str:
    threads: Counter[str] = Counter()
    self_t: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        frames = stack.split(";")
        thread = re.sub(r"\(\d+\)", "", frames[0]).strip()
        frames = frames[1:]
        if match and not any(match in f for f in frames):
            continue
        total += count
        threads[thread] += count
        names = [_name(f) for f in frames]
        if names:
            self_t[names[-1]] += count
        for name in set(names):
            incl[name] += count
    out = [f"{path.name}: {total} samples" + (f" (stacks containing {match!r})" if match else "")]
    out.append("threads: " + ", ".join(f"{t} {c / total:.0%}" for t, c in threads.most_common()))
    out.append(f"\ntop {top} by self time:")
    out += [f"  {c / total:6.1%}  {n}" for n, c in self_t.most_common(top)]
    out.append(f"\ntop {top} by inclusive time:")
    out += [f"  {c / total:6.1%}  {n}" for n, c in incl.most_common(top)]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--match", help="only stacks with a frame containing this text")
    args = parser.parse_args()
    print(summarise(args.profile, args.top, args.match))


if __name__ == "__main__":
    main()
