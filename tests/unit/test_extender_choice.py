from __future__ import annotations

import pytest

from qwenedit.config import Settings
from qwenedit.engines.extender_choice import load_prompt_extender
from qwenedit.errors import ConfigError
from support.engine import SteppingEngine


class VlmEngine(SteppingEngine):
    def __init__(self) -> None:
        super().__init__(steps=1)
        self.extender = object()

    def local_prompt_extender(self) -> object:
        return self.extender


def test_auto_prefers_the_chat_endpoint_then_the_engines_vlm() -> None:
    with_url = load_prompt_extender(
        Settings(prompt_extend_url="http://127.0.0.1:9/v1"), VlmEngine()
    )
    assert with_url is not None
    assert with_url.name == "openai"
    with_url.close()
    engine = VlmEngine()
    assert load_prompt_extender(Settings(), engine) is engine.extender
    assert load_prompt_extender(Settings(), SteppingEngine()) is None


def test_off_and_forced_modes() -> None:
    assert load_prompt_extender(Settings(prompt_extend="off"), VlmEngine()) is None
    with pytest.raises(ConfigError, match="PROMPT_EXTEND_URL"):
        load_prompt_extender(Settings(prompt_extend="openai"), VlmEngine())
    with pytest.raises(ConfigError, match="no model of its own"):
        load_prompt_extender(Settings(prompt_extend="local"), SteppingEngine())
