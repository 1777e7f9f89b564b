"""The conformance suite: every check by name in running order, runnable all at once."""

from __future__ import annotations

from collections.abc import Iterable

from . import (
    _bulk_checks,
    _key_checks,
    _lease_checks,
    _revocation_checks,
    _rotation_checks,
    _session_checks,
    _sliding_checks,
    _token_checks,
)
from ._check import ConformanceCheck, ConformanceError, PersistedReader, StoreFactory

_RUNNING_ORDER = (
    _session_checks.lifecycle,
    _session_checks.create_get_round_trip,
    _session_checks.create_get_large_data,
    _session_checks.get_unknown_handle,
    _session_checks.create_duplicate_handle,
    _session_checks.non_json_data_refused,
    _session_checks.records_not_aliased,
    _rotation_checks.rotate_success,
    _rotation_checks.rotate_stale_hash,
    _rotation_checks.rotate_missing_handle,
    _rotation_checks.rotate_concurrent,
    _sliding_checks.rotate_sliding_success,
    _sliding_checks.rotate_sliding_refusals,
    _sliding_checks.rotate_sliding_concurrent,
    _session_checks.update_session_data,
    _session_checks.update_access_token_payload,
    _session_checks.touch,
    _session_checks.delete,
    _bulk_checks.list_for_user,
    _bulk_checks.delete_for_user,
    _bulk_checks.delete_expired,
    _revocation_checks.revocation_log,
    _lease_checks.lease,
    _key_checks.keys_add_get,
    _key_checks.keys_delete,
    _bulk_checks.many_sessions,
    _token_checks.no_raw_refresh_token,
)

CONFORMANCE_CHECKS: dict[str, ConformanceCheck] = {check.__name__: check for check in _RUNNING_ORDER}
"""Every check of the suite by name, in a sensible running order."""


async def run_conformance_suite(
    factory: StoreFactory,
    *,
    persisted: PersistedReader | None = None,
    only: Iterable[str] | None = None,
) -> None:
    """Run the conformance checks one after another and report every failure at once.

    Args:
        factory: returns a new, unopened, empty store on every call.
        persisted: returns the bytes a store wrote to its backend, or ``None`` for a store with no such bytes.
        only: the names of the checks to run (default: all of :data:`CONFORMANCE_CHECKS`).

    Raises:
        ConformanceError: one or more checks failed; ``checks`` names them and the message lists each failure.
        ValueError: ``only`` names an unknown check.
    """
    names = list(CONFORMANCE_CHECKS) if only is None else list(dict.fromkeys(only))
    unknown = [name for name in names if name not in CONFORMANCE_CHECKS]
    if unknown:
        raise ValueError(f"unknown conformance checks {unknown}; known: {sorted(CONFORMANCE_CHECKS)}")
    failures: list[ConformanceError] = []
    for name in names:
        try:
            await CONFORMANCE_CHECKS[name](factory, persisted=persisted)
        except ConformanceError as exc:
            failures.append(exc)
    if failures:
        lines = "\n".join(f"- {failure}" for failure in failures)
        raise ConformanceError(
            f"{len(failures)} of {len(names)} conformance checks failed:\n{lines}",
            checks=[name for failure in failures for name in failure.checks],
            failures=failures,
        )
