"""The edit use cases: create, read and cancel tasks for an authenticated account."""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from datetime import UTC, datetime
from typing import Protocol

from qwenedit.domain.request import parse_edit_request
from qwenedit.domain.task import TaskParams, TaskRecord, TaskStatus, is_task_id, new_task_id
from qwenedit.domain.wire import TaskObject
from qwenedit.errors import InputRejected, InvalidRequest, OutboundRefused
from qwenedit.logs import task_fields
from qwenedit.resilience import is_transient
from qwenedit.services.inputs import TaskInputs
from qwenedit.services.pace import FleetPace
from qwenedit.services.presenter import TaskPresenter
from qwenedit.services.prompt_check import PromptChecker
from qwenedit.setting_groups import (
    BillingSettings,
    LimitSettings,
    OutboundSettings,
    QueueSettings,
    RetentionSettings,
)
from qwenedit.store.accounts import Caller
from qwenedit.store.task_stats import QueueAhead, TaskStats
from qwenedit.store.tasks import IdempotencyKey, Limits, NewTask, TaskRepo
from qwenedit.store.workers import WorkerRepo

log = logging.getLogger(__name__)

MAX_SEED = 2_147_483_647
IDEMPOTENCY_KEY_MAX_CHARS = 255
CALLBACK_CHECK_SECONDS = 5.0
FALLBACK_SECONDS_PER_STEP = 1.0
"""Used for ``estimated_time`` until this server has measured tasks of its own: about one
second per denoising step, the public figure for the real model on one H100 (DESIGN §7)."""


def _idempotency(header: str | None, body: object, window: float) -> IdempotencyKey | None:
    """The ``Idempotency-Key`` header and a digest of the request it came with."""
    if header is None:
        return None
    if not 1 <= len(header) <= IDEMPOTENCY_KEY_MAX_CHARS or not header.isprintable():
        raise InvalidRequest(
            f"Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX_CHARS} printable characters",
            param="Idempotency-Key",
        )
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # "surrogatepass": an ignored field may hold a lone surrogate, which plain UTF-8 refuses
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()
    return IdempotencyKey(key=header, request_hash=digest, window_seconds=window)


class UrlChecker(Protocol):
    async def check_url(self, url: str, *, https_only: bool, within: float) -> None:
        """``OutboundRefused`` when the URL may not be contacted, or its host name did not
        resolve within ``within`` seconds."""
        ...


