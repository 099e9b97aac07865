"""The sandbox's own dependencies (trustme for its CA, websockets for Socket Mode) come with
the `[sandbox]` extra: a production install does without them, and using the sandbox
without them says what to install instead of failing on an import."""

from __future__ import annotations

from bot.sandbox.world import WorldError

INSTALL = "pip install 'aks-egress[sandbox]'"


class SandboxMissing(WorldError):
    """A sandbox dependency is not installed; the message says how to install it."""


def missing(exc: ModuleNotFoundError) -> SandboxMissing:
    return SandboxMissing(
        f"the sandbox (--world, demo) needs {exc.name}, which comes with its extra: {INSTALL}"
    )
