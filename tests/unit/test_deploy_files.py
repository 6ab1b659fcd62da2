"""Static checks of the deployment files: docker-compose.yml, the Dockerfile, Prometheus and Grafana.

No Docker engine is needed: the files are parsed and cross-checked against each other and
against engine.config.Settings, so a renamed setting or service breaks this test, not a deploy.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
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
ALERTS = ROOT / "deploy/prometheus/alerts.yml"
ALERT_TESTS = ROOT / "deploy/prometheus/alerts.test.yml"
CLICKHOUSE_USERS = ROOT / "deploy/clickhouse/users.d/linkrift-database.xml"
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
# What an operator sets for the variables compose requires (`${VAR:?}`): random-looking values.
OPERATOR_ENV = {
    "POSTGRES_PASSWORD": "pg-Q7v2Lk9xWm4RtZ8p",
    "CLICKHOUSE_PASSWORD": "ch-Hn3Ys6Ub1Vc5Xe7d",
    "LINKRIFT_SECRET_KEY": "sk-4f9a0c7e2b8d1f6a3e5c9b0d7a2f4e8c1b6d",
    "LINKRIFT_INTERNAL_TOKEN": "it-8e1d5b3f7a9c2e4d6b0f1a3c5e7d9b2f4a6c",
    "GRAFANA_ADMIN_PASSWORD": "gf-Zp4Wq8Rt2Ym6Un0s",
}


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Resolve compose ${VAR:-default} / ${VAR:?error} references as compose would with `env`
    (default: OPERATOR_ENV) as the only variables set."""
    env = OPERATOR_ENV if env is None else env

    def resolve(m: re.Match[str]) -> str:
        name, op = m.group("name"), m.group("op") or ""
        if env.get(name):
            return env[name]
        if op.endswith("?"):
            raise KeyError(f"compose requires {name}")
        return m.group("default") or ""

    return _VAR.sub(resolve, value.replace("$$", "$"))


def load_yaml(path: Path) -> Any:
    with path.open() as fh:
        return yaml.safe_load(fh)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def env_of(service: dict[str, Any], variables: dict[str, str] | None = None) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): interpolate(str(v), variables) for k, v in env.items()}


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
        assert settings.kafka_idempotence, f"{name}: the idempotent producer must be on"
        assert settings.trust_proxy_headers and settings.trusted_proxies, name


# The old compose fallbacks, the built-in dev defaults and typical example-file values.
PLACEHOLDER_SECRETS = (
    "compose-insecure-secret-key-change-me-0123456789",
    "dev-insecure-change-me",
    "dev-internal-token",
    "changeme",
    "your-secret-key-here-please-replace-it-with-random",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
)


@pytest.mark.parametrize("placeholder", PLACEHOLDER_SECRETS)
@pytest.mark.parametrize("variable", ["LINKRIFT_SECRET_KEY", "LINKRIFT_INTERNAL_TOKEN"])
def test_production_refuses_placeholder_secrets(
    services: dict[str, dict[str, Any]], variable: str, placeholder: str
) -> None:
    from engine.config import SettingsError, load_settings

    known = settings_env_names()
    env = env_of(services["api-1"], {**OPERATOR_ENV, variable: placeholder})
    values = {known[k.upper()]: v for k, v in env.items()}
    with pytest.raises(SettingsError, match=variable):
        load_settings(**values)
    # The same values pass outside production (a laptop keeps working with dev defaults).
    assert Settings(**{**values, "env": "dev"})  # type: ignore[arg-type]


@pytest.mark.parametrize("password", ["linkrift", "postgres", "change-me-please"])
def test_production_refuses_default_database_passwords(
    services: dict[str, dict[str, Any]], password: str
) -> None:
    from engine.config import SettingsError, load_settings

    known = settings_env_names()
    for variable, setting in (
        ("POSTGRES_PASSWORD", "DATABASE_URL"),
        ("CLICKHOUSE_PASSWORD", "CLICKHOUSE_URL"),
    ):
        env = env_of(services["api-1"], {**OPERATOR_ENV, variable: password})
        values = {known[k.upper()]: v for k, v in env.items()}
        with pytest.raises(SettingsError, match=setting):
            load_settings(**values)


