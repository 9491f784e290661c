"""A node that owns its process (``serve``, ``worker``) keeps what it made at start-up, and what
each engine made while loading, out of later garbage collections; one embedded in another
program (these tests, by default) leaves that program's heap alone."""

from __future__ import annotations

import asyncio
import gc
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from qwenedit.config import Settings
from qwenedit.gil import SWITCH_INTERVAL_SECONDS
from qwenedit.node import NodeOptions, run_node
from support.app import make_settings
from support.engine import SteppingEngine


class LoadedEngine(SteppingEngine):
    """An engine whose loading leaves a cyclic structure behind, as a model's modules do."""

    def __init__(self) -> None:
        super().__init__(steps=1)
        self.weights: dict[str, object] = {"owner": self}


@pytest.fixture
def settings(sqlite_template: Path, tmp_path: Path) -> Settings:
    shutil.copyfile(sqlite_template, tmp_path / "qwenedit.db")
    return make_settings(f"sqlite+aiosqlite:///{tmp_path / 'qwenedit.db'}", tmp_path)


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def collected(thing: object) -> bool:
    """Whether the collector still walks ``thing`` (a frozen object is in no generation)."""
    return any(tracked is thing for tracked in gc.get_objects())


async def walked(settings: Settings, *, owns_process: bool, workers: int) -> tuple[bool, bool]:
    """Whether the runtime and the loaded engine (``False`` when there is none) are still
    walked by the collector once the node has started and its worker loaded its engine."""
    engines: list[LoadedEngine] = []

    def load(_settings: Settings) -> LoadedEngine:
        engines.append(LoadedEngine())
        return engines[-1]

    options = NodeOptions(
        public_url="http://127.0.0.1:8000",
        workers=workers,
        load_engine=load,
        housekeeping=False,
        owns_process=owns_process,
    )
    async with run_node(settings, options, on_fatal=lambda: None) as node:
        async with asyncio.timeout(10):
            while node.runtime.engines.loaded < workers:
                await asyncio.sleep(0.01)
        return collected(node.runtime), any(collected(engine.weights) for engine in engines)


async def test_an_api_only_node_freezes_what_it_made_at_start_up(settings: Settings) -> None:
    runtime_walked, _ = await walked(settings, owns_process=True, workers=0)
    assert not runtime_walked


async def test_a_worker_freezes_what_its_engine_made_while_loading(settings: Settings) -> None:
    _, engine_walked = await walked(settings, owns_process=True, workers=1)
    assert not engine_walked


async def test_an_embedded_node_leaves_the_heap_alone(settings: Settings) -> None:
    runtime_walked, engine_walked = await walked(settings, owns_process=False, workers=1)
    assert runtime_walked
    assert engine_walked


@pytest.fixture(autouse=True)
def switch_interval() -> Iterator[float]:
    """A node that owns its process changes the interval: put it back for the next tests."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    yield 0.005
    sys.setswitchinterval(before)


async def test_only_a_node_that_owns_its_process_shortens_the_gil_switch_interval(
    settings: Settings, switch_interval: float
) -> None:
    await walked(settings, owns_process=False, workers=0)
    assert sys.getswitchinterval() == pytest.approx(switch_interval)
    await walked(settings, owns_process=True, workers=0)
    assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL_SECONDS)
