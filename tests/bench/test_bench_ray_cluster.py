"""A real multi-node Ray run (``make bench``): two Ray nodes, results equal to local.

Starts a Ray head (``ray start --head``) and a second node (``ray start
--address``) as separate processes on this machine, one CPU each, checks that the
cluster schedules work on both, then runs a sharded `memsim run` and a `memsim
sweep` with ``--executor ray --address`` and compares their outputs with the same
runs on a local process pool, byte for byte. The wall times go into
docs/benchmarks.md between the ``bench:ray-cluster`` markers.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest
from test_bench import machine, write_between

BIN = Path(sys.executable).parent
SWEEP = """\
scenario = "support-bot"
strategies = ["batched-dedup-budget", "naive-append"]
seeds = [1, 2]

[overrides]
users = 120
days = 7
shard_users = 40

[grid]
"strategy.batched-dedup-budget.budget_tokens" = [100, 400]
"""
RUN = ["support-bot", "--users", "400", "--days", "14", "--shard-users", "100", "-q"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    # A cluster on one machine, no token: the head and the node share this host.
    return {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def _ray(*args: str) -> None:
    subprocess.run([str(BIN / "ray"), *args], check=True, env=_env(), capture_output=True)


def _memsim(*args: str) -> float:
    began = time.monotonic()
    subprocess.run([sys.executable, "-m", "memsim", *args], check=True, env=_env())
    return time.monotonic() - began


NODES_PROBE = """
import sys, time, ray
ray.init(address=sys.argv[1], include_dashboard=False, log_to_driver=False)
@ray.remote(num_cpus=1)
def where():
    time.sleep(2)
    return ray.get_runtime_context().get_node_id()
nodes = set(ray.get([where.remote() for _ in range(2)]))
print(len([n for n in ray.nodes() if n["Alive"]]), len(nodes))
"""


@pytest.mark.bench
def test_sharded_run_and_sweep_on_two_ray_nodes_equal_local(tmp_path):
    port = _free_port()
    address = f"127.0.0.1:{port}"
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats"]
    began = time.monotonic()
    _ray("start", "--head", f"--port={port}", "--include-dashboard=false", *common)
    try:
        _ray("start", f"--address={address}", *common)
        cluster_s = time.monotonic() - began
        probe = subprocess.run(
            [sys.executable, "-c", NODES_PROBE, address],
            check=True,
            env=_env(),
            capture_output=True,
            text=True,
        )
        alive, used = map(int, probe.stdout.split()[-2:])
        assert (alive, used) == (2, 2), probe.stdout  # two nodes, and tasks ran on both
        ray_run = tmp_path / "ray-run"
        run_s = _memsim(
            "run", *RUN, "--executor", "ray", "--address", address, "--out", str(ray_run)
        )
        sweep = tmp_path / "sweep.toml"
        sweep.write_text(SWEEP)
        ray_sweep = tmp_path / "ray-sweep"
        sweep_s = _memsim(
            *("sweep", str(sweep), "-q", "--executor", "ray", "--address", address),
            *("--out", str(ray_sweep)),
        )
    finally:
        subprocess.run([str(BIN / "ray"), "stop", "--force"], env=_env(), capture_output=True)
    local_run, local_sweep = tmp_path / "local-run", tmp_path / "local-sweep"
    local_run_s = _memsim("run", *RUN, "--workers", "2", "--out", str(local_run))
    local_sweep_s = _memsim("sweep", str(sweep), "-q", "--workers", "2", "--out", str(local_sweep))
    same_run = (ray_run / "summary.json").read_bytes() == (local_run / "summary.json").read_bytes()
    same_sweep = (ray_sweep / "sweep.json").read_bytes() == (
        local_sweep / "sweep.json"
    ).read_bytes()
    write_between(
        "ray-cluster",
        f"Measured {date.today().isoformat()} on {machine()} with `make bench`\n"
        "(`tests/bench/test_bench_ray_cluster.py`): a Ray head and a second node started\n"
        f"with `ray start` (one CPU each) in {cluster_s:.0f} s; a probe's two tasks ran on\n"
        "both nodes.\n\n"
        "| on the two-node cluster (`--executor ray --address`) | wall | local pool, 2 workers "
        "| same bytes |\n|---|---|---|---|\n"
        f"| `memsim run {' '.join(RUN[:-1])}` (4 shards) | {run_s:.1f} s | {local_run_s:.1f} s "
        f"| summary.json: {'yes' if same_run else 'NO'} |\n"
        "| `memsim sweep` (a 2-point grid × 2 strategies × 2 seeds, 3 shards a run) "
        f"| {sweep_s:.1f} s | {local_sweep_s:.1f} s "
        f"| sweep.json: {'yes' if same_sweep else 'NO'} |",
    )
    assert same_run and same_sweep
