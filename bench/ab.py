"""Operations of the harness (``bench/harness.py``) against ONE generated database, so that two
checkouts can be compared on the same data (the harness generates a new database every run).

    .venv/bin/python -m bench.ab generate sqlite:////tmp/ab.db /tmp/ab.pickle
    .venv/bin/python -m bench.ab run sqlite:////tmp/ab.db /tmp/ab.pickle \\
        --only "district profile,get incident" --seconds 5 --rounds 2
    # the other checkout (e.g. `git worktree add /tmp/before <commit>`), on a copy of the file
    # (each checkout migrates the database to its own head first):
    cd /tmp/before && PYTHONPATH=. /path/to/.venv/bin/python -m bench.ab run sqlite:////tmp/ab-before.db /tmp/ab.pickle …

``generate`` migrates and fills the database as the harness does (100,000 incidents, 5,000
managers, 50 districts, plus 2,000 assignments and 200 recommendations) and pickles what the
operations need (ids, the admin key). ``run`` starts the bare app once (the reference), then the
checkout's app under uvicorn (one worker) and runs each chosen operation with wrk for
``--seconds``, ``--rounds`` times; besides req/s, p50 and p99 it prints the server process's CPU
time per request (from ``/proc``), which drifts far less than req/s on a shared machine. The
first round of a server includes its warm-up (a profile's first roster read per district, …).
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
from pathlib import Path

from bench.harness import ROOT, generate, operations, run_wrk, server


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    made = sub.add_parser("generate", help="migrate and fill a database, keep its ids")
    made.add_argument("url")
    made.add_argument("dataset", type=Path)
    run = sub.add_parser("run", help="time operations against it with this checkout")
    run.add_argument("url")
    run.add_argument("dataset", type=Path)
    run.add_argument("--only", required=True, help="comma-separated substrings of operations")
    run.add_argument("--seconds", type=int, default=5)
    run.add_argument("--rounds", type=int, default=1)
    run.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()

    if args.command == "generate":
        from bench.bench_reads_misc import add_rows

        data = generate(args.url, incidents=100_000, managers=5_000, districts=50)
        data.assignment_ids, data.recommendation_ids = add_rows(args.url, data)
        with args.dataset.open("wb") as out:
            pickle.dump(data, out)
        return

    os.environ["DATABASE_URL"] = args.url
    os.environ["PYTHONPATH"] = str(ROOT)  # the servers run this checkout's app
    from app.core.migrations import upgrade

    upgrade("head")
    with args.dataset.open("rb") as given:
        data = pickle.load(given)  # a file this script wrote
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    ops = [op for op in operations(data) if any(s in op.name for s in chosen)]
    bare = operations(data)[0]
    print(f"checkout {ROOT}, database {args.url}", flush=True)
    with server("bench.app:bare", args.url) as (base, _):
        result = run_wrk(base, bare, data.key, args.seconds, args.connections)
        print(f"{'bare FastAPI app':45s} {result.rps:8.0f} req/s", flush=True)
    with server("bench.app:app", args.url) as (base, pid):
        for _ in range(args.rounds):
            for op in ops:
                before = _cpu_seconds(pid)
                result = run_wrk(base, op, data.key, args.seconds, args.connections)
                cpu = (_cpu_seconds(pid) - before) / max(1, result.requests) * 1e6
                print(
                    f"{op.name:45s} {result.rps:8.0f} req/s  p50 {result.p50_ms:6.2f}  "
                    f"p99 {result.p99_ms:7.2f} ms  non-2xx {result.errors}  "
                    f"server CPU {cpu:6.0f} µs/request",
                    flush=True,
                )


if __name__ == "__main__":
    sys.exit(main())
