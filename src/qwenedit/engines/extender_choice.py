"""Which PromptExtender a worker uses (``QWENEDIT_PROMPT_EXTEND``, DESIGN §8):
``auto`` is the chat endpoint when ``PROMPT_EXTEND_URL`` is set, else the engine's own VLM when
it has one, else none; ``local``, ``openai`` and ``off`` force a choice.

It lives with the engines because the choice needs a loaded engine: engines depend on
``extend`` (an engine may offer its own extender), never the other way round."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from qwenedit.engines.base import Engine
from qwenedit.errors import ConfigError
from qwenedit.extend.base import PromptExtender
from qwenedit.extend.openai_chat import OpenAIChatExtender
from qwenedit.setting_groups import PromptExtendSettings


@runtime_checkable
class HasLocalExtender(Protocol):
    """An engine whose model can rewrite prompts itself (the pipeline's Qwen2.5-VL)."""

    def local_prompt_extender(self) -> PromptExtender | None: ...


def load_prompt_extender(settings: PromptExtendSettings, engine: Engine) -> PromptExtender | None:
    mode = settings.prompt_extend
    if mode == "off":
        return None
    if mode == "openai" or (mode == "auto" and settings.prompt_extend_url):
        if not settings.prompt_extend_url:
            raise ConfigError("QWENEDIT_PROMPT_EXTEND=openai needs QWENEDIT_PROMPT_EXTEND_URL")
        key = settings.prompt_extend_api_key
        return OpenAIChatExtender(
            settings.prompt_extend_url,
            model=settings.prompt_extend_model,
            api_key=key.get_secret_value() if key else None,
            timeout=settings.prompt_extend_timeout,
        )
    local = engine.local_prompt_extender() if isinstance(engine, HasLocalExtender) else None
    if local is None and mode == "local":
        raise ConfigError(f"the {engine.name} engine has no model of its own to extend prompts")
    return local
