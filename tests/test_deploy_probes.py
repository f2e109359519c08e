"""/readyz and /livez (server/probes.py) on a real HTTP port next to /metrics."""

from __future__ import annotations

import urllib.error
import urllib.request

from prometheus_client import CollectorRegistry, Counter

from qwen3_asr_stream.server.probes import LIVE_WITHIN_S, MetricsHttpServer, Probes


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_readiness_follows_the_server_and_liveness_the_event_loop():
    now = [100.0]
    probes = Probes(clock=lambda: now[0])
    registry = CollectorRegistry()
    Counter("asr_demo", "a metric", registry=registry).inc()
    server = MetricsHttpServer("127.0.0.1", 0, registry, probes)
    try:
        assert get(server.port, "/readyz")[0] == 503  # not ready before the server says so
        probes.ready = True
        assert get(server.port, "/readyz") == (200, "ready\n")
        assert get(server.port, "/livez") == (200, "alive\n")
        probes.ready = False  # the drain began: not ready, still alive
        assert get(server.port, "/readyz") == (503, "draining\n")
        assert get(server.port, "/livez")[0] == 200
        now[0] += LIVE_WITHIN_S + 1  # the event loop stopped beating
        status, body = get(server.port, "/livez")
        assert status == 503 and "stalled" in body
        probes.beat()
        assert get(server.port, "/livez")[0] == 200
        assert "asr_demo_total 1.0" in get(server.port, "/metrics")[1]
        assert probes.answer("/other") is None
    finally:
        server.close()
