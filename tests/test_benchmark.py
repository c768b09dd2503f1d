"""The benchmark runs end to end on tiny data (a smoke test: timings are never asserted)."""

from __future__ import annotations

import json
import math
import sys

from click.testing import CliRunner

from federation import benchmark
from federation.cli import main

COMPARED = [
    "cold_traversal", "warm_traversal", "commit_new_stubs", "commit_new_stubs_random",
    "commit_stub_reused", "key_lookup_uuid", "key_lookup_uuid_warm", "key_lookup_uuid_lookup",
    "commit_one_member", "commit_two_members", "commit_three_members",
]


def _positive(value: object) -> bool:
    return isinstance(value, float) and value > 0 and math.isfinite(value)


def test_every_workload_reports_a_positive_ratio(tmp_path):
    """Each workload is present; every comparison has medians, a ratio and a verdict."""
    cfg = benchmark.Settings(n=200, runs=1, batch=50, scale_sizes=(200, 1000), samples=20)
    lines: list[str] = []
    results = benchmark.run(cfg, echo=lines.append, directory=tmp_path)

    workloads = results["workloads"]
    assert set(workloads) == {*COMPARED, "scale", "key_lookup_uid", "foreign_round_trips"}
    for name in COMPARED:
        work = workloads[name]
        assert work["kind"] == "comparison"
        assert _positive(work["ratio"]), name
        assert _positive(work["ours_us"]) and _positive(work["baseline_us"]), name
        assert len(work["ours_s"]) == len(work["baseline_s"]) == 1
        assert work["target"] == benchmark.TARGETS[name]
        assert isinstance(work["met"], bool)
    assert workloads["cold_traversal"]["ours_loads"] >= 400  # 200 referrers + 200 targets
    scale = workloads["scale"]
    assert [size["stubs"] for size in scale["sizes"]] == [200, 1000]
    assert _positive(scale["ratio"])
    for size in scale["sizes"]:
        for field in ("cold_lookup_us", "warm_lookup_us", "ours_scan_us_per_ref",
                      "ours_memory_bytes_per_ref", "ours_disk_bytes_per_ref"):
            assert _positive(size[field]), field
    trips = workloads["foreign_round_trips"]
    assert trips["kind"] == "round_trips" and trips["refs"] == 200
    assert trips["target"] == 2  # ceil(200 / batch size 100)
    assert trips["holders_round_trips"] == trips["referrers_round_trips"] == 2 and trips["met"]
    assert _positive(trips["referrers_us"]) and _positive(trips["holders_us"])
    assert workloads["key_lookup_uid"]["note"].startswith("n/a")
    assert list(tmp_path.iterdir()) == []  # the temporary files are gone

    text = benchmark.report(results)
    assert "cold traversal" in text and "round trips for foreign loads" in text
    json.dumps(results)  # what --json writes


def test_bench_command_options():
    """zfed bench offers the documented options."""
    result = CliRunner().invoke(main, ["bench", "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--n", "--runs", "--quick", "--full", "--check", "--json", "--only", "foreign"):
        assert option in result.output


def test_key_lookup_without_zope_intid(tmp_path, monkeypatch):
    """Without zope.intid the key lookup baseline is an OOBTree index, and says so."""
    monkeypatch.setitem(sys.modules, "zope.intid", None)  # import fails
    cfg = benchmark.Settings(n=50, runs=1)
    results = benchmark.run(cfg, echo=lambda line: None, directory=tmp_path, only=("keys",))
    work = results["workloads"]["key_lookup_uuid"]
    assert work["baseline_name"].startswith("OOBTree uuid index (zope.intid is not installed")
    assert _positive(work["ratio"])
