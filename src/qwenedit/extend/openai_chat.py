"""Prompt extension through any OpenAI-compatible chat-completions endpoint with vision
(vLLM, SGLang, Ollama, llama.cpp server, hosted APIs). Operator-configured, so it is not
subject to the private-network guard (DESIGN §8)."""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Sequence
from typing import Any

import httpx
from PIL import Image

from qwenedit import __version__
from qwenedit.domain.rewrite import REWRITE_INSTRUCTION, parse_rewrite

log = logging.getLogger(__name__)

PREVIEW_SIDE = 768
"""Images are sent downscaled to this longest side: enough to understand, cheap to send."""
MAX_ANSWER_BYTES = 256 * 1024


def image_data_url(image: Image.Image) -> str:
    preview = image.copy()
    preview.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
    buffer = io.BytesIO()
    preview.convert("RGB").save(buffer, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


class OpenAIChatExtender:
    name = "openai"

    def __init__(
        self,
        base_url: str,
        *,
        model: str,
        api_key: str | None,
        timeout: float,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"User-Agent": f"qwenedit/{__version__}"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._model = model
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout), headers=headers, transport=transport
        )

    def _messages(self, prompt: str, images: Sequence[Image.Image]) -> list[dict[str, Any]]:
        content: list[dict[str, Any]] = []
        for index, image in enumerate(images, start=1):
            content.append({"type": "text", "text": f"Picture {index}:"})
            content.append({"type": "image_url", "image_url": {"url": image_data_url(image)}})
        content.append({"type": "text", "text": f"Edit instruction: {prompt}"})
        return [
            {"role": "system", "content": REWRITE_INSTRUCTION},
            {"role": "user", "content": content},
        ]

    def extend(self, prompt: str, images: Sequence[Image.Image]) -> str | None:
        payload = {
            "model": self._model,
            "messages": self._messages(prompt, images),
            "temperature": 0.2,
            "max_tokens": 512,
        }
        try:
            with self._client.stream("POST", self._url, json=payload) as response:
                if response.status_code != 200:
                    log.warning("prompt extension: the endpoint answered %d", response.status_code)
                    return None
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_ANSWER_BYTES:
                        log.warning("prompt extension: the answer is too large")
                        return None
            answer = httpx.Response(200, content=bytes(body)).json()
            text = answer["choices"][0]["message"]["content"]
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as exc:
            log.warning("prompt extension failed: %s", type(exc).__name__)
            return None
        if not isinstance(text, str):
            return None
        rewritten = parse_rewrite(text, prompt)
        if rewritten is None:
            log.warning("prompt extension: the answer was not a usable rewrite")
        return rewritten

    def close(self) -> None:
        self._client.close()
