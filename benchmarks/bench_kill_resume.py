"""Does a scan killed at a random moment and resumed give the same CSV as an uninterrupted one?

    python benchmarks/bench_kill_resume.py [--kills 20] [--bundle PATH] [--seed 0] [--corpus DIR]

Writes the hostile corpus (benchmarks/hostile_corpus.py; or scans ``--corpus``), scans it once
without interruption (the reference), then ``--kills`` times: starts the same scan into a fresh
output folder, sends SIGKILL to it after a random delay drawn uniformly from (0, reference wall
time) (a scan that finishes before its kill is started again with a delay drawn within its own
duration, so every trial is a real kill), and runs the same command again (it resumes). Each
resumed scores CSV and slices CSV is compared with the reference row by row, every column but
the timing one (``seconds``), as sets of rows, plus the per-series JSON files present. Prints one
JSON line per kill and a summary: how many of the resumed runs matched the reference exactly.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
IGNORED_COLUMNS = {"seconds"}


def scan_command(corpus: Path, out: Path, bundle: str) -> list[str]:
    exe = Path(sys.executable).parent / "isl-rt"
    command = [str(exe), "scan", str(corpus), "--out", str(out / "scores.csv"), "--threads", "1"]
    return command + (["--bundle", bundle] if bundle else [])


def rows_of(path: Path) -> list[tuple[tuple[str, str], ...]]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        rows = [tuple(sorted((k, v) for k, v in row.items() if k not in IGNORED_COLUMNS)) for row in csv.DictReader(handle)]
    return sorted(rows)


def snapshot(out: Path) -> dict[str, object]:
    """What a finished scan left: its rows (timing aside) and the names of its per-series JSON."""
    json_dir = out / "scores.series"
    return {
        "scores": rows_of(out / "scores.csv"),
        "slices": rows_of(out / "scores.slices.csv"),
        "json": sorted(p.name for p in json_dir.glob("*.json")) if json_dir.is_dir() else [],
    }


def run(command: list[str], kill_after: float | None = None) -> tuple[int, float, bool]:
    """(exit code, wall seconds, killed) of one scan; SIGKILL after ``kill_after`` seconds."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    killed = False
    try:
        process.wait(timeout=kill_after)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        killed = True
    stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
    if not killed and "Traceback" in stderr:
        raise SystemExit(f"a scan printed a traceback:\n{stderr[-3000:]}")
    return process.returncode, time.perf_counter() - start, killed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--bundle", default="", help="model bundle (default: the shipped head-ct-tiny)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--corpus", type=Path, default=None, help="scan this folder instead of the hostile corpus")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(HERE))
    import hostile_corpus

    work = Path(tempfile.mkdtemp(prefix="isl-kill-"))
    corpus = args.corpus or work / "corpus"
    if args.corpus is None:
        hostile_corpus.write_corpus(corpus)
    reference_out = work / "reference"
    code, seconds, _ = run(scan_command(corpus, reference_out, args.bundle))
    reference = snapshot(reference_out)
    print(json.dumps({"kind": "reference", "exit_code": code, "seconds": round(seconds, 2),
                      "rows": len(reference["scores"]), "slice_rows": len(reference["slices"])}), flush=True)
    rng = random.Random(args.seed)
    same = 0
    for k in range(args.kills):
        out = work / f"kill{k:02d}"
        limit, killed = seconds, False
        while not killed:  # a scan that finished before its kill is no kill: draw again within its time
            delay = rng.uniform(0.0, limit)
            _, took, killed = run(scan_command(corpus, out, args.bundle), kill_after=delay)
            if not killed:
                shutil.rmtree(out, ignore_errors=True)
                limit = 0.95 * took
        rows_at_kill = len(rows_of(out / "scores.csv"))
        code_resumed, _, _ = run(scan_command(corpus, out, args.bundle))
        got = snapshot(out)
        equal = got == reference
        same += equal
        differences = {name: len(set(got[name]) ^ set(reference[name])) for name in reference}  # type: ignore[arg-type]
        print(json.dumps({"kind": "kill", "index": k, "kill_after_s": round(delay, 2), "killed": killed,
                          "rows_at_kill": rows_at_kill, "exit_code": code_resumed, "identical": equal,
                          "differences": differences}), flush=True)
        shutil.rmtree(out)
    print(json.dumps({"kind": "summary", "kills": args.kills, "identical": same, "reference_rows": len(reference["scores"]),
                      "reference_seconds": round(seconds, 2), "machine": platform.platform(),
                      "python": platform.python_version()}), flush=True)
    shutil.rmtree(work)
    return 0 if same == args.kills else 1


if __name__ == "__main__":
    sys.exit(main())
