"""``qwenedit edit``: send images to a server, follow the task, save the results.

The bar (on stderr) shows the queue position while the task waits, then its progress and the
time left; the written paths go to stdout. Exit 0 completed, 1 failed or refused, 130 after
Ctrl-C, which cancels the task first (its reserve is refunded)."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TaskID, TextColumn

from qwenedit.cli.common import JsonOption, err, out
from qwenedit.client import Client, ClientError, ResponseError, Task
from qwenedit.client.protocol import is_url

INTERRUPTED = 130
WAIT_SLICE_SECONDS = 0.2


class Bar:
    """The Rich bar, fed with every task update."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._row: TaskID = progress.add_task("submitting", total=100, status="")

    def update(self, task: Task) -> None:
        if task.status == "pending":
            where = "next" if task.queue_position == 0 else f"position {task.queue_position}"
            description, status = f"queued ({where})", f"~{task.estimated_time}s"
        elif task.status == "processing":
            description, status = "editing", f"{task.estimated_time}s left"
        else:
            description, status = task.status, ""
        self._progress.update(
            self._row, completed=task.progress, description=description, status=status
        )


def _bar() -> Progress:
    return Progress(
        TextColumn("{task.description:<22}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[status]}"),
        console=err,
        transient=False,
    )


def _refund(task: Task) -> float:
    return task.credits_reserved - (task.credits_used or 0)


def edit(
    images: Annotated[list[str], typer.Argument(help="Input images (1-3): paths or URLs")],
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="What to change")],
    n: Annotated[int | None, typer.Option("-n", help="Images to make (1-6)")] = None,
    size: Annotated[str | None, typer.Option(help="WxH, e.g. 1024x1024 (n = 1 only)")] = None,
    seed: Annotated[int | None, typer.Option(help="Fix the seed to repeat a result")] = None,
    negative_prompt: Annotated[str | None, typer.Option(help="What to avoid")] = None,
    no_prompt_extend: Annotated[
        bool, typer.Option("--no-prompt-extend", help="Use the prompt as written")
    ] = False,
    watermark: Annotated[bool, typer.Option("--watermark", help="Mark the results")] = False,
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to save")] = Path("."),
    server: Annotated[
        str | None, typer.Option("--server", help="Base URL [default: QWENEDIT_BASE_URL]")
    ] = None,
    key: Annotated[
        str | None, typer.Option("--key", help="API key [default: QWENEDIT_API_KEY]")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Edit images on a qwenedit server and save the results."""
    # Ctrl-C must cancel the task even when this process was started with SIGINT ignored
    # (as a background job of a script, or by a parent that ignores it).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with Client(server, key) as client:
        try:
            urls = [url if is_url(url) else client.files.upload(Path(url)).url for url in images]
            task = client.tasks.create(
                prompt,
                urls,
                n=n,
                size=size,
                seed=seed,
                negative_prompt=negative_prompt,
                prompt_extend=False if no_prompt_extend else None,
                watermark=watermark or None,
            )
        except (ClientError, OSError) as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(1) from exc
        err.print(f"task {task.id}", highlight=False)
        try:
            done = _wait_interruptibly(client, task, quiet=as_json)
        except KeyboardInterrupt:
            with Client(server, key) as fresh:
                raise typer.Exit(_cancel(fresh, task)) from None
        except ClientError as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(1) from exc
    if done.status == "failed":
        if as_json:
            out.print_json(json.dumps(done.raw))
        err.print(f"[bold red]failed:[/] {done.error_code}: {done.error_message}", highlight=False)
        raise typer.Exit(1)
    paths = done.save(output)
    if as_json:
        out.print_json(json.dumps(done.raw))
        return
    for path in paths:
        out.print(str(path), highlight=False, soft_wrap=True)


def _wait_interruptibly(client: Client, task: Task, *, quiet: bool) -> Task:
    """Follow the task on a helper thread while this one waits for it. A Ctrl-C then lands in a
    plain wait here, never inside the HTTP client, whose connection-pool lock it could leave
    held (the cancel that follows uses a client of its own)."""
    outcome: list[Task | BaseException] = []
    finished = threading.Event()

    def follow() -> None:
        try:
            outcome.append(_follow(client, task, quiet=quiet))
        except BaseException as exc:
            outcome.append(exc)
        finally:
            finished.set()

    threading.Thread(target=follow, name=f"follow-{task.id}", daemon=True).start()
    while not finished.wait(WAIT_SLICE_SECONDS):
        pass
    [result] = outcome
    if isinstance(result, BaseException):
        raise result
    return result


def _follow(client: Client, task: Task, *, quiet: bool) -> Task:
    if quiet:
        return client.tasks.wait(task.id)
    with _bar() as progress:
        bar = Bar(progress)
        bar.update(task)
        return client.tasks.wait(task.id, on_update=bar.update)


def _cancel(client: Client, task: Task) -> int:
    try:
        ended = client.tasks.cancel(task.id)
    except ResponseError as exc:
        err.print(f"interrupted; task {task.id} was not cancelled: {exc.message}")
        return INTERRUPTED
    err.print(f"cancelled {ended.id}; refunded {_refund(ended):g} credits", highlight=False)
    return INTERRUPTED
