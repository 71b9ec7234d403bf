"""`http/metrics.py` adds a whole tally to a histogram child through prometheus-client's
private `_sum` and `_buckets` (the public `observe` takes one value at a time). Those are not
part of its API, so the version is pinned to one minor release, and these tests fail first
when an upgrade moves them, in both value classes production uses: plain (tests, one process)
and multiprocess (gunicorn, memory-mapped files).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry, Histogram, values

from fleet_shared.http.metrics import BUCKETS

LABELS = ("GET", "/v1/x", "200", "inventory")


def test_a_histogram_child_keeps_one_value_per_bucket_and_a_sum() -> None:
    histogram = Histogram("h", "", ["method", "url_rule", "status", "service"],
                          buckets=BUCKETS, registry=CollectorRegistry())
    child = histogram.labels(*LABELS)
    assert isinstance(child._sum, values.ValueClass)
    assert isinstance(child._buckets, list)
    assert all(isinstance(bucket, values.ValueClass) for bucket in child._buckets)
    # RequestMetrics indexes buckets with bisect_left over BUCKETS, the last one being +Inf.
    assert child._upper_bounds == [*BUCKETS, math.inf]
    assert len(child._buckets) == len(BUCKETS) + 1


# Runs in a fresh interpreter: prometheus-client picks its value class once, at import, from
# PROMETHEUS_MULTIPROC_DIR.
_MULTIPROCESS = """
import json, sys
from prometheus_client import CollectorRegistry, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector
from fleet_shared.http.metrics import RequestMetrics

metrics = RequestMetrics(CollectorRegistry(), "inventory")
for seconds in (0.003, 0.2, 30.0):
    metrics.record(("GET", "/v1/x", 200), seconds)
metrics.flush()
child = metrics.duration.labels("GET", "/v1/x", "200", "inventory")
scraped = CollectorRegistry()
MultiProcessCollector(scraped)
json.dump({"multiprocess": values.ValueClass._multiprocess,
           "sum_is_value": isinstance(child._sum, values.ValueClass),
           "exposition": generate_latest(scraped).decode()}, sys.stdout)
"""


def test_flushed_tallies_reach_the_multiprocess_exposition(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    run = subprocess.run([sys.executable, "-c", _MULTIPROCESS], env=env, capture_output=True,
                         text=True, timeout=60, check=True)
    result = json.loads(run.stdout)
    assert result["multiprocess"] is True and result["sum_is_value"] is True
    series = "method=\"GET\",service=\"inventory\",status=\"200\",url_rule=\"/v1/x\""
    lines = set(result["exposition"].splitlines())
    assert f'flask_http_request_duration_seconds_count{{{series}}} 3.0' in lines
    assert f'flask_http_request_duration_seconds_sum{{{series}}} 30.203' in lines
    assert f'flask_http_request_duration_seconds_bucket{{le="0.005",{series}}} 1.0' in lines
    assert f'flask_http_request_duration_seconds_bucket{{le="0.25",{series}}} 2.0' in lines
    assert f'flask_http_request_duration_seconds_bucket{{le="10.0",{series}}} 2.0' in lines
    assert f'flask_http_request_duration_seconds_bucket{{le="+Inf",{series}}} 3.0' in lines
    assert ('flask_http_request_total{method="GET",service="inventory",status="200"} 3.0'
            in lines)

