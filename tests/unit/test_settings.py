"""Settings: defaults, environment names, one-line errors naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import SettingsError, env_name, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "REDIS_URL", "KAFKA_BROKER", "CLICKHOUSE_URL", "GEOIP_DB", "SMTP_URL"):
        monkeypatch.delenv(name, raising=False)
    import os

    for name in list(os.environ):
        if name.startswith("LINKRIFT_"):
            monkeypatch.delenv(name, raising=False)


def test_defaults_point_at_loopback() -> None:
    s = load_settings()
    assert s.database_url.startswith("postgresql://") and "127.0.0.1:5432" in s.database_url
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.kafka_bootstrap == "127.0.0.1:9092"
    assert s.clickhouse_embedded
    assert s.chdb_path == (Path.cwd() / ".linkrift" / "clickhouse").resolve()
    assert s.host == "127.0.0.1" and s.port == 8080


def test_standard_names_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@db:5432/x")
    monkeypatch.setenv("KAFKA_BROKER", "k1:9092,k2:9092")
    monkeypatch.setenv("CLICKHOUSE_URL", "http://u:p@ch:8123/db")
    monkeypatch.setenv("LINKRIFT_PORT", "9000")
    monkeypatch.setenv("LINKRIFT_STORE_IP", "false")
    s = load_settings()
    assert s.database_url == "postgres://u:p@db:5432/x"
    assert s.kafka_broker == "kafka://k1:9092,k2:9092" and s.kafka_bootstrap == "k1:9092,k2:9092"
    assert not s.clickhouse_embedded
    assert s.port == 9000 and s.store_ip is False


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("DATABASE_URL", "mysql://x/y"),
        ("REDIS_URL", "http://nope"),
        ("KAFKA_BROKER", "no-port-here"),
        ("CLICKHOUSE_URL", "sqlite:///x"),
        ("LINKRIFT_PORT", "abc"),
        ("LINKRIFT_PORT", "70000"),
        ("LINKRIFT_NAMESPACE", "has space"),
        ("LINKRIFT_ENV", "staging"),
        ("LINKRIFT_TOPIC_PARTITIONS", "0"),
        ("LINKRIFT_WEBHOOK_LEASE_SECONDS", "10"),  # not above the 10 s delivery timeout
    ],
)
def test_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, var: str, value: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith(f"{var}:")
    assert "\n" not in message


def test_webhook_lease_and_retry_schedule_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.webhooks.delivery import DeliveryPolicy

    monkeypatch.setenv("LINKRIFT_WEBHOOK_RETRY_SCHEDULE", "0.5,1,2")
    monkeypatch.setenv("LINKRIFT_WEBHOOK_TIMEOUT_SECONDS", "2")
    monkeypatch.setenv("LINKRIFT_WEBHOOK_LEASE_SECONDS", "3")
    policy = DeliveryPolicy.from_settings(load_settings())
    assert (policy.schedule, policy.timeout, policy.lease_seconds) == ((0.5, 1.0, 2.0), 2.0, 3.0)


def test_relative_and_absolute_chdb_paths() -> None:
    assert load_settings(clickhouse_url="chdb:///var/lib/ch").chdb_path == Path("/var/lib/ch")
    assert load_settings(clickhouse_url="chdb:///./rel/ch").chdb_path == (Path.cwd() / "rel/ch").resolve()


def test_env_name_mapping() -> None:
    assert env_name("database_url") == "DATABASE_URL"
    assert env_name("DATABASE_URL") == "DATABASE_URL"
    assert env_name("sink_batch_size") == "LINKRIFT_SINK_BATCH_SIZE"


def test_cli_reports_bad_setting_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli.main import main

    monkeypatch.setenv("LINKRIFT_PORT", "not-a-port")
    with pytest.raises(SystemExit) as info:
        main(["migrate", "status"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("linkrift: configuration error: LINKRIFT_PORT:") and "\n" not in err
