"""MLflow at sweep scale: a synthetic sweep of N lineages x R rounds x M metrics logged to an MLflow
server on PostgreSQL with basic auth and the artifact proxy (deploy/local_mlflow_server.py, as deploy/ runs
it), then read back with `lth query --sweep NAME --format csv`.

    python bench/mlflow_logging.py [--lineages 1000] [--rounds 15] [--metrics 30] [--writers 4]
                                   [--server-workers 2] [--auth-cache-seconds 600] [--fill rounds|lineage]

The runs are created the way `lth sweep` creates them (SweepTracker, on one driver); each round is
logged the way a trial logs it (RunLogger: the round's mask as a safetensors artifact, then the
metrics in one `log_batch`), by W writer processes at once, each one a stream of trials. Prints
per-round logging times (goal: metrics batch < 50 ms) and the query time (goal < 10 s), through
the server and reading its PostgreSQL database directly (analysis/query_sql.py).

The server runs as deploy/ runs it: gunicorn with 2 threaded workers (MLflow's default uvicorn
with several workers adds ~40 ms to every keep-alive request: uvicorn issue #3149), and MLflow's
basic-auth credential cache (`--auth-cache-seconds 0` measures the server without it: every request
then re-hashes the password, ~100 ms of server CPU).
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SWEEP = "bench-logging"
EXPERIMENT = "bench-logging"


def metric_names(count: int) -> list[str]:
    core = ["test/acc", "test/loss", "sparsity/nominal", "sparsity/model", "weights/remaining", "time/round_seconds",
            "calib/ece", "calib/nll", "xai/gradcam_rank_corr", "xai/concept_jaccard_top3"]
    layers = [f"sparsity/layer/layer{i}.weight" for i in range(max(0, count - len(core) - 1))]
    return (core + layers)[: count - 1] + ["sparsity"]  # the round marker, logged last


def create_runs(uri: str, lineages: int, threads: int) -> tuple[list[str], float]:
    """One parent, 10 trunks and `lineages` lineage runs with their params, through SweepTracker as
    `lth sweep` does (which does it on one thread: N times the per-run time; here `threads`)."""
    from concurrent.futures import ThreadPoolExecutor

    from lth_sweep.orchestrator.mlflow_runs import SweepTracker
    from lth_sweep.trainables.specs import LineageSpec

    tracker = SweepTracker(uri, EXPERIMENT, SWEEP, "bench")
    per_trunk = max(1, lineages // 10)

    def create(index: int) -> str:
        seed, slot = divmod(index, per_trunk)
        spec = LineageSpec.model_validate({
            "trunk": {"data": {"image_size": 16}, "model": {"name": "conv4"}, "train": {}, "seed": seed},
            "pruning": {"method": "imp", "rate": round(0.05 + 0.9 * slot / per_trunk, 4), "rounds": 15},
        })
        if slot == 0:
            trunk = tracker.child("trunk", spec.trunk, f"trunk s{seed}")
            tracker.log_missing_metrics(trunk.info.run_id, {("test/acc", 0): 0.9, ("test/loss", 0): 0.3, ("sparsity", 0): 0.0})
        run = tracker.child("lineage", spec, f"imp s{seed} #{slot}",
                            tags={"lth.method": "imp", "lth.label": "imp", "lth.trunk": spec.trunk.id})
        return run.info.run_id

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        run_ids = list(pool.map(create, range(lineages)))
    return run_ids, time.perf_counter() - started


def write(args: tuple[str, list[str], int, list[str]]) -> dict[str, list[float]]:
    """One writer: its lineages' rounds, round by round, each through RunLogger like a trial."""
    import torch

    from lth_sweep.trainables.run_logger import RunLogger

    uri, run_ids, rounds, names = args
    loggers = [RunLogger(uri, run_id) for run_id in run_ids]
    mask = {"layer0.weight": torch.ones(32, 32)}  # 4 KiB: real masks are larger, and so is their upload
    times: dict[str, list[float]] = {"mask": [], "metrics": []}
    for round_index in range(1, rounds + 1):
        for number, logger in enumerate(loggers):
            metrics = {name: (number * 7919 + round_index * 104729 + i) % 1000 / 1000 for i, name in enumerate(names)}
            t0 = time.perf_counter()
            logger.log_tensors(f"masks/round_{round_index:02d}.safetensors", mask)
            t1 = time.perf_counter()
            logger.log_metrics(round_index, metrics)
            t2 = time.perf_counter()
            times["mask"].append(t1 - t0)
            times["metrics"].append(t2 - t1)
    return times


