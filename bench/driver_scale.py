"""How the driver's cost grows with the number of lineages (issue 28).

    python bench/driver_scale.py --lineages 200 1000 5000 [--cluster] [--out FILE.json]

Each N runs `lth sweep` as its own process on a sweep of N tiny lineages: scikit-learn's digits
at 8 px, LeNet-300-100 at width 30, 1 epoch, 1 round of IMP, analysis and the dense twin off,
5 seeds (5 trunks); only the pruning rate varies (N / 5 rates). `--cluster` runs it on a simulated
multi-node cluster (`ray.cluster_utils.Cluster`: a head with 0 CPUs and 3 nodes of 4 CPUs, all
sharing this machine's cores) joined with `--address`.

Recorded per N (Linux: the driver's /proc, sampled every 0.5 s):
- wall: the `lth sweep` process from start to exit;
- driver CPU s per lineage: the driver process's own user + sys (not Ray's daemons nor workers);
- driver peak RSS (VmHWM);
- when the trunks were ready and the first lineage started (the driver's console), and the gap
  between the two;
- lineages/s in the first and the last 10% of lineage completions (MLflow end times);
- the MLflow store's size (the sqlite file and the artifact folder).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # deploy/ (--server)
SEEDS = 5
TICK = os.sysconf("SC_CLK_TCK")


def config_text(lineages: int) -> str:
    if lineages % SEEDS:
        raise SystemExit(f"--lineages {lineages}: a multiple of {SEEDS} (the seeds)")
    rates = [round(0.05 + 0.9 * i / max(lineages // SEEDS - 1, 1), 6) for i in range(lineages // SEEDS)]
    pruning = "\n".join(f"  - {{method: imp, rate: {rate}, rounds: 1}}" for rate in rates)
    return f"""name: scale{lineages}
max_lineages: {max(lineages, 10_000)}
seeds: [{", ".join(str(s) for s in range(SEEDS))}]
data: {{name: digits, image_size: 8}}
model: {{name: lenet_300_100, width: 30}}
train: {{epochs: 1, batch_size: 64, lr: 0.01}}
pruning:
{pruning}
analysis: {{enabled: false, twin: false}}
resources: {{cpus_per_trial: 1}}
"""


def _proc(pid: int) -> tuple[float, int, int] | None:
    """(user + sys CPU seconds, peak RSS bytes, RSS bytes) of one process, None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / TICK  # utime, stime: the process itself
        status = {line.split(":")[0]: line for line in Path(f"/proc/{pid}/status").read_text().splitlines()}
        return cpu, int(status["VmHWM"].split()[1]) * 1024, int(status["VmRSS"].split()[1]) * 1024
    except (OSError, KeyError, IndexError):
        return None


