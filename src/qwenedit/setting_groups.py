"""The parts of the settings, each for the modules that need only that part. ``config.Settings``
is all of them at once and the only reader of the environment; a module typed with a group
receives that one object and sees only its own fields."""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from qwenedit.errors import ConfigError

MIB = 1024 * 1024

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Group(BaseModel):
    """A part of the settings, for the modules that need only that part."""

    model_config = ConfigDict(frozen=True)


class NodeSettings(Group):
    """Where this process keeps its state and how it talks about itself."""

    data_dir: Path = Path("./qwenedit-data")
    database_url: str | None = None
    public_url: str | None = None
    secret_key: SecretStr | None = None
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    metrics_token: SecretStr | None = None
    start_timeout: float = Field(30.0, ge=0)
    """How long ``serve`` and ``worker`` wait for the database and the blob store at start
    before giving up; afterwards outages are waited out for as long as they last."""


class ModelSettings(Group):
    """The engine and its model (``--engine`` and the flags that go with it)."""

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


class PromptExtendSettings(Group):
    prompt_extend: Literal["auto", "local", "openai", "off"] = "auto"
    prompt_extend_url: str | None = None
    """Base URL of an OpenAI-compatible chat endpoint with vision, e.g. ``http://host/v1``."""
    prompt_extend_model: str = "Qwen/Qwen2.5-VL-7B-Instruct"
    prompt_extend_api_key: SecretStr | None = None
    prompt_extend_timeout: float = 30.0


class OutboundSettings(Group):
    """Every URL the server fetches or posts to (DESIGN §6)."""

    allow_private_network: Annotated[str, NoDecode] = ""
    allow_insecure_callbacks: bool = False
    ca_bundle: Path | None = None
    """PEM file of extra certificate authorities that outbound HTTPS trusts."""
    fetch_timeout: float = 30.0
    max_redirects: int = 3

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


class BillingSettings(Group):
    """Prices and the admission limits checked when a task is created."""

    price_per_image: Decimal = Decimal(1)
    prices: Annotated[dict[str, Decimal], NoDecode] = Field(default_factory=dict)
    max_active_per_account: int | None = None
    max_queue_depth: int | None = None

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

    def price_milli(self, user_group: str) -> int:
        """Price of one image for a user group, in milli-credits."""
        price = self.prices.get(user_group, self.prices.get("default", self.price_per_image))
        return int(Decimal(price) * 1000)


class QueueSettings(Group):
    """Leases, polling and the life of a task on a worker."""

    lease_seconds: float = Field(60.0, gt=0)
    heartbeat_seconds: float = Field(10.0, gt=0)
    max_attempts: int = Field(3, ge=1)
    poll_seconds: float = Field(30.0, gt=0)
    """The slow fallback: workers are woken by a notification when a task is queued (and when
    their LISTEN connection ends; on SQLite, within a second of another process's commit);
    this poll covers one that never arrived (a connection gone silently deaf). Each look is a
    claim, a few ms of CPU, so an idle worker looks rarely."""
    callback_poll_seconds: float = Field(30.0, gt=0)
    """The slow fallback: dispatchers are woken at the commit that queues a callback, and
    sleep until the next retry falls due; this poll covers a wake-up that never arrived."""
    reaper_seconds: float = Field(5.0, gt=0)
    """The shortest pause between two lease passes of the reaper, which otherwise looks when
    the earliest running lease runs out, and once a lease when none is running."""
    task_timeout: float = Field(1800.0, gt=0)
    shutdown_grace: float = Field(30.0, ge=0)


class LimitSettings(Group):
    """Sizes of what clients send."""

    max_image_bytes: int = Field(32 * MIB, gt=0)
    max_body_bytes: int = Field(40 * MIB, gt=0)
    max_image_pixels: int = Field(3072 * 3072, gt=0)


class ServerSettings(Group):
    """HTTP connections (``api.connections``): how long a client may take, how many may be open."""

    header_timeout: float = Field(10.0, gt=0)
    """Seconds from a connection's opening (kept alive: from a request's first byte) until its
    request head is complete."""
    body_timeout: float = Field(20.0, gt=0)
    """Seconds a request body gets to start arriving; each ``body_min_rate`` bytes received
    add one more, so this bounds a stall or a trickle, never a steady upload."""
    body_min_rate: int = Field(16 * 1024, gt=0)
    """Bytes per second a body must keep up on average once its first allowance is used."""
    keepalive_timeout: float = Field(15.0, gt=0)
    """Seconds a connection may stay idle between requests."""
    max_connections: int = Field(512, ge=1)
    """Open connections at most; one more is answered 503 with Retry-After and closed."""


