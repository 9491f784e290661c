"""Where the client finds the server and its key when the caller does not say."""

from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_BASE_URL = "http://127.0.0.1:8000"


class ClientSettings(BaseSettings):
    """``QWENEDIT_BASE_URL`` and ``QWENEDIT_API_KEY``; every other variable is the server's."""

    model_config = SettingsConfigDict(env_prefix="QWENEDIT_", extra="ignore", frozen=True)

    base_url: str = DEFAULT_BASE_URL
    api_key: SecretStr | None = None
