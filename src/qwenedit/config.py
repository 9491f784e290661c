"""Settings: the only place that reads the environment (variables prefixed ``QWENEDIT_``)."""

from __future__ import annotations

import ipaddress
import json
import secrets
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from qwenedit.errors import ConfigError

MIB = 1024 * 1024
SECRET_FILE_NAME = "secret_key"  # noqa: S105 - a file name, not a secret

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Settings(BaseSettings):
    """Every tunable of the server. Durations are seconds, sizes bytes."""

    model_config = SettingsConfigDict(env_prefix="QWENEDIT_", extra="ignore", frozen=True)

    data_dir: Path = Path("./qwenedit-data")
    database_url: str | None = None
    public_url: str | None = None
    secret_key: SecretStr | None = None
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"

    engine: str = "qwen"
    model: str = "Qwen/Qwen-Image-Edit-2509"
    device: str = "cuda"
    dtype: str = "bfloat16"
    steps: int = Field(40, ge=1, le=200)
    true_cfg_scale: float = 4.0
    max_batch: int = Field(6, ge=1, le=6)
    tiny_render_size: int = Field(64, ge=32, le=1024)
    fast: Literal[0, 4, 8] = 0
    """Lightning mode: 4 or 8 steps with the distilled LoRA and CFG off; 0 is off."""
    lightning_lora: str | None = None
    """The Lightning LoRA: a hub repository or a local ``.safetensors`` file (default: the file
    for the model's version in ``lightx2v/Qwen-Image-Lightning``)."""
    offload: Literal["none", "model", "group", "sequential"] = "none"
    vae_tiling: bool = False
    compile: bool = False
    warmup: bool = True
    """Run one edit at start so the first user request is not the slow one."""
    torch_threads: int | None = None

    remote_url: str | None = None
    """Base URL of an OpenAI-style image-edit server for ``--engine remote``."""
    remote_api_key: SecretStr | None = None
    remote_model: str | None = None
    remote_dialect: Literal["openai", "sglang", "vllm-omni"] = "openai"
    remote_timeout: float = 600.0

    prompt_extend: Literal["auto", "local", "openai", "off"] = "auto"
    prompt_extend_url: str | None = None
    """Base URL of an OpenAI-compatible chat endpoint with vision, e.g. ``http://host/v1``."""
    prompt_extend_model: str = "Qwen/Qwen2.5-VL-7B-Instruct"
    prompt_extend_api_key: SecretStr | None = None
    prompt_extend_timeout: float = 30.0

    allow_private_network: Annotated[str, NoDecode] = ""
    allow_insecure_callbacks: bool = False
    ca_bundle: Path | None = None
    """PEM file of extra certificate authorities that outbound HTTPS trusts."""

    price_per_image: Decimal = Decimal(1)
    prices: Annotated[dict[str, Decimal], NoDecode] = Field(default_factory=dict)

    lease_seconds: float = 60.0
    heartbeat_seconds: float = 10.0
    max_attempts: int = 3
    poll_seconds: float = 1.0
    callback_poll_seconds: float = 0.2
    reaper_seconds: float = 5.0
    task_timeout: float = 1800.0
    shutdown_grace: float = 30.0

    max_image_bytes: int = 32 * MIB
    max_body_bytes: int = 40 * MIB
    max_image_pixels: int = 3072 * 3072
    fetch_timeout: float = 30.0
    max_redirects: int = 3

    result_ttl: float = 24 * 3600.0
    upload_ttl: float = 72 * 3600.0
    idempotency_window: float = 24 * 3600.0
    task_retention: float = 7 * 24 * 3600.0

    max_active_per_account: int | None = None
    max_queue_depth: int | None = None
    metrics_token: SecretStr | None = None

    @field_validator("prices", mode="before")
    @classmethod
    def _parse_prices(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value.strip():
                return {}
            try:
                return json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError("QWENEDIT_PRICES must be a JSON object") from exc
        return value

    @cached_property
    def private_network_allowance(self) -> bool | tuple[Network, ...]:
        """``True`` allows every non-global address, a tuple allows just those networks."""
        raw = self.allow_private_network.strip().lower()
        if raw in ("", "0", "false", "no", "off"):
            return False
        if raw in ("1", "true", "yes", "on"):
            return True
        try:
            return tuple(ipaddress.ip_network(part.strip()) for part in raw.split(",") if part)
        except ValueError as exc:
            raise ConfigError(f"QWENEDIT_ALLOW_PRIVATE_NETWORK: {exc}") from exc

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

    def price_milli(self, user_group: str) -> int:
        """Price of one image for a user group, in milli-credits."""
        price = self.prices.get(user_group, self.prices.get("default", self.price_per_image))
        return int(Decimal(price) * 1000)

    def load_secret_key(self) -> bytes:
        """The signing secret. Generated once and kept in the data dir, for SQLite only."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value().encode()
        if not self.is_sqlite:
            raise ConfigError("QWENEDIT_SECRET_KEY is required with PostgreSQL (nodes must agree)")
        path = self.data_dir / SECRET_FILE_NAME
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        return path.read_text().strip().encode()
