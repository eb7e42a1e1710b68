"""One exception tree: every error raised on purpose is a FleetTwinError, and says on its class whether
trying again may help; `is_retriable` reads that flag on ours and on aiokafka's (wrapped by faust or not)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from aiokafka.errors import (
    KafkaConnectionError, KafkaTimeoutError, MessageSizeTooLargeError, NotLeaderForPartitionError,
    RecordListTooLargeError,
)
from faust.exceptions import ProducerSendError

from dashboards.prom import Prometheus, PrometheusUnavailable, QueryFailed
from streams.exceptions import MissingKafkaSecret, NoApiToken, ProcessFailed, ReportError, is_retriable
from twin.exceptions import FleetTwinError, InvalidEvent, InvalidSeed, InvariantViolated


@pytest.mark.parametrize("cls", [InvalidEvent, InvalidSeed, InvariantViolated, ProcessFailed, NoApiToken,
                                 MissingKafkaSecret, ReportError, QueryFailed])
def test_errors_that_need_someone_to_act_are_not_retriable(cls: type[FleetTwinError]) -> None:
    assert issubclass(cls, FleetTwinError) and cls.retriable is False


def test_an_unreachable_prometheus_is_retriable_and_still_a_query_failure() -> None:
    assert issubclass(PrometheusUnavailable, QueryFailed) and PrometheusUnavailable.retriable is True


def _wrapped(err: Exception) -> ProducerSendError:
    # what faust's producer raises when aiokafka's send() itself fails
    try:
        raise ProducerSendError(f"Error while sending: {err!r}") from err
    except ProducerSendError as wrapper:
        return wrapper


@pytest.mark.parametrize(("err", "expected"), [
    (KafkaConnectionError(), True),
    (NotLeaderForPartitionError(), True),
    (KafkaTimeoutError(), True),  # aiokafka gives it no flag; a full buffer or a slow broker asks for waiting
    (MessageSizeTooLargeError(), False),  # the same bytes stay too large until someone changes a limit
    (RecordListTooLargeError(), False),
    (_wrapped(MessageSizeTooLargeError()), False),
    (_wrapped(KafkaConnectionError()), True),
    (_wrapped(KafkaTimeoutError()), True),
    (PrometheusUnavailable("down"), True),
    (NoApiToken("none"), False),
    (ValueError("ours, unplanned"), False),
])
def test_is_retriable_reads_the_flag_of_the_error_or_of_the_one_it_wraps(err: Exception, expected: bool) -> None:
    assert is_retriable(err) is expected


def _prometheus(status: int, body: Any) -> Prometheus:
    prom = Prometheus("http://prometheus.invalid")
    prom._http = httpx.Client(transport=httpx.MockTransport(
        lambda _request: httpx.Response(status, json=body) if body is not None else httpx.Response(status)))
    return prom


@pytest.mark.parametrize(("status", "body", "error"), [
    (400, {"status": "error", "errorType": "bad_data", "error": "parse error"}, QueryFailed),
    (503, {"status": "error", "errorType": "timeout", "error": "query timed out"}, PrometheusUnavailable),
    (502, None, PrometheusUnavailable),  # a proxy's page, not the API's JSON
])
def test_prometheus_errors_say_whether_to_ask_again(status: int, body: Any, error: type[QueryFailed]) -> None:
    with _prometheus(status, body) as prom, pytest.raises(QueryFailed) as raised:
        prom.instant("up")
    assert type(raised.value) is error