def test_compose_secrets_have_no_fallback() -> None:
    """Every password, secret and token is `${VAR:?…}`: compose refuses to start without it."""
    text = COMPOSE.read_text()
    for m in _VAR.finditer(text):
        name = m.group("name")
        if any(word in name for word in ("PASSWORD", "SECRET", "TOKEN")):
            assert (m.group("op") or "").endswith("?"), f"{name} has a fallback: {m.group(0)}"
    for name in OPERATOR_ENV:
        with pytest.raises(KeyError, match=name):
            interpolate(text, {k: v for k, v in OPERATOR_ENV.items() if k != name})


def test_compose_exposes_only_the_load_balancer(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    assert "name" not in compose, "a top-level name: is refused by docker-compose v1"
    published = {}
    for name, svc in services.items():
        for port in svc.get("ports") or []:
            spec = interpolate(str(port))
            published[name] = spec
            if name != "lb":
                assert spec.startswith("127.0.0.1:"), f"{name} publishes {spec} beyond localhost"
    assert "lb" in published
    for name in ("prometheus", "grafana"):
        assert services[name].get("profiles"), f"{name} must not start by default"
    assert not any("enable-lifecycle" in c for c in command_of(services["prometheus"]))


def test_api_trusts_exactly_the_load_balancer(services: dict[str, dict[str, Any]]) -> None:
    lb_address = services["lb"]["networks"]["default"]["ipv4_address"]
    for name, svc in linkrift_services(services).items():
        env = env_of(svc)
        assert env["LINKRIFT_TRUST_PROXY_HEADERS"] == "true", name
        assert env["LINKRIFT_TRUSTED_PROXIES"] == f"{lb_address}/32", name


def test_every_service_has_limits_and_rotated_logs(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        assert svc.get("mem_limit"), f"{name}: no memory limit"
        logging = svc.get("logging") or {}
        assert logging.get("driver") == "json-file" and logging["options"].get("max-size"), name


def test_clickhouse_user_is_limited_to_its_database(services: dict[str, dict[str, Any]]) -> None:
    env = env_of(services["clickhouse"])
    assert env["CLICKHOUSE_DEFAULT_ACCESS_MANAGEMENT"] == "0"
    mounts = {v.split(":")[0]: v.split(":")[1] for v in services["clickhouse"]["volumes"]}
    assert mounts.get("./" + str(CLICKHOUSE_USERS.relative_to(ROOT)), "").startswith(
        "/etc/clickhouse-server/users.d/"
    )
    text = CLICKHOUSE_USERS.read_text()
    user = env["CLICKHOUSE_USER"]
    assert re.search(rf"<{user}>\s*<allow_databases>\s*<database>{env['CLICKHOUSE_DB']}</database>", text), (
        text
    )


def test_third_party_images_pin_a_full_version(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        if is_linkrift(svc):
            continue
        tag = interpolate(svc["image"]).rpartition(":")[2]
        assert re.match(r"v?\d+\.\d+", tag), f"{name}: {svc['image']} is not pinned to a release"


def _compose_command() -> list[str]:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    assert legacy, (
        "neither `docker compose` nor docker-compose is installed (.ci/run installs docker-compose)"
    )
    return [legacy]


def test_compose_file_validates_with_compose() -> None:
    """The file is valid for compose itself (docker-compose v1 or the v2 plugin), with the
    required secrets set, and refused without them."""
    base = {k: v for k, v in os.environ.items() if k not in OPERATOR_ENV and not k.startswith("LINKRIFT_")}
    cmd = [*_compose_command(), "-f", str(COMPOSE), "--profile", "observability", "config", "-q"]
    ok = subprocess.run(cmd, env={**base, **OPERATOR_ENV}, capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0, ok.stderr
    missing = subprocess.run(cmd, env=base, capture_output=True, text=True, cwd=ROOT)
    assert missing.returncode != 0 and "PASSWORD" in missing.stderr + missing.stdout


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
    assert "by (tier)" in exprs
    assert "topic, partition" in exprs


_SELECTOR = re.compile(r"\b(linkrift_[a-z_]+)(\{[^}]*\})?")
_MATCHER = re.compile(r"([a-z_]+)\s*(?:=~|!~|!=|=)")


def exported_metrics() -> dict[str, set[str]]:
    """Every metric the api and the worker register: sample names -> label names."""
    import importlib

    from prometheus_client import REGISTRY

    for module in (
        "api.metrics",
        "api.click_journal",
        "streams.app",
        "streams.metrics",
        "streams.sinks.postgres",
    ):
        importlib.import_module(module)
    out: dict[str, set[str]] = {}
    for collector in list(REGISTRY._collector_to_names):
        labels = set(getattr(collector, "_labelnames", ()))
        for name in REGISTRY._collector_to_names[collector]:
            out[name] = labels | {"le"} if name.endswith("_bucket") else labels
    return out


def all_queries() -> list[str]:
    alerts = [r["expr"] for g in load_yaml(ALERTS)["groups"] for r in g["rules"]]
    return _exprs(json.loads(DASHBOARD.read_text())) + alerts


def test_dashboard_and_alerts_use_exported_metrics_and_labels() -> None:
    """Every linkrift_* series a panel or alert selects is exported, with the labels it filters
    on (the empty hit-ratio panel filtered on a `result` label nobody exported)."""
    exported = exported_metrics()
    for expr in all_queries():
        for name, matchers in _SELECTOR.findall(expr):
            assert name in exported, f"{name} is not exported (in {expr!r})"
            for label in _MATCHER.findall(matchers or ""):
                assert label in exported[name] | {"instance", "job"}, f"{name} has no label {label!r}"


def _promtool() -> str:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing (.ci/run installs Debian's prometheus)"
    return promtool


def test_promtool_checks_the_prometheus_config() -> None:
    config = load_yaml(PROMETHEUS)
    assert config["rule_files"] == ["alerts.yml"]
    result = subprocess.run([_promtool(), "check", "config", str(PROMETHEUS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_alert_rule_unit_tests_pass() -> None:
    result = subprocess.run(
        [_promtool(), "test", "rules", str(ALERT_TESTS)],
        capture_output=True,
        text=True,
        cwd=ALERT_TESTS.parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    tested = set(re.findall(r"alertname: (\w+)", ALERT_TESTS.read_text()))
    defined = {r["alert"] for g in load_yaml(ALERTS)["groups"] for r in g["rules"] if "alert" in r}
    assert defined <= tested, f"alerts without a unit test: {defined - tested}"


def test_prometheus_mounts_its_rules(services: dict[str, dict[str, Any]]) -> None:
    mounts = {
        v.split(":")[0]: v.split(":")[1] for v in services["prometheus"]["volumes"] if v.startswith(".")
    }
    assert mounts.get("./deploy/prometheus/alerts.yml") == "/etc/prometheus/alerts.yml"


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
    assert re.search(r"^HEALTHCHECK .*\n?.*/readyz", text, re.M)
    for directory in ("migrations", "clickhouse", "engine", "api", "streams", "cli"):
        assert re.search(rf"^COPY {directory}/ {directory}/", text, re.M), directory
        assert (ROOT / directory).is_dir(), directory
    assert "pip install" in text and "-e ." in text
    ignored = {line.strip().rstrip("/") for line in DOCKERIGNORE.read_text().splitlines()}
    for needed in ("migrations", "clickhouse", "engine", "api", "streams", "cli", "pyproject.toml"):
        assert needed not in ignored, f".dockerignore drops {needed}"
    assert ".venv" in ignored and ".linkrift" in ignored
