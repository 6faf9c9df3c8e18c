"""What the benchmark checks before it measures: Redis databases it may empty, disk, the
data-set build's progress, and the S/L comparison (scripts/bench_prep.py)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from scripts.bench_prep import (
    OWNER_KEY,
    BuildProgress,
    PrepError,
    claim_redis,
    compare,
    disk_plan,
    run_with_progress,
)

ROOT = Path(__file__).resolve().parent.parent
REDIS = "redis://127.0.0.1:6379"
# Two databases no other test and no default configuration uses.
DB_A, DB_B = 14, 15


@pytest.fixture
def scratch_redis():
    clients = [redis.Redis.from_url(f"{REDIS}/{db}") for db in (DB_A, DB_B)]
    for client in clients:
        client.flushdb()
    yield clients
    for client in clients:
        client.flushdb()


def test_claim_redis_refuses_a_database_holding_keys_it_did_not_write(scratch_redis):
    mine, theirs = scratch_redis
    mine.set("leftover", "1")
    mine.set(OWNER_KEY, "earlier run")
    theirs.set("celery", "a queued task")
    with pytest.raises(PrepError, match=r"database 15 holds 1 keys that the benchmark did not write") as refused:
        claim_redis(REDIS, (DB_A, DB_B), hint="choose others with --cache-db")
    assert "choose others with --cache-db" in str(refused.value)
    # Nothing was emptied: neither the foreign database nor the benchmark's own.
    assert theirs.get("celery") == b"a queued task"
    assert mine.get("leftover") == b"1"


def test_claim_redis_empties_its_own_and_empty_databases_and_marks_them(scratch_redis):
    mine, empty = scratch_redis
    mine.set(OWNER_KEY, "earlier run")
    mine.set("rate:limit", "5")
    claim_redis(REDIS, (DB_A, DB_B), hint="")
    assert mine.keys() == [OWNER_KEY.encode()]
    assert empty.keys() == [OWNER_KEY.encode()]
    # Marked, so the next run may empty them again.
    empty.set("cache:key", "x")
    claim_redis(REDIS, (DB_A, DB_B), hint="")
    assert empty.dbsize() == 1


def test_disk_plan_counts_the_template_only_when_it_must_be_built(tmp_path):
    to_build = disk_plan(size="L", data_directory=str(tmp_path), template_bytes=None)
    assert to_build.needed_gb == pytest.approx(6.5 * 1.05 + 6.5)
    assert not to_build.template_exists
    built = disk_plan(size="L", data_directory=str(tmp_path), template_bytes=2 * 1024**3)
    assert built.needed_gb == pytest.approx(2 * 1.05)
    assert "the template" not in built.describe("L", keep=False)
    assert "dropped at the end of the run" in built.describe("L", keep=False)
    assert "kept after the run" in built.describe("L", keep=True)
    huge = disk_plan(size="L", data_directory=str(tmp_path), template_bytes=10**18)
    assert not huge.enough


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def step(done: int, total: int, label: str) -> str:
    return f"[{done}/{total}] {label:<38} {'':>15}     1.0s  (total    1.0s)\n"


def test_progress_estimates_from_the_steps_done_then_saves_this_build(tmp_path):
    clock, history = Clock(), tmp_path / "dataset-S-steps.json"
    progress = BuildProgress("S", history, out=io.StringIO(), clock=clock)
    assert progress.remaining() == 60.0  # nothing done yet: a first build's expected total
    assert not progress.feed("building data set S (seed 42): 5000 members\n")
    clock.now = 10.0
    assert progress.feed(step(1, 4, "users"))
    assert progress.remaining() == pytest.approx(30.0)  # 10 s a step, 3 to go
    assert "[#######.......................] 1/4 steps, 10s elapsed, about 30s left (after: users)" in progress.line()
    for n, at in ((2, 12.0), (3, 14.0), (4, 20.0)):
        clock.now = at
        progress.feed(step(n, 4, f"step {n}"))
    progress.save()
    assert json.loads(history.read_text()) == {"size": "S", "step_seconds": [10.0, 2.0, 2.0, 6.0]}


def test_progress_estimates_from_the_previous_build_of_the_same_size(tmp_path):
    history = tmp_path / "dataset-L-steps.json"
    history.write_text(json.dumps({"size": "L", "step_seconds": [100.0, 100.0, 800.0]}))
    clock = Clock()
    progress = BuildProgress("L", history, out=io.StringIO(), clock=clock)
    clock.now = 50.0  # twice as fast as last time so far
    progress.feed(step(1, 3, "users"))
    assert progress.remaining() == pytest.approx(450.0)
    clock.now = 60.0  # 10 s into the next step
    assert progress.remaining() == pytest.approx(440.0)


def test_run_with_progress_copies_the_output_and_draws_a_line_per_step(tmp_path):
    script = "import sys\nfor i in (1, 2):\n    print(f'[{i}/2] step {i}' + ' ' * 30 + '1.0s', flush=True)\n"
    out, log = io.StringIO(), tmp_path / "dataset.log"
    progress = BuildProgress("S", tmp_path / "steps.json", out=out)
    code = run_with_progress(
        [sys.executable, "-c", script], env=dict(os.environ), cwd=tmp_path, log=log, progress=progress
    )
    assert code == 0
    assert log.read_text().count("step") == 2
    drawn = out.getvalue().splitlines()
    assert [line.split("] ")[1].split(",")[0] for line in drawn] == ["1/2 steps", "2/2 steps"]
    assert len(json.loads((tmp_path / "steps.json").read_text())["step_seconds"]) == 2


def run_result(commit: str, p95: dict[str, float]) -> dict:
    return {
        "started_at": "2026-12-05T10:00:00+00:00",
        "git": {"commit": commit, "uncommitted_changes": False},
        "latency": {key: {"p95_ms": value} for key, value in p95.items()},
    }


def test_compare_prints_each_operation_at_s_and_l_with_the_ratio():
    labels = {"create_bill": "create an estate-wide bill", "pay": "pay from wallet"}
    lines = compare(
        run_result("a" * 40, {"create_bill": 20.0, "pay": 30.0}), run_result("a" * 40, {"create_bill": 25.0}), labels
    )
    assert lines[-2].split() == ["create", "an", "estate-wide", "bill", "20.0", "25.0", "1.25"]
    assert lines[-1].split() == ["pay", "from", "wallet", "30.0", "-", "-"]
    assert not any("different commits" in line for line in lines)
    other = compare(run_result("a" * 40, {}), run_result("b" * 40, {}), labels)
    assert "NOTE: the two runs measured different commits" in other


def test_bench_compare_command_reads_the_two_result_files(tmp_path):
    (tmp_path / "bench-S.json").write_text(json.dumps(run_result("c" * 40, {"pay": 40.0})))
    missing = subprocess.run(  # noqa: S603
        [sys.executable, "scripts/bench.py", "--compare", "--results", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode == 1
    assert "bench-L.json missing" in missing.stderr
    (tmp_path / "bench-L.json").write_text(json.dumps(run_result("c" * 40, {"pay": 44.0})))
    done = subprocess.run(  # noqa: S603
        [sys.executable, "scripts/bench.py", "--compare", "--results", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    pay = next(line for line in done.stdout.splitlines() if line.startswith("pay from wallet"))
    assert pay.split()[-3:] == ["40.0", "44.0", "1.10"]
