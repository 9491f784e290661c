"""Prompts judged against the model's text positions at create (``domain.prompt_fit``)."""

from __future__ import annotations

from qwenedit.domain.prompt_fit import PromptCounter, prompt_problem
from qwenedit.domain.request import EditRequest
from qwenedit.engines.base import TokenCounter
from qwenedit.errors import InvalidRequest


class PromptChecker:
    """Counts with the tokenizer of an engine this process has loaded; a process without one
    (``serve --no-worker``) uses the byte bound, which is safe for the real tokenizer."""

    def __init__(self) -> None:
        self._count: PromptCounter | None = None

    def use(self, engine: object) -> None:
        """Count with ``engine``'s tokenizer from now on, if it has one."""
        if isinstance(engine, TokenCounter):
            self._count = engine.count_prompt_tokens

    def check(self, request: EditRequest) -> None:
        """``InvalidRequest`` naming the prompt that cannot be given to the model."""
        images = len(request.image_urls)
        for param, text in (
            ("prompt", request.prompt),
            ("negative_prompt", request.negative_prompt),
        ):
            if text is None:
                continue
            problem = prompt_problem(text, images, self._count)
            if problem is not None:
                raise InvalidRequest(f"{param} {problem}", param=param)
