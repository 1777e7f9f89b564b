"""Which exceptions the Redis store treats as the driver's (a 503) and which as a bug (a 500); no server needed."""

from __future__ import annotations

import pytest
from redis.commands.helpers import list_or_args

from asgi_session.stores._redis_pool import from_driver


class _GoneTransport:
    """Stands for the asyncio transport redis-py writes to, closed under it by a failover.

    (Python 3.12 raised ``TypeError`` there, in asyncio's code; ``list_or_args`` swallows a ``TypeError``, so this
    stand-in raises another type the same way: from code that redis-py called.)
    """

    def __iter__(self) -> _GoneTransport:
        raise AttributeError("'NoneType' object has no attribute 'write'")


def test_an_exception_raised_below_a_redis_py_frame_is_the_drivers() -> None:
    # The failover case: redis-py calls into asyncio, which raises; the last frame is asyncio's, not redis-py's.
    with pytest.raises(AttributeError) as info:
        list_or_args(_GoneTransport(), [])
    assert from_driver(info.value)


def test_our_own_exception_is_not_the_drivers() -> None:
    def ours() -> None:
        raise TypeError("a bug of ours")

    with pytest.raises(TypeError) as info:
        ours()
    assert not from_driver(info.value)
