"""CPU time of ``kokoma import incidents FILE`` for two checkouts, alternated, each run on a fresh
database (the CLI process: parsing, validation, rendering, driver; on SQLite the database's work
too). CPU time rather than wall time: on a shared machine the load distorts it much less.

Usage: python bench/bench_import_cpu.py [--rows 20000] [--rounds 3] BEFORE AFTER
       (BEFORE/AFTER: checkouts, e.g. ``git archive <commit> | tar -x -C DIR``; run with a
       virtualenv that has kokoma's dependencies)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_import as bench

PG = "postgresql://postgres@127.0.0.1:5432/postgres"


def run_once(backend: str, root: Path, file: Path, rows: int, tmp: Path) -> tuple[float, float]:
    url, drop = bench.fresh_database(backend, PG, tmp)
    try:
        env = {**bench.env_for(url), "PYTHONPATH": str(root)}
        subprocess.run(
            [
                sys.executable,
                "-c",
                bench.PREPARE,
                ",".join(bench.DISTRICTS),
                ",".join(bench.COMPETENCES),
                "",
            ],
            env=env,
            cwd=root,
            capture_output=True,
            check=True,
        )
        began = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "import", "incidents", str(file), "--json"],
            env=env,
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert process.stdout is not None
        output = process.stdout.read()
        _, _, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - began
        assert f'"created": {rows}'.encode() in output, output[:300]
        return usage.ru_utime + usage.ru_stime, wall
    finally:
        drop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args()
    results: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        file = tmp / "incidents.csv"
        bench.generate(file, args.rows)
        for _ in range(args.rounds):
            for backend in ("sqlite", "postgresql"):
                for label, root in (("before", args.before), ("after", args.after)):
                    cpu, wall = run_once(backend, root.resolve(), file, args.rows, tmp)
                    results.setdefault((backend, label), []).append(cpu)
                    print(
                        f"{backend:10} {label:6} cpu {cpu:6.2f} s  wall {wall:6.2f} s", flush=True
                    )
    for (backend, label), cpus in sorted(results.items()):
        cpus.sort()
        print(
            f"{backend:10} {label:6} min cpu {cpus[0]:.2f} s  median {cpus[len(cpus) // 2]:.2f} s"
            f"  ({args.rows / cpus[0]:,.0f} rows per CPU-second)"
        )


if __name__ == "__main__":
    main()
