"""deploy/'s Grafana dashboard and Prometheus alerting rules, checked with the real promtool
(Debian's, unpacked by `make promtool`) and against the metrics the service really exports.

Without promtool the promtool tests skip, saying why, except under GENVAULT_REQUIRE_PROMTOOL
(CI), where they fail.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask.testing import FlaskClient
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from service.app import create_app
from service.db.migrate import upgrade
from service.db.models import Job, Task
from service.db.types import utcnow
from service.jobs import records
from service.jobs.states import JobStatus
from service.tasks.kinds import TaskKind
from service.wiring import Container, build
from tests.support.app import AUTH, make_settings
from tests.support.receivers import start_receiver

pytestmark = pytest.mark.timeout(60)

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "genvault-rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "genvault-rules.test.yml"
EXAMPLE_CONFIG = DEPLOY / "prometheus" / "prometheus.example.yml"
DASHBOARD = DEPLOY / "grafana" / "genvault.json"

# Series Prometheus writes itself for every target it scrapes; no program exports them.
PROMETHEUS_OWN = {"up"}
# Labels Prometheus attaches to every scraped series.
TARGET_LABELS = {"job", "instance"}
# What `genvault worker` imports: its metrics port serves the default registry of these.
WORKER_MODULES = (
    "service.wiring",
    "service.tasks.worker",
    "service.archive.pipeline",
    "service.events.delivery",
    "service.fetch.downloader",
)
# The names a family of each type puts in the exposition (prometheus_client, text format).
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
}
# Grafana's variables, replaced by values Prometheus accepts when the queries are checked.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "6h",
    "$job": "genvault.*",
}


@pytest.fixture(scope="module")
def promtool() -> str:
    # On PATH, or where `make promtool` put it: beside this environment's python.
    found = shutil.which("promtool") or shutil.which(
        "promtool", path=str(Path(sys.executable).parent)
    )
    if found is None:
        reason = (
            "promtool not found on PATH nor in .venv/bin (`make promtool` unpacks it from "
            "Debian's prometheus package)"
        )
        if os.environ.get("GENVAULT_REQUIRE_PROMTOOL"):
            pytest.fail(f"promtool is required here (GENVAULT_REQUIRE_PROMTOOL): {reason}")
        pytest.skip(reason)
    return found


def run_promtool(promtool: str, *args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


# --- reading the files ---------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def alerting_rules() -> list[dict[str, Any]]:
    return [r for g in load_yaml(RULES)["groups"] for r in g["rules"] if "alert" in r]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for panel in dashboard()["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))  # a collapsed row keeps its panels inside
    return found


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every query of every panel."""
    return [
        (panel["title"], target["expr"])
        for panel in panels()
        for target in panel.get("targets", [])
    ]


def every_query() -> list[tuple[str, str]]:
    return [(r["alert"], r["expr"]) for r in alerting_rules()] + dashboard_queries()


# --- a small PromQL reader: metric names and the labels used with them ----------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_VARIABLE = re.compile(r"\$\{?\w+\}?")
_RANGE = re.compile(r"\[[^\]]*\]")
_DURATION_OR_NUMBER = re.compile(r"(?<![\w:])\d+(?:\.\d+)?(?:[eE][+-]?\d+|[smhdwy]|ms)?(?![\w:])")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def _without_strings(expr: str) -> str:
    return _STRING.sub('""', _VARIABLE.sub("1m", expr))


def metric_names(expr: str) -> set[str]:
    """The series names an expression selects (not its functions, keywords or labels)."""
    text = re.sub(r"\{[^}]*\}", " ", _without_strings(expr))
    text = _GROUPING.sub(" ", _RANGE.sub(" ", text))
    text = _DURATION_OR_NUMBER.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        if text[match.end() :].lstrip().startswith("("):
            continue  # a function or an aggregation
        if match.group().lower() not in _KEYWORDS:
            names.add(match.group())
    return names