def run_sweep(lineages: int, folder: Path, address: str | None, server_url: str | None = None) -> dict:
    config = folder / f"scale{lineages}.yaml"
    config.write_text(config_text(lineages))
    uri = server_url or f"sqlite:///{folder / 'mlflow.db'}"
    command = [sys.executable, "-m", "lth_sweep.orchestrator.cli", "sweep", str(config)] + (["--address", address] if address else [])
    env = os.environ | {"MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(ROOT)}  # the server's credentials too
    started = time.time()
    log = open(folder / "sweep.log", "w")
    process = subprocess.Popen(command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
    cpu, peak, timeline = 0.0, 0, []
    while process.poll() is None:
        sample = _proc(process.pid)
        if sample:
            cpu, peak, rss = sample
            if not timeline or time.time() - started >= timeline[-1][0] + 30:
                timeline.append((round(time.time() - started), round(rss / 2**30, 2)))
        time.sleep(0.5)
    wall = time.time() - started
    figures = {"lineages": lineages, "exit": process.returncode, "wall_s": round(wall, 1),
               "driver_cpu_s": round(cpu, 1), "driver_cpu_s_per_lineage": round(cpu / lineages, 4),
               "driver_peak_rss_gb": round(peak / 2**30, 3), "driver_rss_gb_every_30s": timeline}
    figures |= _from_log((folder / "sweep.log").read_text())
    figures |= _from_mlflow(uri) | {"store_mb": round(_size(folder, "mlflow.db", "mlruns") / 2**20, 1)}
    figures["rounds_per_s"] = round(lineages / max(wall - figures["first_lineage_started_s"], 1e-9), 2)  # 1 round each
    return figures


def _from_log(log: str) -> dict:
    """From the driver's console ("[mm:ss] ..." since its start): when the last trunk was ready and
    when the first lineage started."""
    def seconds(line: str) -> int:
        minutes, secs = line[1 : line.index("]")].split(":")
        return 60 * int(minutes) + int(secs)

    lines = [line for line in log.splitlines() if line.startswith("[")]
    trunks = [seconds(line) for line in lines if "dense test/acc" in line]
    started = next((seconds(line) for line in lines if line.endswith(": started")), None)
    return {
        "trunks_ready_s": max(trunks) if trunks else None,
        "first_lineage_started_s": started,
        "first_lineage_after_trunks_s": started - max(trunks) if trunks and started is not None else None,
    }


def _from_mlflow(uri: str) -> dict:
    import mlflow

    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("lth-sweep")
    runs = client.search_runs([experiment.experiment_id], max_results=50_000)
    kinds = {}
    for run in runs:
        kinds.setdefault(run.data.tags.get("lth.kind", "?"), []).append(run)
    lineage_runs = kinds.get("lineage", [])
    ends = sorted(run.info.end_time / 1000 for run in lineage_runs if run.info.end_time)
    decile = max(2, len(ends) // 10)

    def rate(times):
        return round((len(times) - 1) / (times[-1] - times[0]), 2) if len(times) > 1 and times[-1] > times[0] else None

    return {
        "lineage_runs_finished": len(ends),
        "lineages_per_s_first_10pct": rate(ends[:decile]),
        "lineages_per_s_last_10pct": rate(ends[-decile:]),
    }


def _size(folder: Path, *names: str) -> int:
    total = 0
    for name in names:
        path = folder / name
        if path.is_file():
            total += path.stat().st_size
        elif path.is_dir():
            total += sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lineages", type=int, nargs="+", default=[200, 1000, 5000])
    parser.add_argument("--cluster", action="store_true", help="a simulated 3-node cluster (head with 0 CPUs)")
    parser.add_argument("--out", type=Path, help="append the figures (JSON lines) here")
    parser.add_argument("--server", action="store_true", help="MLflow on PostgreSQL as deploy/ runs it "
                        "(deploy/local_mlflow_server.py: basic auth, artifact proxy, gunicorn), not a sqlite file")
    args = parser.parse_args()
    os.environ["PYTHONPATH"] = str(ROOT)  # this checkout, also for the simulated nodes' workers
    cluster = None
    if args.cluster:
        from ray.cluster_utils import Cluster

        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
        for _ in range(3):
            cluster.add_node(num_cpus=4)
        cluster.wait_for_nodes()
    server = None
    try:
        for lineages in args.lineages:
            if args.server:  # a fresh server per sweep: each starts from an empty store
                from deploy.local_mlflow_server import start_server

                server = start_server()
                os.environ |= {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": server.admin_password}
            with tempfile.TemporaryDirectory(prefix=f"lth-scale{lineages}-") as folder:
                figures = run_sweep(lineages, Path(folder), cluster.address if cluster else None, server and server.url)
                figures["where"] = ("3-node cluster" if cluster else "local Ray") + (", MLflow server on PostgreSQL" if server else "")
                if server:
                    figures["store_mb"] = round(_size(server.root, "artifacts") / 2**20, 1)
                    server = _stopped(server)
                print(json.dumps(figures), flush=True)
                if figures["exit"] != 0:
                    print((Path(folder) / "sweep.log").read_text()[-3000:], file=sys.stderr)
                if args.out:
                    with open(args.out, "a") as out:
                        out.write(json.dumps(figures) + "\n")
    finally:
        if server:
            _stopped(server)
        if cluster:
            cluster.shutdown()


def _stopped(server) -> None:
    from deploy.local_mlflow_server import stop_server

    stop_server(server)


if __name__ == "__main__":
    main()