def fill(args: tuple[str, list[str], int, list[str]]) -> dict[str, list[float]]:
    """`--fill lineage`: each lineage's rounds in one `log_batch` (same points, same values), to
    build the table a query reads in a fraction of the time; not a measure of per-round logging."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    uri, run_ids, rounds, names = args
    client = MlflowClient(uri)
    for number, run_id in enumerate(run_ids):
        now = int(time.time() * 1000)
        batch = [
            Metric(name, (number * 7919 + round_index * 104729 + i) % 1000 / 1000, now, round_index)
            for round_index in range(1, rounds + 1) for i, name in enumerate(names)
        ]
        client.log_batch(run_id, metrics=batch, synchronous=True)
    return {"mask": [], "metrics": []}


def timed_query(uri: str) -> tuple[float, int]:
    started = time.perf_counter()
    query = subprocess.run(
        [str(Path(sys.executable).with_name("lth")), "query", "--sweep", SWEEP, "--experiment", EXPERIMENT,
         "--tracking-uri", uri, "--format", "csv"],
        capture_output=True, text=True, check=True, env=os.environ.copy(),
    )
    return time.perf_counter() - started, query.stdout.count("\n") - 1


def describe(values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    p95 = ms[int(0.95 * (len(ms) - 1))]
    return f"mean {statistics.fmean(ms):.1f} ms, median {statistics.median(ms):.1f} ms, p95 {p95:.1f} ms, max {ms[-1]:.0f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lineages", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--metrics", type=int, default=30)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--server-workers", type=int, default=2)
    parser.add_argument("--auth-cache-seconds", type=int, default=600)
    parser.add_argument("--fill", choices=["rounds", "lineage"], default="rounds",
                        help="rounds: log round by round as trials do (measured); lineage: one batch per lineage (fast)")
    args = parser.parse_args()

    from deploy.local_mlflow_server import start_server, stop_server

    server = start_server(workers=args.server_workers, auth_cache_seconds=args.auth_cache_seconds)
    os.environ |= {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": server.admin_password}
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        print(f"server {server.url} (PostgreSQL, basic auth with credential cache {args.auth_cache_seconds} s, artifact "
              f"proxy, gunicorn, {args.server_workers} threaded workers) up in {server.timings['total']:.1f} s; load average "
              f"{os.getloadavg()[0]:.1f}", flush=True)
        run_ids, setup = create_runs(server.url, args.lineages, args.writers)
        print(f"{len(run_ids)} lineage runs (+ parent, trunks) created by {args.writers} threads in {setup:.1f} s "
              f"({setup / len(run_ids) * args.writers * 1000:.0f} ms per run and thread)", flush=True)
        names = metric_names(args.metrics)
        shares = [run_ids[w :: args.writers] for w in range(args.writers)]
        started = time.perf_counter()
        with multiprocessing.get_context("spawn").Pool(args.writers) as pool:
            results = pool.map(write if args.fill == "rounds" else fill, [(server.url, share, args.rounds, names) for share in shares])
        logging = time.perf_counter() - started
        metrics = [t for r in results for t in r["metrics"]]
        masks = [t for r in results for t in r["mask"]]
        rounds = len(run_ids) * args.rounds
        print(f"logged {rounds} rounds x {len(names)} metrics with {args.writers} writers in {logging:.1f} s "
              f"({rounds / logging:.0f} rounds/s{', one batch per lineage' if args.fill == 'lineage' else ''})")
        if metrics:
            print(f"  per round, metrics log_batch: {describe(metrics)}")
            print(f"  per round, mask artifact:     {describe(masks)}")
            print(f"  per round, both (RunLogger.log_round): {describe([a + b for a, b in zip(metrics, masks)])}", flush=True)

        from lth_sweep.analysis.query import load_sweep

        started = time.perf_counter()
        frame = load_sweep(SWEEP, server.url, EXPERIMENT)
        in_process = time.perf_counter() - started
        command, lines = timed_query(server.url)
        print(f"lth query --format csv, through the server: {lines} rows x {len(frame.columns)} columns in {command:.1f} s "
              f"(of which load_sweep in-process: {in_process:.1f} s)")
        assert lines == rounds == len(frame), (lines, rounds, len(frame))
        database = server.postgres.uri("mlflow")
        os.environ["PGPASSWORD"] = server.postgres.db_password  # libpq reads it; never in the URI
        started = time.perf_counter()
        direct = load_sweep(SWEEP, database, EXPERIMENT)
        in_process = time.perf_counter() - started
        command, lines = timed_query(database)
        print(f"lth query --format csv, reading the database (postgresql+psycopg2://...): {lines} rows in {command:.1f} s "
              f"(of which load_sweep in-process: {in_process:.1f} s)")
        assert lines == rounds
        import pandas as pd

        pd.testing.assert_frame_equal(direct, frame, check_like=True)
    finally:
        stop_server(server)


if __name__ == "__main__":
    main()
