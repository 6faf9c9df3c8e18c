"""What the benchmark checks and shows before it measures: the Redis databases it may
empty, the disk a data set needs, the data-set build's progress, and the S/L comparison.

Kept apart from ``bench.py`` (the measuring) so that each piece can be tested on its own
(tests/test_bench_prep.py).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

# Written into each Redis database the benchmark uses, right after it empties it. A
# database holding keys but not this one is somebody else's: the benchmark refuses it.
OWNER_KEY = "levy:bench:owner"

# The size of a data set's template database on PostgreSQL 15, measured (docs/performance.md);
# the work database is a copy of it that grows a little during the run.
TEMPLATE_GB = {"S": 0.7, "L": 6.5}
WORK_GROWTH = 1.05
# How long a first build took on the 2-core development machine, before any build of this
# machine's own is on record.
EXPECTED_BUILD_S = {"S": 60.0, "L": 1410.0}


class PrepError(Exception):
    """A reason not to start; bench.py reports it as BENCHMARK FAILED."""


# --- Redis -----------------------------------------------------------------------------------


def claim_redis(redis_url: str, databases: Iterable[int], *, hint: str) -> None:
    """Empty each database for the run, unless one holds keys the benchmark did not write.

    Checked for every database before any is emptied, so a refusal empties nothing.
    """
    import redis

    clients = {db: redis.Redis.from_url(f"{redis_url}/{db}") for db in databases}
    foreign = {
        db: client.dbsize() for db, client in clients.items() if client.dbsize() and not client.exists(OWNER_KEY)
    }
    if foreign:
        listed = ", ".join(f"database {db} holds {n:,} keys" for db, n in sorted(foreign.items()))
        raise PrepError(
            f"Redis at {redis_url}: {listed} that the benchmark did not write. A run empties the databases it"
            f" uses, so it will not take these: {hint}, or empty them yourself if they are a benchmark's"
            " leftovers (redis-cli -n <db> flushdb)."
        )
    for client in clients.values():
        client.flushdb()
        client.set(OWNER_KEY, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


# --- disk --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DiskPlan:
    directory: str
    free_gb: float
    needed_gb: float
    template_exists: bool

    @property
    def enough(self) -> bool:
        return self.free_gb >= self.needed_gb

    def describe(self, size: str, keep: bool) -> str:
        kept = "kept after the run (--keep-database)" if keep else "dropped at the end of the run"
        build = (
            "" if self.template_exists else f"the template (about {TEMPLATE_GB[size]:.1f} GB, kept for later runs) and "
        )
        return (
            f"disk: data set {size} needs about {self.needed_gb:.1f} GB in {self.directory} for {build}the work"
            f" database ({kept}); {self.free_gb:.1f} GB free"
        )


def disk_plan(*, size: str, data_directory: str, template_bytes: int | None) -> DiskPlan:
    """The space a run will take: the work database (a copy of the template), plus the
    template itself when it has to be built."""
    template_gb = template_bytes / 1024**3 if template_bytes is not None else TEMPLATE_GB[size]
    needed = template_gb * WORK_GROWTH + (0 if template_bytes is not None else template_gb)
    free = shutil.disk_usage(data_directory).free / 1024**3
    return DiskPlan(data_directory, free, needed, template_bytes is not None)


# --- the data set's build ------------------------------------------------------------------------

STEP_LINE = re.compile(r"^\[(?P<done>\d+)/(?P<total>\d+)\]\s+(?P<label>.*?)\s{2,}")


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    minutes, secs = divmod(seconds, 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class BuildProgress:
    """The progress bar of a data-set build, from the generator's ``[done/total]`` lines.

    The estimate of the time left uses the step times of this machine's previous build of
    the same size when there is one (``results/dataset-<size>-steps.json``), else the
    steps done so far, else the expected total of a first build.
    """

    def __init__(self, size: str, history: Path, *, out: IO[str], clock: Callable[[], float] = time.monotonic) -> None:
        self.size = size
        self.history = history
        self.out = out
        self.clock = clock
        self.started = clock()
        self.done = 0
        self.total = 0
        self.label = "starting"
        self.step_times: list[float] = []
        self._step_started = self.started
        self.previous: list[float] | None = self._load_history()

    def _load_history(self) -> list[float] | None:
        try:
            data = json.loads(self.history.read_text())
        except (OSError, ValueError):
            return None
        steps = data.get("step_seconds")
        return [float(s) for s in steps] if isinstance(steps, list) and steps else None

    def feed(self, line: str) -> bool:
        match = STEP_LINE.match(line)
        if not match:
            return False
        now = self.clock()
        self.step_times.append(now - self._step_started)
        self._step_started = now
        self.done, self.total, self.label = int(match["done"]), int(match["total"]), match["label"]
        return True

    def remaining(self) -> float | None:
        elapsed = self.clock() - self.started
        if self.previous and self.total == len(self.previous) and self.done:
            # Scale the previous build's remaining steps by how this build compares so far.
            so_far = sum(self.previous[: self.done]) or 1e-9
            return sum(self.previous[self.done :]) * (sum(self.step_times) / so_far) - (
                self.clock() - self._step_started
            )
        if self.done and self.total:
            return elapsed / self.done * (self.total - self.done)
        return EXPECTED_BUILD_S[self.size] - elapsed

    def line(self, width: int = 30) -> str:
        fraction = self.done / self.total if self.total else 0.0
        filled = int(fraction * width)
        left = self.remaining()
        eta = "?" if left is None else f"about {format_duration(max(left, 0))} left"
        steps = f"{self.done}/{self.total or '?'} steps"
        elapsed = format_duration(self.clock() - self.started)
        return f"    [{'#' * filled}{'.' * (width - filled)}] {steps}, {elapsed} elapsed, {eta} (after: {self.label})"

    def save(self) -> None:
        if self.total and self.done == self.total:
            self.history.parent.mkdir(parents=True, exist_ok=True)
            self.history.write_text(json.dumps({"size": self.size, "step_seconds": self.step_times}) + "\n")


def run_with_progress(argv: list[str], *, env: dict[str, str], cwd: Path, log: Path, progress: BuildProgress) -> int:
    """Run the generator, copying its output to ``log`` and drawing the progress bar on the
    terminal: redrawn every second on a terminal, one line per step otherwise."""
    tty = progress.out.isatty()
    stop = threading.Event()
    lock = threading.Lock()

    def draw(final: bool = False) -> None:
        with lock:
            if tty:
                progress.out.write("\r" + progress.line() + ("\n" if final else ""))
            else:
                progress.out.write(progress.line() + "\n")
            progress.out.flush()

    def tick() -> None:
        while not stop.wait(1.0):
            draw()

    ticker = threading.Thread(target=tick, daemon=True) if tty else None
    with log.open("a") as out:
        process = subprocess.Popen(  # noqa: S603 - our own manage.py
            argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        if ticker:
            ticker.start()
        assert process.stdout is not None
        for line in process.stdout:
            out.write(line)
            out.flush()
            if progress.feed(line) and not tty:
                draw()
        code = process.wait()
    stop.set()
    if ticker:
        ticker.join()
        draw(final=True)
    if code == 0:
        progress.save()
    return code


# --- S against L -----------------------------------------------------------------------------


def compare(s_result: dict[str, Any], l_result: dict[str, Any], labels: dict[str, str]) -> list[str]:
    """The p95 of each operation at S and at L and their ratio, from the two JSON results."""

    def source(result: dict[str, Any]) -> str:
        git = result.get("git", {})
        edits = " + uncommitted changes" if git.get("uncommitted_changes") else ""
        return f"{result.get('started_at', '?')}, commit {str(git.get('commit', '?'))[:12]}{edits}"

    lines = [f"S: {source(s_result)}", f"L: {source(l_result)}"]
    if s_result.get("git", {}).get("commit") != l_result.get("git", {}).get("commit"):
        lines.append("NOTE: the two runs measured different commits")
    header = f"{'operation':<44}{'S p95':>8}{'L p95':>8}{'L/S':>7}"
    lines += ["", header, "-" * len(header)]
    for key, label in labels.items():
        s = (s_result.get("latency", {}).get(key) or {}).get("p95_ms")
        large = (l_result.get("latency", {}).get(key) or {}).get("p95_ms")
        ratio = f"{large / s:7.2f}" if s and large else f"{'-':>7}"
        s_text = f"{s:8.1f}" if s else f"{'-':>8}"
        l_text = f"{large:8.1f}" if large else f"{'-':>8}"
        lines.append(f"{label:<44}{s_text}{l_text}{ratio}")
    return lines


def compare_files(results: Path, labels: dict[str, str]) -> int:
    paths = {size: results / f"bench-{size}.json" for size in ("S", "L")}
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing:
        print(f"nothing to compare: {', '.join(missing)} missing (make bench runs S, then L)", file=sys.stderr)
        return 1
    data = {size: json.loads(path.read_text()) for size, path in paths.items()}
    for line in compare(data["S"], data["L"], labels):
        print(line)
    return 0
