"""Redis broker transports whose channels close cleanly when the broker went away (kombu 5.7).

When Redis restarts while the worker holds an unacked message and has a BRPOP outstanding,
Celery's consumer drops the connection (`Connection.collect()`): kombu's redis
`Channel.close()` first reads the outstanding BRPOP's reply, that read raises a connection
error, and `close()` stops there, the channel still open. `collect()` then clears the
transport's client, and the later `Connection.close()` closes the channel again: restoring the
unacked message needs a new connection pool, whose parameters read `transport.client.hostname`
of `None`. That `AttributeError` is no connection error, so Celery calls it unrecoverable and
the worker's main process exits.

The channels here treat a connection error from that last read as the end of the BRPOP it is
(`_brpop_read` has already disconnected the socket and cleared `_in_poll`, so kombu's own
`close()` does not read again) and go on closing: the first close completes while the client
is still there, the second finds the channel closed. What a restore cannot put back stays in
the outbox; the sweeper dispatches it again.

`worker.app` registers these classes under kombu's `redis`, `rediss` and `sentinel` schemes.
"""

from __future__ import annotations

from queue import Empty

from kombu.transport import redis as kombu_redis


class RedisChannel(kombu_redis.Channel):
    def close(self) -> None:
        # `_in_poll` and `_brpop_read` are kombu internals (not in the type stubs).
        if self._in_poll:  # type: ignore[attr-defined]
            try:
                self._brpop_read()  # type: ignore[attr-defined]
            except Empty:
                pass
            except self.connection_errors:  # type: ignore[attr-defined]
                # The broker is gone: there is no reply to read. `_brpop_read` disconnected
                # the socket and cleared `_in_poll`; close the rest as usual.
                pass
        super().close()


class SentinelChannel(RedisChannel, kombu_redis.SentinelChannel):
    """The same close, with Sentinel's connection classes and options (MRO: kombu's
    SentinelChannel comes before its Channel, so only `close` is ours)."""


class RedisTransport(kombu_redis.Transport):
    Channel = RedisChannel


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel
