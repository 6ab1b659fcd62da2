"""Static checks of the deployment files: docker-compose.yml, the Dockerfile, Prometheus and Grafana.

No Docker engine is needed: the files are parsed and cross-checked against each other and
against engine.config.Settings, so a renamed setting or service breaks this test, not a deploy.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import AliasChoices

from engine.config import Settings

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to parse the deployment files")

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PROMETHEUS = ROOT / "deploy/prometheus/prometheus.yml"
GRAFANA_DATASOURCES = ROOT / "deploy/grafana/provisioning/datasources/datasources.yml"
GRAFANA_PROVIDERS = ROOT / "deploy/grafana/provisioning/dashboards/dashboards.yml"
DASHBOARD = ROOT / "deploy/grafana/dashboards/linkrift.json"

REQUIRED_ENV = ("DATABASE_URL", "REDIS_URL", "KAFKA_BROKER", "CLICKHOUSE_URL")
# The metric names the code exports; the dashboard must chart each of them.
CONTRACT_METRICS = (
    "linkrift_redirect_latency_seconds",
    "linkrift_link_cache_total",
    "linkrift_clicks_produced_total",
    "linkrift_clicks_spooled_total",
    "linkrift_clicks_processed_total",
    "linkrift_sink_batch_size",
    "linkrift_consumer_lag",
)

_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<default>[^}]*))?\}")


def interpolate(value: str) -> str:
    """Resolve compose ${VAR:-default} references to their defaults (as with an empty .env)."""
    return _VAR.sub(lambda m: m.group("default") or "", value.replace("$$", "$"))


def load_yaml(path: Path) -> Any:
    with path.open() as fh:
        return yaml.safe_load(fh)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): interpolate(str(v)) for k, v in env.items()}


def is_linkrift(service: dict[str, Any]) -> bool:
    return "build" in service or interpolate(service.get("image", "")).startswith("linkrift:")


def linkrift_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in services.items() if is_linkrift(svc)}


def command_of(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command") or []
    return cmd.split() if isinstance(cmd, str) else [str(c) for c in cmd]


def settings_env_names() -> dict[str, str]:
    """Every environment variable Settings reads, upper-cased, mapped to its field name."""
    prefix = Settings.model_config.get("env_prefix", "")
    names: dict[str, str] = {}
    for field, info in Settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            for choice in alias.choices:
                if isinstance(choice, str):
                    names[choice.upper()] = field
        elif isinstance(alias, str):
            names[alias.upper()] = field
        else:
            names[f"{prefix}{field}".upper()] = field
    return names


def depends_on(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {d: {"condition": "service_started"} for d in deps}
    return deps


# ------------------------------------------------------------------------------ compose


def test_compose_has_the_stack(services: dict[str, dict[str, Any]]) -> None:
    for name in ("kafka", "postgres", "redis", "clickhouse", "migrate", "prometheus", "grafana"):
        assert name in services, name
    commands = [command_of(s)[:1] for s in linkrift_services(services).values()]
    assert commands.count(["api"]) >= 2, "two api replicas"
    assert commands.count(["worker"]) >= 2, "two workers"
    assert command_of(services["migrate"]) == ["migrate", "up"]


def test_every_image_has_an_explicit_tag(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        assert "image" in svc, f"{name}: no image (services that build must name their image)"
        image = interpolate(svc["image"])
        repo, _, tag = image.rpartition(":")
        assert repo and "/" not in tag, f"{name}: image {image!r} has no tag"
        assert tag and tag != "latest", f"{name}: image {image!r} is not pinned"


def test_linkrift_services_get_the_service_urls(services: dict[str, dict[str, Any]]) -> None:
    lr = linkrift_services(services)
    assert len(lr) >= 5
    for name, svc in lr.items():
        env = env_of(svc)
        for var in REQUIRED_ENV:
            assert env.get(var), f"{name}: {var} is not set"


def test_compose_env_names_are_known_settings(services: dict[str, dict[str, Any]]) -> None:
    known = settings_env_names()
    for name, svc in linkrift_services(services).items():
        unknown = {k for k in env_of(svc) if k.upper() not in known}
        assert not unknown, f"{name}: not read by engine.config.Settings: {sorted(unknown)}"


def test_compose_env_validates_as_settings(services: dict[str, dict[str, Any]]) -> None:
    known = settings_env_names()
    for name, svc in linkrift_services(services).items():
        values = {known[k.upper()]: v for k, v in env_of(svc).items()}
        settings = Settings(**values)  # type: ignore[arg-type]
        assert settings.env == "production", name
        assert not settings.clickhouse_embedded, f"{name}: compose must use the ClickHouse server"
        assert settings.kafka_bootstrap == "kafka:9092", name
        assert settings.secret_key != Settings.model_fields["secret_key"].default, name


def test_depends_on_targets_exist(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        for target, spec in depends_on(svc).items():
            assert target in services, f"{name} depends on unknown service {target}"
            cond = spec.get("condition", "service_started")
            if cond == "service_healthy":
                assert services[target].get("healthcheck"), f"{name} waits for {target}'s healthcheck"
                assert not services[target]["healthcheck"].get("disable"), target


def test_linkrift_services_wait_for_migrate_and_infrastructure(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in linkrift_services(services).items():
        if name == "migrate":
            continue
        deps = depends_on(svc)
        assert deps.get("migrate", {}).get("condition") == "service_completed_successfully", name
        for infra in ("postgres", "redis", "kafka", "clickhouse"):
            assert deps.get(infra, {}).get("condition") == "service_healthy", f"{name} -> {infra}"
        assert svc.get("healthcheck"), f"{name}: no healthcheck"
    assert services["migrate"].get("restart", "no") == "no"


def test_volumes_are_declared_and_workers_keep_their_own_state(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    declared = set(compose.get("volumes") or {})
    for name, svc in services.items():
        for vol in svc.get("volumes") or []:
            source = vol.split(":", 1)[0] if isinstance(vol, str) else vol.get("source", "")
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name}: bind mount {source} does not exist"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"

    worker_volumes = []
    for name, svc in linkrift_services(services).items():
        if command_of(svc)[:1] != ["worker"]:
            continue
        data_dir = env_of(svc)["LINKRIFT_DATA_DIR"]
        mounts = {v.split(":")[1]: v.split(":")[0] for v in svc.get("volumes") or []}
        assert data_dir in mounts, f"{name}: LINKRIFT_DATA_DIR {data_dir} is not on a volume"
        worker_volumes.append(mounts[data_dir])
    assert len(worker_volumes) == len(set(worker_volumes)) >= 2, "each worker needs its own volume"


def test_kafka_is_reachable_as_kafka_9092(services: dict[str, dict[str, Any]]) -> None:
    env = env_of(services["kafka"])
    assert "broker" in env["KAFKA_PROCESS_ROLES"] and "controller" in env["KAFKA_PROCESS_ROLES"]
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"].split(",")


def test_database_credentials_match_the_urls(services: dict[str, dict[str, Any]]) -> None:
    ch = env_of(services["clickhouse"])
    pg = env_of(services["postgres"])
    ch_url = (
        f"http://{ch['CLICKHOUSE_USER']}:{ch['CLICKHOUSE_PASSWORD']}@clickhouse:8123/{ch['CLICKHOUSE_DB']}"
    )
    pg_url = f"postgresql://{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}@postgres:5432/{pg['POSTGRES_DB']}"
    assert ch["CLICKHOUSE_DB"] == "linkrift"
    for name, svc in linkrift_services(services).items():
        env = env_of(svc)
        assert env["CLICKHOUSE_URL"] == ch_url, name
        assert env["DATABASE_URL"] == pg_url, name
        assert env["REDIS_URL"].startswith("redis://redis:6379"), name


# --------------------------------------------------------------------------- prometheus


def test_prometheus_targets_are_compose_services(services: dict[str, dict[str, Any]]) -> None:
    config = load_yaml(PROMETHEUS)
    scraped: set[str] = set()
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, _, port = target.rpartition(":")
                assert host in services, f"{job['job_name']}: {host} is not a compose service"
                assert port.isdigit(), target
                scraped.add(target)
    for name, svc in linkrift_services(services).items():
        role = command_of(svc)[:1]
        env = env_of(svc)
        if role == ["api"]:
            assert f"{name}:{env['LINKRIFT_PORT']}" in scraped, f"{name} is not scraped"
        elif role == ["worker"]:
            assert f"{name}:{env['LINKRIFT_WORKER_PORT']}" in scraped, f"{name} is not scraped"


# ------------------------------------------------------------------------------ grafana


def _datasource_uids(node: Any) -> set[str]:
    uids: set[str] = set()
    if isinstance(node, dict):
        ds = node.get("datasource")
        if isinstance(ds, dict) and "uid" in ds:
            uids.add(ds["uid"])
        for value in node.values():
            uids |= _datasource_uids(value)
    elif isinstance(node, list):
        for value in node:
            uids |= _datasource_uids(value)
    return uids


def _exprs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["expr"]] if isinstance(node.get("expr"), str) else []
        return found + [e for v in node.values() for e in _exprs(v)]
    if isinstance(node, list):
        return [e for v in node for e in _exprs(v)]
    return []


def test_grafana_dashboard_uses_the_provisioned_datasource() -> None:
    provisioned = {ds["uid"] for ds in load_yaml(GRAFANA_DATASOURCES)["datasources"]}
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["panels"]
    uids = _datasource_uids(dashboard)
    assert uids and uids <= provisioned, f"dashboard datasources {uids} vs provisioned {provisioned}"
    prometheus_url = next(ds["url"] for ds in load_yaml(GRAFANA_DATASOURCES)["datasources"])
    assert prometheus_url == "http://prometheus:9090"


def test_grafana_dashboard_charts_the_metric_contract() -> None:
    exprs = " ".join(_exprs(json.loads(DASHBOARD.read_text())))
    for metric in CONTRACT_METRICS:
        assert metric in exprs, f"no panel for {metric}"
    assert "by (outcome)" in exprs
    assert "tier, result" in exprs
    assert "topic, partition" in exprs


def test_grafana_provisioning_is_mounted(services: dict[str, dict[str, Any]]) -> None:
    mounts = dict(
        (v.split(":")[1], v.split(":")[0]) for v in services["grafana"]["volumes"] if v.startswith(".")
    )
    assert mounts.get("/etc/grafana/provisioning") == "./deploy/grafana/provisioning"
    provider_path = load_yaml(GRAFANA_PROVIDERS)["providers"][0]["options"]["path"]
    assert mounts.get(provider_path) == "./deploy/grafana/dashboards"


# --------------------------------------------------------------------------- dockerfile


def test_dockerfile_shape() -> None:
    text = DOCKERFILE.read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert len(froms) >= 2, "multi-stage build"
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", text, re.M)
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and not users[-1].startswith(("root", "0")), "runs as a non-root user"
    assert re.search(r'^ENTRYPOINT \["linkrift"\]', text, re.M)
    assert re.search(r"^HEALTHCHECK .*\n?.*/healthz", text, re.M)
    for directory in ("migrations", "clickhouse", "engine", "api", "streams", "cli"):
        assert re.search(rf"^COPY {directory}/ {directory}/", text, re.M), directory
        assert (ROOT / directory).is_dir(), directory
    assert "pip install" in text and "-e ." in text
    ignored = {line.strip().rstrip("/") for line in DOCKERIGNORE.read_text().splitlines()}
    for needed in ("migrations", "clickhouse", "engine", "api", "streams", "cli", "pyproject.toml"):
        assert needed not in ignored, f".dockerignore drops {needed}"
    assert ".venv" in ignored and ".linkrift" in ignored
