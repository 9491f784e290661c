"""Settings: the environment names stay the users' interface, cross-field rules fail at start
with a clear message, and development switches are loud."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from qwenedit.config import Settings
from qwenedit.errors import ConfigError
from qwenedit.logs import configure_logging


def test_environment_names_are_unchanged(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("QWENEDIT_STEPS", "7")
    monkeypatch.setenv("QWENEDIT_LEASE_SECONDS", "90")
    monkeypatch.setenv("QWENEDIT_HEARTBEAT_SECONDS", "15")
    monkeypatch.setenv("QWENEDIT_PRICES", '{"pro": 0.5}')
    monkeypatch.setenv("QWENEDIT_ALLOW_PRIVATE_NETWORK", "10.0.0.0/8")
    monkeypatch.setenv("QWENEDIT_DATA_DIR", str(tmp_path))
    settings = Settings()
    assert (settings.steps, settings.lease_seconds, settings.heartbeat_seconds) == (7, 90, 15)
    assert settings.price_milli("pro") == 500
    assert settings.price_milli("other") == 1000
    assert [str(net) for net in settings.private_network_allowance] == ["10.0.0.0/8"]  # type: ignore[union-attr]
    assert settings.data_dir == tmp_path


def test_a_heartbeat_close_to_the_lease_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"HEARTBEAT_SECONDS .* at most a third"):
        Settings(lease_seconds=20, heartbeat_seconds=10)
    Settings(lease_seconds=30, heartbeat_seconds=10)


def test_postgresql_without_a_secret_key_fails_at_start(tmp_path: Path) -> None:
    settings = Settings(database_url="postgresql://db/qwenedit", data_dir=tmp_path)
    with pytest.raises(ConfigError, match="QWENEDIT_SECRET_KEY is required with PostgreSQL"):
        settings.check_at_start()


def test_development_switches_warn_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    quiet = Settings(data_dir=tmp_path)
    with caplog.at_level(logging.WARNING):
        quiet.check_at_start()
    assert caplog.records == []
    loud = Settings(
        data_dir=tmp_path, allow_private_network="127.0.0.0/8", allow_insecure_callbacks=True
    )
    with caplog.at_level(logging.WARNING):
        loud.check_at_start()
    messages = [record.getMessage() for record in caplog.records]
    assert any("ALLOW_PRIVATE_NETWORK is on (127.0.0.0/8)" in text for text in messages)
    assert any("ALLOW_INSECURE_CALLBACKS is on" in text for text in messages)
    assert all(record.levelno == logging.WARNING for record in caplog.records)


def test_the_generated_secret_key_file_is_private_from_the_start(tmp_path: Path) -> None:
    secret = Settings(data_dir=tmp_path / "data").load_secret_key()
    path = tmp_path / "data" / "secret_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Settings(data_dir=tmp_path / "data").load_secret_key() == secret


def test_json_logs_carry_the_structured_fields(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(Settings(data_dir=tmp_path, log_format="json"))
    try:
        logging.getLogger("qwenedit.test").info(
            "task %s claimed", "t-1", extra={"task_id": "t-1", "attempt": 2, "worker": "w0"}
        )
        line = capsys.readouterr().err.strip().splitlines()[-1]
    finally:
        logging.getLogger().handlers.clear()
    entry = json.loads(line)
    assert entry["message"] == "task t-1 claimed"
    assert (entry["task_id"], entry["attempt"], entry["worker"]) == ("t-1", 2, "w0")
    assert entry["level"] == "INFO" and entry["logger"] == "qwenedit.test"


def test_text_logs_show_the_structured_fields(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(Settings(data_dir=tmp_path))
    try:
        logging.getLogger("qwenedit.test").info("done", extra={"task_id": "t-2", "account": 3})
        line = capsys.readouterr().err.strip().splitlines()[-1]
    finally:
        logging.getLogger().handlers.clear()
    assert line.endswith("qwenedit.test: done [task_id=t-2 account=3]")