class EditService:
    def __init__(
        self,
        *,
        outbound: OutboundSettings,
        billing: BillingSettings,
        limits: LimitSettings,
        retention: RetentionSettings,
        queue: QueueSettings,
        steps: int,
        tasks: TaskRepo,
        stats: TaskStats,
        workers: WorkerRepo,
        presenter: TaskPresenter,
        inputs: TaskInputs,
        url_checker: UrlChecker,
        prompts: PromptChecker,
    ) -> None:
        self._outbound = outbound
        self._billing = billing
        self._limits = limits
        self._retention = retention
        self._steps = steps
        self._tasks = tasks
        self._stats = stats
        self._pace = FleetPace(stats, workers, alive_seconds=3 * queue.heartbeat_seconds)
        self._presenter = presenter
        self._inputs = inputs
        self._url_checker = url_checker
        self._prompts = prompts

    async def _check_callback(self, url: str) -> None:
        """The check every delivery makes, now: a literal address is judged without DNS, and a
        name is resolved (within ``CALLBACK_CHECK_SECONDS``), so a callback that could never
        be delivered is a 400 rather than a silent failure later. (It is resolved and checked
        again at every delivery: DNS may change in between.)"""
        try:
            await self._url_checker.check_url(
                url,
                https_only=not self._outbound.allow_insecure_callbacks,
                within=CALLBACK_CHECK_SECONDS,
            )
        except (InputRejected, OutboundRefused) as exc:
            raise InvalidRequest(f"callback_url: {exc}", param="callback_url") from exc

    async def create(
        self, account: Caller, body: object, *, idempotency_key: str | None = None
    ) -> TaskObject:
        request = parse_edit_request(
            body, allow_insecure_callbacks=self._outbound.allow_insecure_callbacks
        )
        self._prompts.check(request)
        idempotency = _idempotency(idempotency_key, body, self._retention.idempotency_window)
        sources = await self._inputs.classify(account, request.image_urls)
        if request.callback_url is not None:
            await self._check_callback(request.callback_url)
        now = datetime.now(UTC)
        task_id = new_task_id(int(now.timestamp()))
        seed = request.seed if request.seed is not None else secrets.randbelow(MAX_SEED + 1)
        params = TaskParams(
            prompt=request.prompt,
            image_urls=await self._inputs.store(task_id, sources),
            n=request.n,
            negative_prompt=request.negative_prompt,
            size=request.size,
            prompt_extend=request.prompt_extend,
            watermark=request.watermark,
            seed=seed,
            callback_url=request.callback_url,
        )
        new = NewTask(
            id=task_id,
            account_id=account.id,
            params=params,
            price_milli=self._billing.price_milli(account.user_group),
            created_at=now,
        )
        limits = Limits(
            max_active_per_account=self._billing.max_active_per_account,
            max_queue_depth=self._billing.max_queue_depth,
        )
        try:
            created = await self._tasks.create(new, limits, idempotency)
        except Exception as exc:
            # A refusal stored nothing. After an outage the commit may have landed unseen: the
            # inputs are then left to the sweep, which deletes them only if no task has them.
            if not is_transient(exc):
                await self._inputs.discard(task_id)
            raise
        task = created.task
        if created.replayed:
            await self._inputs.discard(task_id)
            log.info(
                "task %s returned again for its idempotency key", task.id, extra=task_fields(task)
            )
        else:
            log.info(
                "task %s created: n=%d",
                task.id,
                task.params.n,
                extra=task_fields(task, status="pending"),
            )
        return await self.present(task, ahead=created.ahead)

    async def get(self, account: Caller, task_id: str) -> TaskObject:
        task = await self._find(account, task_id)
        return await self.present(task)

    async def cancel(self, account: Caller, task_id: str) -> TaskObject:
        await self._find(account, task_id)
        task = await self._tasks.cancel(task_id, account.id)
        log.info(
            "task %s cancelled by its owner",
            task.id,
            extra=task_fields(task, status="failed", code=task.error_code),
        )
        return await self.present(task)

    async def _find(self, account: Caller, task_id: str) -> TaskRecord:
        if not is_task_id(task_id):
            raise InvalidRequest("Malformed task id", param="task_id")
        return await self._tasks.get(
            task_id, account.id, retention_seconds=self._retention.task_retention
        )

    async def present(self, task: TaskRecord, *, ahead: QueueAhead | None = None) -> TaskObject:
        """The task as the client sees it; ``ahead`` when its queue was just read."""
        if task.status.is_terminal:
            return self._presenter.view(task, now=datetime.now(UTC), estimated_time=0)
        queued = task.status is TaskStatus.PENDING and task.attempt == 0
        if not queued:
            ahead = QueueAhead(0, 0)
        elif ahead is None:
            ahead = await self._stats.queue_ahead(task)
        return self._presenter.view(
            task,
            now=datetime.now(UTC),
            estimated_time=await self.estimated_time(task, ahead),
            queue_position=ahead.tasks if queued else None,
        )

    async def estimated_time(self, task: TaskRecord, ahead: QueueAhead) -> int:
        """Seconds until this task is likely done: the measured seconds per image (or a
        per-step guess before any was measured) times the images queued ahead of it, spread
        over the live workers, plus what is left of its own ``n`` images."""
        pace = await self._pace.current()
        per_image = pace.image_seconds
        if per_image is None:
            per_image = FALLBACK_SECONDS_PER_STEP * self._steps
        workers = max(1, pace.live_workers)
        own = task.params.n * (1.0 - min(task.progress, 99) / 100)
        return max(1, round(per_image * (ahead.images / workers + own)))
