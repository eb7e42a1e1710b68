"""Errors the shell raises on purpose, under the project's root `FleetTwinError`.

Each class says whether trying again may succeed (`retriable`, False unless set
here). None of these is: each needs someone to change something first (start
a service, write a token or a secret, point at another directory). Where the
shell decides whether to try again, it asks `is_retriable`, which reads the
same flag on aiokafka's errors too.
"""

from __future__ import annotations

from aiokafka.errors import KafkaTimeoutError

from twin.exceptions import FleetTwinError


class ProcessFailed(FleetTwinError):
    """A service did not start or did not become ready; the message says where to look."""


class NoApiToken(FleetTwinError):
    """No usable API token: the worker refuses to serve fleet data without one."""


class MissingKafkaSecret(FleetTwinError):
    """SASL_SSL is asked for, but the password or the CA is neither set nor in the state folder."""


class ReportError(FleetTwinError):
    """The directory is not a replay's output (a file is missing or unreadable)."""


def is_retriable(exc: BaseException) -> bool:
    """Whether the call that raised `exc` may succeed if made again, unchanged.

    The `retriable` flag of the error's class (ours, aiokafka's); an error
    without one is not, unless it wraps one that is: faust raises its
    `ProducerSendError` from aiokafka's error when `send()` itself fails. One
    exception to the flag: aiokafka's `KafkaTimeoutError` (a full send buffer,
    a broker that did not answer in time) carries none, but waiting is what it
    asks for (Kafka's Java client makes its TimeoutException retriable).
    """
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, KafkaTimeoutError):
            return True
        flag = getattr(cause, "retriable", None)
        if isinstance(flag, bool):
            return flag
        cause = cause.__cause__
    return False
