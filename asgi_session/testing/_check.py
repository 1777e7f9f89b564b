"""What a conformance check is: what it takes, what it raises, how a check is built from its body."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from ..stores.base import SessionStore

StoreFactory = Callable[[], SessionStore]
"""Returns a new, unopened, empty store on every call."""

PersistedReader = Callable[[SessionStore], Awaitable[bytes]]
"""Returns every byte the given store has written to its backend (for example a SQLite file and its WAL)."""


class ConformanceError(AssertionError):
    """A store broke the store contract.

    Attributes:
        checks: the names of the failed checks.
        failures: for the error raised by :func:`run_conformance_suite`, one error per failed check (each chained
            to its cause); empty for the error raised by a single check.
    """

    def __init__(
        self,
        message: str,
        *,
        checks: Sequence[str] = (),
        failures: Sequence[ConformanceError] = (),
    ) -> None:
        super().__init__(message)
        self.checks = tuple(checks)
        self.failures = tuple(failures)


class ConformanceCheck(Protocol):
    """The signature of every entry of :data:`CONFORMANCE_CHECKS`."""

    def __call__(self, factory: StoreFactory, /, *, persisted: PersistedReader | None = None) -> Awaitable[None]:
        """Run the check against stores built by ``factory``; raise :class:`ConformanceError` on a failure.

        Args:
            factory: returns a new, unopened, empty store on every call.
            persisted: returns the bytes a store wrote to its backend; checks that care about what reaches the
                disk also search them. ``None`` skips that part.
        """
        ...


class NamedCheck(ConformanceCheck, Protocol):
    """A check that knows its own name, so the suite lists each name once, in the decorator."""

    __name__: str


class Mismatch(Exception):
    """Raised inside a check body; the check's wrapper turns it into a ConformanceError that names the check."""


StoreCheckBody = Callable[[StoreFactory], Awaitable[None]]
PersistedCheckBody = Callable[[StoreFactory, "PersistedReader | None"], Awaitable[None]]


def store_check(name: str) -> Callable[[StoreCheckBody], NamedCheck]:
    """Turn a body that needs only the factory into the check called ``name``."""

    def build(body: StoreCheckBody) -> NamedCheck:
        async def run(factory: StoreFactory, persisted: PersistedReader | None) -> None:
            await body(factory)

        return _named_check(name, run, body.__doc__)

    return build


def persisted_check(name: str) -> Callable[[PersistedCheckBody], NamedCheck]:
    """Turn a body that also searches the persisted bytes into the check called ``name``."""

    def build(body: PersistedCheckBody) -> NamedCheck:
        return _named_check(name, body, body.__doc__)

    return build


def _named_check(name: str, body: PersistedCheckBody, doc: str | None) -> NamedCheck:
    async def check(factory: StoreFactory, /, *, persisted: PersistedReader | None = None) -> None:
        try:
            await body(factory, persisted)
        except Mismatch as exc:
            raise ConformanceError(f"{name}: {exc}", checks=[name]) from exc
        except Exception as exc:  # a store must raise nothing unexpected: report it as a failure too
            detail = f"{name}: unexpected {type(exc).__name__}: {exc}"
            raise ConformanceError(detail, checks=[name]) from exc

    check.__name__ = check.__qualname__ = name
    check.__doc__ = doc
    return check
