"""Routing a robot id to the worker holding its partition, from the group's assignment alone."""

from __future__ import annotations

from streams.kafka_client import partitioner
from streams.worker.routing import owners, ownership_problem, same_worker

TOPIC = "fleet.telemetry"


def test_owners_read_faust_s_host_to_partitions_map() -> None:
    distribution = {"http://a:6066": {TOPIC: [0, 2], "fleet.anomalies": [1]}, "http://b:6066": {TOPIC: [1, 3]}}
    assert owners(distribution, TOPIC) == {0: "http://a:6066", 2: "http://a:6066", 1: "http://b:6066",
                                           3: "http://b:6066"}


def test_every_partition_held_is_no_problem() -> None:
    assert ownership_problem({0: "a", 1: "b", 2: "a", 3: "b"}, TOPIC, 4) is None


def test_partitions_nobody_holds_are_named() -> None:
    assert ownership_problem({}, TOPIC, 8) == f"no worker is assigned partition(s) 0-7 of {TOPIC}"
    assert ownership_problem({0: "a", 3: "a", 4: "a"}, TOPIC, 6) == \
        f"no worker is assigned partition(s) 1-2, 5 of {TOPIC}"


def test_a_topic_with_more_partitions_than_configured_is_named() -> None:
    problem = ownership_problem({p: "a" for p in range(8)}, TOPIC, 4)
    assert problem is not None and "up to 7" in problem and "FLEET_TWIN_PARTITIONS" in problem


def test_the_partition_is_kafka_s_default_partitioner() -> None:
    # murmur2 of the key, as the Java client, the simulator and aiokafka's producer place a keyed
    # record; pinned, since another function would send lookups to workers without the twin
    assert [partitioner(8)(k.encode()) for k in ("r-1", "r-2", "agri-fresno-01-0000000")] == [7, 7, 1]
    assert {partitioner(4)(f"robot-{n}".encode()) for n in range(100)} == {0, 1, 2, 3}


def test_same_worker_compares_host_and_port() -> None:
    assert same_worker("http://127.0.0.1:6066", "http://127.0.0.1:6066/")
    assert not same_worker("http://127.0.0.1:6066", "http://127.0.0.1:6067")
