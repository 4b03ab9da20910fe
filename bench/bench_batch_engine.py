"""Time the pure batch-dispatch engine (app.services.dispatch.batch.plan_batch).

Usage (from the repository root, so that `app` is the package):
    python -m bench.bench_batch_engine [--incidents 1000] [--managers 5000] [--repeat 3]

Scenarios (scores random at 4 decimals, 40 % tandem incidents, free slots 1-2, mostly 2):
* ``district``: 50 districts; a manager has a home district and serves 0-2 others; an
  incident's candidates are the managers serving its district, thinned by half to mimic the
  competence filter (~100 per incident) — the realistic shape;
* ``wide-<k>``: every incident lists k managers drawn from the whole roster — a stress test;
* ``scarce``: only 600 managers with one free slot each, so tandem incidents compete for them.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from uuid import UUID

from app.services.dispatch.batch import BatchIncident, BatchPlan, plan_batch

Instance = tuple[list[BatchIncident], dict[UUID, list[tuple[UUID, float]]], dict[UUID, int]]


def _ids(prefix: int, count: int) -> list[UUID]:
    return [UUID(int=(prefix << 64) + i) for i in range(count)]


def district_instance(n_incidents: int, n_managers: int, seed: int) -> Instance:
    rng = random.Random(seed)
    n_districts = 50
    managers = _ids(2, n_managers)
    serving: dict[int, list[UUID]] = {d: [] for d in range(n_districts)}
    for manager in managers:
        home = rng.randrange(n_districts)
        for district in {home, *rng.sample(range(n_districts), rng.randint(0, 2))}:
            serving[district].append(manager)
    free = {m: rng.choice((1, 2, 2, 2)) for m in managers}
    incidents = [BatchIncident(i, 2 if rng.random() < 0.4 else 1) for i in _ids(1, n_incidents)]
    candidates = {
        incident.id: [
            (m, round(rng.random(), 4))
            for m in serving[rng.randrange(n_districts)]
            if rng.random() < 0.5
        ]
        for incident in incidents
    }
    return incidents, candidates, free


def wide_instance(n_incidents: int, n_managers: int, k: int, seed: int) -> Instance:
    rng = random.Random(seed)
    managers = _ids(2, n_managers)
    free = {m: rng.choice((1, 2, 2, 2)) for m in managers}
    incidents = [BatchIncident(i, 2 if rng.random() < 0.4 else 1) for i in _ids(1, n_incidents)]
    candidates = {
        incident.id: [(m, round(rng.random(), 4)) for m in rng.sample(managers, k)]
        for incident in incidents
    }
    return incidents, candidates, free


def scarce_instance(n_incidents: int, seed: int) -> Instance:
    rng = random.Random(seed)
    managers = _ids(2, 600)
    free = dict.fromkeys(managers, 1)
    incidents = [BatchIncident(i, 2 if rng.random() < 0.4 else 1) for i in _ids(1, n_incidents)]
    candidates = {
        incident.id: [(m, round(rng.random(), 4)) for m in rng.sample(managers, 20)]
        for incident in incidents
    }
    return incidents, candidates, free


def run(name: str, instance: Instance, repeat: int) -> None:
    incidents, candidates, free = instance
    pairs = sum(len(c) for c in candidates.values())
    timings: list[float] = []
    plan: BatchPlan | None = None
    for _ in range(repeat):
        started = time.perf_counter()
        plan = plan_batch(incidents, candidates, free)
        timings.append(time.perf_counter() - started)
    assert plan is not None
    tandem_unassigned = sum(1 for u in plan.unassigned if u.reason == "no_tandem_partner")
    print(
        f"{name:<12} pairs={pairs:>8} assigned={len(plan.assignments):>5} "
        f"unassigned={len(plan.unassigned):>4} (tandem {tandem_unassigned:>3}) "
        f"optimal={plan.optimal!s:<5} median={statistics.median(timings):.3f}s "
        f"max={max(timings):.3f}s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=1000)
    parser.add_argument("--managers", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    n, m, seed = args.incidents, args.managers, args.seed
    run("district", district_instance(n, m, seed), args.repeat)
    for k in (100, 500):
        run(f"wide-{k}", wide_instance(n, m, k, seed), args.repeat)
    run("scarce", scarce_instance(n, seed), args.repeat)


if __name__ == "__main__":
    main()
