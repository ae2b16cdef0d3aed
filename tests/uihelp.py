"""Waiting for the app the way a user waits for the screen: until what was asked for is drawn."""

from __future__ import annotations


async def settled(pilot) -> None:
    """Until the model's thread has folded every batch it was given and the app drew the last snapshot."""
    await pilot.pause()
    await pilot.app.settled()
    await pilot.pause()


async def detail_shown(pilot) -> None:
    """Until the drill-down the model's thread builds is on screen."""
    from sigtop.ui.screens import DetailScreen

    for _ in range(500):
        await pilot.pause(0.01)
        if isinstance(pilot.app.screen, DetailScreen):
            return
    raise AssertionError("the drill-down never came")