def _group_after(text: str, start: int) -> str:
    """The parenthesised expression starting at or after ``start``."""
    open_at = text.index("(", start)
    depth = 0
    for i in range(open_at, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return text[open_at : i + 1]
    raise AssertionError(f"unbalanced parentheses in {text!r}")


def label_uses(expr: str) -> list[tuple[set[str], set[str]]]:
    """(labels, the metrics they must belong to): each selector's matchers, and each
    ``by (...)`` with the metrics of the expression it aggregates."""
    text = _without_strings(expr)
    uses = [
        ({m.group(1) for m in _MATCHER.finditer(s.group(2))}, {s.group(1)})
        for s in _SELECTOR.finditer(text)
    ]
    for grouping in re.finditer(r"\bby\s*\(([^)]*)\)", text):
        labels = {label.strip() for label in grouping.group(1).split(",") if label.strip()}
        uses.append((labels, metric_names(_group_after(text, grouping.end()))))
    return uses


def test_the_promql_reader() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, kind) (rate(genvault_task_seconds_bucket{job=~"a"}'
        "[$__rate_interval]))) > 0.5 and topk(10, max(up offset 5m)) / "
        'sum without (x) (genvault_b{l="y{z}"}) unless on (k) genvault_c'
    )
    assert metric_names(expr) == {"genvault_task_seconds_bucket", "up", "genvault_b", "genvault_c"}
    assert ({"job"}, {"genvault_task_seconds_bucket"}) in label_uses(expr)
    assert ({"le", "kind"}, {"genvault_task_seconds_bucket"}) in label_uses(expr)
    assert ({"l"}, {"genvault_b"}) in label_uses(expr)


# --- what the service exports ---------------------------------------------------------------


def exported(text: str) -> set[str]:
    """Every series name an exposition can hold, families with no sample yet included."""
    return {
        family.name + suffix
        for family in text_string_to_metric_families(text)
        for suffix in SUFFIXES.get(family.type, ("",))
    }


def label_names() -> dict[str, set[str]]:
    """Series name → the label names its metric declares, from the default registry."""
    found: dict[str, set[str]] = {}
    for name, collector in REGISTRY._names_to_collectors.items():
        found[name] = set(getattr(collector, "_labelnames", ()))
    return found


def test_every_metric_the_dashboard_and_rules_name_is_exported(client: FlaskClient) -> None:
    web = client.get("/metrics")
    assert web.status_code == 200
    for module in WORKER_MODULES:
        importlib.import_module(module)
    # What the worker's metrics port serves: the default registry of the same code.
    worker = generate_latest(REGISTRY).decode()
    available = exported(web.get_data(as_text=True)) | exported(worker) | PROMETHEUS_OWN
    labels = label_names()

    missing: list[str] = []
    for where, expr in every_query():
        names = metric_names(expr)
        assert names, f"{where}: no metric found in {expr!r}"
        missing += [f"{where}: {name}" for name in sorted(names - available)]
        for used, metrics in label_uses(expr):
            declared = set(TARGET_LABELS)
            for name in metrics:
                declared |= labels.get(name, set())
                declared |= {"le"} if name.endswith("_bucket") else set()
            unknown = used - declared
            assert not unknown, f"{where}: labels {sorted(unknown)} not on {sorted(metrics)}"
    assert not missing, f"not exported by the service: {missing}"


# --- the rules ------------------------------------------------------------------------------


def test_promtool_checks_the_rules_and_the_example_configuration(promtool: str) -> None:
    output = run_promtool(promtool, "check", "rules", str(RULES))
    assert f"SUCCESS: {len(alerting_rules())} rules found" in output
    # The example prometheus.yml, and the rule file it loads.
    assert "SUCCESS" in run_promtool(promtool, "check", "config", str(EXAMPLE_CONFIG))


def test_promtool_unit_tests_of_the_rules_pass(promtool: str) -> None:
    output = run_promtool(promtool, "test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert "SUCCESS" in output


def test_every_alert_is_tested_firing_and_quiet() -> None:
    rules = alerting_rules()
    cases = [case for test in load_yaml(RULE_TESTS)["tests"] for case in test["alert_rule_test"]]
    for rule in rules:
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]
    for name in {rule["alert"] for rule in rules}:
        mine = [case for case in cases if case["alertname"] == name]
        assert any(not case.get("exp_alerts") for case in mine), f"{name} never tested quiet"
        fired = {
            alert["exp_labels"]["severity"]
            for case in mine
            for alert in case.get("exp_alerts") or []
        }
        severities = {rule["labels"]["severity"] for rule in rules if rule["alert"] == name}
        assert fired == severities, f"{name}: fired {fired}, has {severities}"


# --- the dashboard --------------------------------------------------------------------------


def test_the_dashboard_is_a_grafana_dashboard_on_a_chosen_prometheus() -> None:
    board = dashboard()
    assert (board["uid"], board["title"]) == ("genvault", "genvault")  # links and provisioning
    assert board["schemaVersion"] >= 36 and board["id"] is None
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    chosen = {"type": "prometheus", "uid": "${datasource}"}
    ids = [panel["id"] for panel in panels()]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in panels():
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == chosen, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == chosen and target["expr"].strip(), panel["title"]


def test_the_dashboard_queries_are_valid_promql(promtool: str, tmp_path: Path) -> None:
    # promtool parses each query as a recording rule, Grafana's variables filled in.
    rules = []
    for n, (_title, query) in enumerate(dashboard_queries()):
        expr = query
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"a Grafana variable this test does not know: {query}"
        rules.append({"record": f"dashboard:query_{n}", "expr": expr})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    output = run_promtool(promtool, "check", "rules", str(path))
    assert f"SUCCESS: {len(rules)} rules found" in output


# --- the metrics added for them, recorded where they happen ---------------------------------


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def new_job(c: Container) -> str:
    job_id = records.new_job_id()
    with c.db.transaction() as session:
        session.add(
            Job(
                id=job_id,
                track_id=records.new_track_id(),
                endpoint="modelslab/text2img",
                status=JobStatus.QUEUED,
                params={"prompt": "a cat"},
                meta={},
            )
        )
    return job_id


def test_readiness_and_the_queue_at_each_scrape(container: Container, client: FlaskClient) -> None:
    late, scheduled = new_job(container), new_job(container)
    with container.db.transaction() as session:
        container.queue.enqueue(session, TaskKind.SUBMIT, job_id=late)
        container.queue.enqueue(session, TaskKind.POLL, job_id=scheduled, delay=3600)
    ninety_seconds_ago = utcnow() - timedelta(seconds=90)
    with container.db.transaction() as session:
        session.execute(
            update(Task).where(Task.job_id == late).values(run_after=ninety_seconds_ago)
        )
    assert client.get("/metrics").status_code == 200
    assert sample("genvault_ready", check="database") == 1
    assert sample("genvault_ready", check="archive") == 1
    assert sample("genvault_tasks_queued", kind="submit") == 1
    assert sample("genvault_tasks_queued", kind="poll") == 0  # not due for an hour
    assert 90 <= sample("genvault_task_oldest_queued_seconds", kind="submit") < 150
    assert sample("genvault_task_oldest_queued_seconds", kind="archive") == 0


def test_time_to_archived_is_observed_when_a_job_is_archived(container: Container) -> None:
    job_id = new_job(container)
    before = sample("genvault_job_archived_seconds_count", endpoint="modelslab/text2img")
    total = sample("genvault_job_archived_seconds_sum", endpoint="modelslab/text2img")
    with container.db.transaction() as session:
        job = records.get_job(session, job_id, for_update=True)
        job.created_at = utcnow() - timedelta(seconds=42)
    for status in (JobStatus.SUBMITTED, JobStatus.PROCESSING, JobStatus.ARCHIVING):
        with container.db.transaction() as session:
            assert records.advance(records.get_job(session, job_id, for_update=True), status)
    assert sample("genvault_job_archived_seconds_count", endpoint="modelslab/text2img") == before
    with container.db.transaction() as session:
        assert records.advance(records.get_job(session, job_id), JobStatus.ARCHIVED)
    after = sample("genvault_job_archived_seconds_count", endpoint="modelslab/text2img")
    assert after == before + 1
    spent = sample("genvault_job_archived_seconds_sum", endpoint="modelslab/text2img") - total
    assert 42 <= spent < 60


@pytest.fixture
def events_container(database_url: str, tmp_path: Path) -> Iterator[Container]:
    c = build(
        make_settings(
            database_url,
            tmp_path,
            events_allowed_networks="127.0.0.1/32",
            events_retry_schedule="0.1,0.1",
            events_timeout=2,
            worker_poll_interval=0.1,
        )
    )
    upgrade(c.db.engine)
    try:
        yield c
    finally:
        c.close()


def test_failed_delivery_attempts_are_counted_by_endpoint(events_container: Container) -> None:
    c = events_container
    api = create_app(container=c).test_client()
    failing = start_receiver()
    failing.status = 500
    try:
        created = api.post("/v1/endpoints", json={"url": failing.url}, headers=AUTH)
        assert created.status_code == 201, created.get_json()
        endpoint_id = created.get_json()["id"]
        with c.db.transaction() as session:
            job = records.get_job(session, new_job(c), for_update=True)
            assert records.fail(job, "provider_failed", "the provider said no")  # job.failed
        worker = c.worker(concurrency=2)
        deadline = time.monotonic() + 20
        failures = 0.0
        while failures < 3 and time.monotonic() < deadline:  # the first attempt, two retries
            worker.run_once()
            failures = sample("genvault_event_endpoint_failures_total", endpoint_id=endpoint_id)
            time.sleep(0.05)
        assert failures == 3
        assert len(failing.received) == 3
        text = api.get("/metrics").get_data(as_text=True)
        assert f'genvault_event_endpoint_failures_total{{endpoint_id="{endpoint_id}"}} 3.0' in text
    finally:
        failing.server.shutdown()
        failing.server.server_close()


def test_metrics_are_served_without_the_database_or_the_archive(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    # Nothing listens on port 9 (discard): the connection is refused at once.
    settings = make_settings(
        "postgresql+psycopg://genvault:x@127.0.0.1:9/genvault",
        tmp_path,
        archive_url=f"file://{blocker / 'archive'}",
    )
    c = build(settings)
    try:
        client = create_app(container=c).test_client()
        assert client.get("/readyz").status_code == 503
        answer = client.get("/metrics")
        assert answer.status_code == 200  # the counters still reach Prometheus
        assert sample("genvault_ready", check="database") == 0
        assert sample("genvault_ready", check="archive") == 0
    finally:
        c.close()
