"""Settings: the only place that reads the environment (variables prefixed ``QWENEDIT_``, and
the AWS SDK's own names for the S3 endpoint and credentials)."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from urllib.parse import unquote, urlsplit

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from qwenedit.errors import ConfigError
from qwenedit.setting_groups import (
    SIGV4_MAX_EXPIRY,
    BillingSettings,
    LimitSettings,
    ModelSettings,
    NodeSettings,
    OutboundSettings,
    PromptExtendSettings,
    QueueSettings,
    RetentionSettings,
    S3Location,
    ServerSettings,
    StorageSettings,
    StreamSettings,
)

log = logging.getLogger(__name__)

SECRET_FILE_NAME = "secret_key"  # noqa: S105 - a file name, not a secret

HEARTBEATS_PER_LEASE = 3


class Settings(
    BaseSettings,
    NodeSettings,
    ModelSettings,
    PromptExtendSettings,
    OutboundSettings,
    BillingSettings,
    QueueSettings,
    LimitSettings,
    ServerSettings,
    RetentionSettings,
    StorageSettings,
    StreamSettings,
):
    """Every tunable of the server, read once from ``QWENEDIT_*`` (and four ``AWS_*``)
    variables. Durations are seconds, sizes bytes. A module that needs one part is typed with
    that part (a ``Group``): it receives this object and sees only its own fields."""

    model_config = SettingsConfigDict(
        env_prefix="QWENEDIT_",
        extra="ignore",
        frozen=True,
        validate_by_name=True,
        validate_by_alias=True,
    )

    @model_validator(mode="after")
    def _cross_checks(self) -> Settings:
        if self.heartbeat_seconds * HEARTBEATS_PER_LEASE > self.lease_seconds:
            raise ValueError(
                f"QWENEDIT_HEARTBEAT_SECONDS ({self.heartbeat_seconds:g}) must be at most a third "
                f"of QWENEDIT_LEASE_SECONDS ({self.lease_seconds:g}), so that one late heartbeat "
                "does not lose the lease"
            )
        if self.result_links == "presigned" and self.result_ttl > SIGV4_MAX_EXPIRY:
            raise ValueError(
                "QWENEDIT_RESULT_LINKS=presigned: S3 presigned URLs last at most 7 days, "
                f"QWENEDIT_RESULT_TTL is {self.result_ttl:g} s"
            )
        return self

    @property
    def blob_location(self) -> Path | S3Location:
        """The directory of a ``file://`` store (``<DATA_DIR>/blobs`` when unset) or the
        bucket and prefix of an ``s3://`` one."""
        if self.storage_url is None:
            return self.data_dir / "blobs"
        return self.s3_location or Path(unquote(urlsplit(self.storage_url).path))

    @property
    def resolved_database_url(self) -> str:
        """The SQLAlchemy async URL; SQLite in the data dir unless told otherwise."""
        url = self.database_url or f"sqlite:///{(self.data_dir / 'qwenedit.db').resolve()}"
        for plain, driver in (
            ("postgresql://", "postgresql+asyncpg://"),
            ("postgres://", "postgresql+asyncpg://"),
            ("sqlite://", "sqlite+aiosqlite://"),
        ):
            if url.startswith(plain):
                return driver + url[len(plain) :]
        return url

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    def load_secret_key(self) -> bytes:
        """The signing secret. Generated once and kept in the data dir, for SQLite only."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value().encode()
        if not self.is_sqlite:
            raise ConfigError("QWENEDIT_SECRET_KEY is required with PostgreSQL (nodes must agree)")
        path = self.data_dir / SECRET_FILE_NAME
        if not path.exists():
            self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as secret_file:
                secret_file.write(secrets.token_urlsafe(48))
        return path.read_text().strip().encode()

    def check_at_start(self) -> None:
        """What ``serve`` and ``worker`` check before they start: ``ConfigError`` for settings
        that cannot work, a WARNING for each development switch that is on (DESIGN §6)."""
        self.load_secret_key()
        allowance = self.private_network_allowance
        if allowance is not False:
            shown = "all" if allowance is True else ", ".join(str(net) for net in allowance)
            log.warning(
                "QWENEDIT_ALLOW_PRIVATE_NETWORK is on (%s): image URLs and callbacks may reach "
                "internal addresses; never use this on a server exposed to the internet",
                shown,
            )
        if self.allow_insecure_callbacks:
            log.warning(
                "QWENEDIT_ALLOW_INSECURE_CALLBACKS is on: callbacks may use plain http://, so "
                "their bodies and signatures travel unencrypted"
            )
