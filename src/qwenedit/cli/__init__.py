"""The ``qwenedit`` command: serve, worker, keys, credits, webhooks, db, doctor, edit, version.

Admin commands, ``edit`` and ``serve --no-worker`` never import torch: engines load lazily."""

from __future__ import annotations

import asyncio
import json

import typer

from qwenedit import __version__
from qwenedit.cli.admin import credits_app, db_app, keys_app, webhooks_app
from qwenedit.cli.common import JsonOption, out, settings_from
from qwenedit.cli.edit import edit
from qwenedit.cli.serving import serve, worker

app = typer.Typer(help="Self-hosted qwen-image-edit-plus server.", no_args_is_help=True)
app.command()(serve)
app.command()(worker)
app.command()(edit)
app.add_typer(keys_app, name="keys")
app.add_typer(credits_app, name="credits")
app.add_typer(db_app, name="db")
app.add_typer(webhooks_app, name="webhooks")


@app.command()
def doctor(as_json: JsonOption = False) -> None:
    """Print the GPU, its free memory, library versions, the engine configuration that fits,
    and whether the blob store can be written, read and cleaned (exit 1 if not)."""
    from qwenedit.doctor import inspect_machine, probe_storage

    settings = settings_from()
    report = inspect_machine()
    storage = asyncio.run(probe_storage(settings))
    if as_json:
        print(json.dumps({**report.as_dict(), "storage": storage.as_dict()}))
    else:
        for label, value in [*report.lines(), storage.line()]:
            out.print(f"[bold]{label}:[/] {value}", highlight=False)
    if not storage.ok:
        raise typer.Exit(1)


@app.command()
def version() -> None:
    """Print the version."""
    out.print(__version__)