class RetentionSettings(Group):
    """How long things are kept."""

    result_ttl: float = 24 * 3600.0
    upload_ttl: float = 72 * 3600.0
    idempotency_window: float = 24 * 3600.0
    task_retention: float = 7 * 24 * 3600.0
    retention_sweep_seconds: float = Field(300.0, gt=0)
    """How often the reaper deletes what outlived the times above (the lease pass that requeues
    lost tasks has its own schedule, see ``reaper_seconds``). A sweep is five queries, and these
    times are hours; what outlived them is refused when asked for, whether or not it has been
    deleted yet, so the sweep only frees space and may run rarely."""


class StreamSettings(Group):
    """Clients that wait on the server: event streams and the synchronous OpenAI-style edit."""

    event_poll_seconds: float = Field(0.25, gt=0)
    """How often an event stream looks at its task; it reads the database, so a stream on any
    API node sees every change."""
    max_streams_per_account: int = Field(8, ge=1)
    """Open event streams one account may hold on one API node; more are a 429."""
    sync_timeout: float = Field(600.0, gt=0)
    """How long ``POST /v1/images/edits`` waits for its task before answering an error."""


SIGV4_MAX_EXPIRY = 7 * 24 * 3600
"""The longest a SigV4 presigned URL may be valid."""
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX_SEGMENT = re.compile(r"^[A-Za-z0-9._-]+$")


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str


class StorageSettings(Group):
    """Where blobs (results, uploads, inputs) live. ``storage_url`` is ``file:///abs/path`` or
    ``s3://bucket[/prefix]``; unset means ``<DATA_DIR>/blobs``. The S3 endpoint and credentials
    use the AWS SDK's own variable names (no ``QWENEDIT_`` prefix), so one environment serves
    every S3 tool: AWS S3, SeaweedFS, MinIO and R2 alike."""

    storage_url: str | None = None
    storage_timeout: float = Field(30.0, gt=0)
    """Seconds for one storage request, retries included."""
    result_links: Literal["signed", "presigned"] = "signed"
    """``signed``: links to this server's ``/v1/results`` route (the same on every node);
    ``presigned``: S3 presigned URLs, so clients download from the store itself."""
    aws_endpoint_url: str | None = Field(None, validation_alias="AWS_ENDPOINT_URL")
    """Unset: AWS S3 itself. Set (SeaweedFS, MinIO, R2): path-style requests to it."""
    aws_access_key_id: str | None = Field(None, validation_alias="AWS_ACCESS_KEY_ID")
    aws_secret_access_key: SecretStr | None = Field(None, validation_alias="AWS_SECRET_ACCESS_KEY")
    aws_region: str | None = Field(None, validation_alias="AWS_REGION")

    @field_validator("storage_url")
    @classmethod
    def _check_storage_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme == "file":
            if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
                raise ValueError("QWENEDIT_STORAGE_URL: file URLs name an absolute path: file:///…")
        elif parts.scheme == "s3":
            if not _BUCKET.match(parts.netloc):
                raise ValueError(f"QWENEDIT_STORAGE_URL: {parts.netloc!r} is not a bucket name")
            prefix = parts.path.strip("/")
            segments = prefix.split("/") if prefix else []
            if any(not _PREFIX_SEGMENT.match(s) or s in (".", "..") for s in segments):
                raise ValueError("QWENEDIT_STORAGE_URL: the prefix has an invalid path segment")
        else:
            raise ValueError(
                "QWENEDIT_STORAGE_URL must be file:///abs/path or s3://bucket[/prefix]"
            )
        return value.strip()

    @field_validator("aws_endpoint_url")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("AWS_ENDPOINT_URL must be an http:// or https:// URL")
        return value.strip().rstrip("/")

    @model_validator(mode="after")
    def _presigned_needs_s3(self) -> StorageSettings:
        if self.result_links == "presigned" and self.s3_location is None:
            raise ValueError("QWENEDIT_RESULT_LINKS=presigned needs QWENEDIT_STORAGE_URL=s3://…")
        return self

    @property
    def s3_location(self) -> S3Location | None:
        """The bucket and prefix of an ``s3://`` storage URL, else ``None``."""
        if self.storage_url is None or not self.storage_url.startswith("s3://"):
            return None
        parts = urlsplit(self.storage_url)
        return S3Location(bucket=parts.netloc, prefix=parts.path.strip("/"))
