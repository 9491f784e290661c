"""The ``remote`` engine: sends each edit to an OpenAI-style ``/v1/images/edits`` server
(SGLang Diffusion, vLLM-Omni, LightX2V, or any compatible service) and reads ``b64_json``
answers. The endpoint is the operator's, so the private-network guard does not apply
(DESIGN §8).

Servers differ in small ways, named by ``QWENEDIT_REMOTE_DIALECT``: the multipart field of the
input images and how the answer format is asked for. Some servers make one image per call
whatever ``n`` says: when an answer holds fewer images than asked, the rest are requested one
call at a time (seed + i), and later edits go one image per call from the start."""

from __future__ import annotations

import base64
import binascii
import io
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
from PIL import Image

from qwenedit import __version__
from qwenedit.domain.task import ErrorCode
from qwenedit.engines.base import EditJob, EditOutput, StepCallback
from qwenedit.errors import TaskFailure
from qwenedit.media.images import encode_png

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({502, 503, 504})
RETRY_DELAYS = (1.0, 2.0, 4.0)
MAX_ANSWER_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class Dialect:
    image_field: str
    format_fields: dict[str, str]


DIALECTS = {
    "openai": Dialect(image_field="image[]", format_fields={"response_format": "b64_json"}),
    "sglang": Dialect(image_field="image", format_fields={"response_format": "b64_json"}),
    "vllm-omni": Dialect(image_field="image", format_fields={"output_format": "png"}),
}


def edits_url(base_url: str) -> str:
    """``http://host:30000`` and ``http://host:30000/v1`` both mean ``…/v1/images/edits``."""
    base = base_url.rstrip("/")
    if not base.endswith("/v1"):
        base += "/v1"
    return base + "/images/edits"


class RemoteEngine:
    name = "remote"

    def __init__(
        self,
        base_url: str,
        *,
        dialect: str,
        model: str | None,
        api_key: str | None,
        steps: int,
        true_cfg_scale: float,
        timeout: float,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"User-Agent": f"qwenedit/{__version__}"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._url = edits_url(base_url)
        self._dialect = DIALECTS[dialect]
        self._model = model
        self._steps = steps
        self._true_cfg_scale = true_cfg_scale
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=10.0), headers=headers, transport=transport
        )
        self._batches = True
        self._lock = threading.Lock()
        self.calls = 0

    def edit(self, job: EditJob, on_step: StepCallback) -> EditOutput:
        with self._lock:
            started = time.perf_counter()
            inputs = [encode_png(image) for image in job.images]
            produced: list[Image.Image] = []
            while len(produced) < job.n:
                on_step(len(produced), job.n)
                wanted = job.n - len(produced) if self._batches else 1
                images = self._call(job, inputs, n=wanted, seed=job.seed + len(produced))
                if not images:
                    raise TaskFailure(
                        ErrorCode.SERVICE_ERROR, "The remote engine returned no image"
                    )
                if len(images) < wanted:
                    log.info("remote engine answers one image per call; splitting n from now on")
                    self._batches = False
                produced.extend(images[:wanted])
            on_step(job.n, job.n)
            exact = tuple(_exact(image, job.width, job.height) for image in produced)
            return EditOutput(images=exact, pipeline_seconds=time.perf_counter() - started)

    def _fields(self, job: EditJob, n: int, seed: int) -> dict[str, str]:
        fields = {
            "prompt": job.prompt,
            "n": str(n),
            "size": f"{job.width}x{job.height}",
            "negative_prompt": job.negative_prompt or " ",
            "seed": str(seed),
            "true_cfg_scale": str(self._true_cfg_scale),
            "num_inference_steps": str(self._steps),
            **self._dialect.format_fields,
        }
        if self._model:
            fields["model"] = self._model
        return fields

    def _call(self, job: EditJob, inputs: list[bytes], *, n: int, seed: int) -> list[Image.Image]:
        files = [
            (self._dialect.image_field, (f"image{index}.png", data, "image/png"))
            for index, data in enumerate(inputs, start=1)
        ]
        fields = self._fields(job, n, seed)
        for delay in (*RETRY_DELAYS, None):
            self.calls += 1
            try:
                response = self._client.post(self._url, data=fields, files=files)
            except httpx.TransportError as exc:
                if delay is None:
                    reason = type(exc).__name__
                    message = f"The remote engine is unreachable ({reason})"
                    raise TaskFailure(ErrorCode.SERVICE_ERROR, message) from exc
                log.warning("remote engine: %s; retrying in %gs", type(exc).__name__, delay)
            else:
                if response.status_code not in RETRY_STATUSES or delay is None:
                    return _images(response)
                log.warning("remote engine: HTTP %d; retrying in %gs", response.status_code, delay)
            time.sleep(delay)
        raise AssertionError("unreachable: the last try returns or raises")

    def close(self) -> None:
        self._client.close()


def _images(response: httpx.Response) -> list[Image.Image]:
    if 400 <= response.status_code < 500:
        raise TaskFailure(
            ErrorCode.INVALID_PARAMETERS,
            f"The remote engine refused the edit (HTTP {response.status_code})",
        )
    if response.status_code != 200:
        raise TaskFailure(
            ErrorCode.SERVICE_ERROR, f"The remote engine failed (HTTP {response.status_code})"
        )
    if len(response.content) > MAX_ANSWER_BYTES:
        raise TaskFailure(ErrorCode.SERVICE_ERROR, "The remote engine's answer is too large")
    try:
        items: list[dict[str, Any]] = response.json()["data"]
        images = []
        for item in items:
            image = Image.open(io.BytesIO(base64.b64decode(item["b64_json"], validate=True)))
            images.append(image.convert("RGB"))
    except (
        ValueError,
        KeyError,
        TypeError,
        binascii.Error,
        OSError,
    ) as exc:
        raise TaskFailure(
            ErrorCode.SERVICE_ERROR, "The remote engine's answer could not be read"
        ) from exc
    return images


def _exact(image: Image.Image, width: int, height: int) -> Image.Image:
    if image.size == (width, height):
        return image
    return image.resize((width, height), Image.Resampling.LANCZOS)
