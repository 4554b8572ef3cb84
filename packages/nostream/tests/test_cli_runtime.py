"""How ``nostream serve`` runs its process: the event loop and the garbage collector."""

from __future__ import annotations

import asyncio
import gc

from nostream.cli import GC_YOUNG_THRESHOLD, run_event_loop, tune_gc


def test_serve_runs_on_uvloop() -> None:
    loops: list[str] = []

    async def probe() -> None:
        loops.append(type(asyncio.get_running_loop()).__module__)

    run_event_loop(probe())
    assert loops and loops[0].startswith("uvloop")


def test_tune_gc_freezes_startup_objects_and_collects_less_often() -> None:
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, before[1], before[2])
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
