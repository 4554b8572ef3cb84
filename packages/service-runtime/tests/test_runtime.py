"""The event loop and the collector settings both services run with."""

from __future__ import annotations

import asyncio
import gc

import pytest

from service_runtime import GC_YOUNG_THRESHOLD, loop_factory, run, stop_requested, tune_gc


def test_run_uses_uvloop_when_installed_and_returns_the_result() -> None:
    async def probe() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert run(probe()).startswith("uvloop")  # both services' locks include uvloop


def test_without_uvloop_asyncio_runs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "uvloop", None)  # an import of it now fails
    assert loop_factory() is None

    async def probe() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert run(probe()).startswith("asyncio")


def test_run_propagates_the_coroutine_s_exception() -> None:
    async def fail() -> None:
        raise LookupError("from the service")

    with pytest.raises(LookupError, match="from the service"):
        run(fail())


def test_tune_gc_freezes_startup_objects_and_collects_less_often() -> None:
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, before[1], before[2])
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_stop_requested_is_set_by_sigterm() -> None:
    import os
    import signal

    async def wait_for_sigterm() -> bool:
        stop = stop_requested()
        assert not stop.is_set()
        os.kill(os.getpid(), signal.SIGTERM)  # handled by the loop, not the default
        await asyncio.wait_for(stop.wait(), 10)
        return stop.is_set()

    assert run(wait_for_sigterm())
