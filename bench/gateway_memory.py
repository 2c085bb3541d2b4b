"""`make bench-gateway-memory`: a flood of distinct cacheable-looking URLs,
while the gateway's memory is watched.

Starts a stack of its own, then wrk (bench/wrk/flood.lua) sends reads of
trending, charts and history that are all different: random filters, dates,
limits and spellings, random item ids, a random Host on every request. Envoy's
simple cache never evicts, so every distinct URL it stored stayed in memory;
now it stores only a fixed set of URLs (gateway/envoy_config.py,
EDGE_CACHED_QUERIES). It prints the requests sent, their statuses, Envoy's and
the ranking service's resident memory at the start, at the peak and at the
end, and the number of entries in Envoy's cache.

    python -m bench.gateway_memory --duration 300 --connections 64
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
import threading
import urllib.request
from pathlib import Path

from bench.__main__ import tool
from devstack.stack import RATE_LIMITS_RAISED, Stack, free_port

HERE = Path(__file__).resolve().parent


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Watch:
    """Samples processes' resident memory every second."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.samples: dict[str, list[float]] = {name: [] for name in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, pid in self.pids.items():
                self.samples[name].append(rss_mib(pid))
            self._stop.wait(1.0)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        for name, pid in self.pids.items():
            self.samples[name].append(rss_mib(pid))


def cache_entries(stack: Stack) -> str:
    url = f"http://127.0.0.1:{stack.ports['gateway_metrics']}/stats/prometheus?filter=cache"
    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode()
    found = re.findall(r"^envoy_cache_cache_sessions_entries\{[^}]*\} (\d+)", text, re.M)
    return "+".join(found) or "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=300, help="seconds of flood (default 300)")
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="aimusicstore-flood-") as data_dir:
        # The flood comes from one address: the rate limits are raised out
        # of its way, so that every URL reaches the cache.
        stack = Stack(data_dir=Path(data_dir), gateway_port=free_port(), env_overrides=dict(RATE_LIMITS_RAISED))
        stack.start()
        try:
            pids = {"envoy": stack.procs["envoy"].pid, "ranking": stack.procs["ranking"].pid}
            with Watch(pids) as watch:
                result = subprocess.run(
                    [
                        tool("wrk"),
                        "-t2",
                        f"-c{args.connections}",
                        f"-d{args.duration}s",
                        "--latency",
                        "-s",
                        str(HERE / "wrk" / "flood.lua"),
                        stack.gateway_url,
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
            sent = re.search(r"(\d+) requests in", result.stdout)
            non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", result.stdout)
            print(
                f"wrk -t2 -c{args.connections} -d{args.duration}s -s bench/wrk/flood.lua: "
                f"{sent.group(1) if sent else '?'} distinct requests, "
                f"{non2xx.group(1) if non2xx else 0} of them not 2xx"
            )
            print("| process | RSS at start (MiB) | peak (MiB) | at end (MiB) |")
            print("|---|---|---|---|")
            for name, samples in watch.samples.items():
                print(f"| {name} | {samples[0]:.1f} | {max(samples):.1f} | {samples[-1]:.1f} |")
            print(f"entries in Envoy's cache at the end: {cache_entries(stack)}")
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
