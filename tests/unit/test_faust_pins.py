"""What this project relies on in Faust without a public API for it, pinned for the version in use.

`streams.worker.table` writes a batch of twins to a table's changelog on its
own producer and then puts the values into the table's local store
(`put_local`, through `Collection.data`). If a Faust upgrade changes where a
table keeps its values or how it serializes a changelog key, these fail first.
(Ingest reads telemetry on its own consumer, `streams.worker.ingest_reader`:
Faust's commits of acked offsets, pinned here before, no longer matter.)
"""

from __future__ import annotations

import asyncio

import faust
import pytest
from faust.types import TP

from streams.settings import Settings
from streams.worker.table import CODECS, ChangelogWriter, changelog_key, put_local


def table() -> faust.Table:
    app = faust.App("pin-test", broker="kafka://127.0.0.1:1", store="memory://", autodiscover=False)
    return app.Table("twins", key_type=str, value_type=bytes, partitions=4)


def test_a_value_put_in_the_local_store_is_what_the_table_serves() -> None:
    twins = table()
    put_local(twins, "r-1", b"twin bytes", 0)
    assert twins.get("r-1") == b"twin bytes"
    assert list(twins.values()) == [b"twin bytes"]
    put_local(twins, "r-1", None, 0)
    assert twins.get("r-1") is None and list(twins.values()) == []


def test_after_a_rebalance_the_store_drops_what_was_put_for_partitions_no_longer_held() -> None:
    """A worker that wrote a partition's twins and then lost it must not keep them: they were
    counted twice (its fleet metrics and /twins, and the new owner's)."""
    twins = table()
    put_local(twins, "kept", b"a", 0)
    put_local(twins, "moved", b"b", 1)
    held = {TP(twins.changelog_topic.get_topic_name(), 0)}
    asyncio.run(twins.data.on_recovery_completed(held, set()))  # what Faust runs after each rebalance
    assert dict(twins.items()) == {"kept": b"a"}


def test_the_changelog_record_is_the_one_faust_writes_and_recovers() -> None:
    twins = table()
    topic = twins.changelog_topic
    key, _ = topic.prepare_key("r-1", twins.key_serializer)
    value, _ = topic.prepare_value(b"twin bytes", twins.value_serializer)
    assert topic.get_topic_name() == "pin-test-twins-changelog"
    assert key == b'"r-1"'  # Faust's json key serializer: what its recovery decodes
    assert value == b"twin bytes"
    assert (twins.key_serializer, twins.value_serializer) == CODECS


@pytest.mark.parametrize("key", ["r-1", "robot:7.a_b", "alert/\u00e9t\u00e9", 'a "quoted" \\ key', "\u96c6\U0001f916"])
def test_the_writer_s_keys_are_the_bytes_faust_s_json_serializer_makes(key: str) -> None:
    twins = table()
    assert changelog_key(key) == twins.changelog_topic.prepare_key(key, twins.key_serializer)[0]


def test_the_writer_refuses_a_table_of_other_serializers_before_writing() -> None:
    app = faust.App("pin-test", broker="kafka://127.0.0.1:1", store="memory://", autodiscover=False)
    counts = app.Table("counts", key_type=str, value_type=int, partitions=4)  # values in json
    with pytest.raises(TypeError, match="values raw"):
        asyncio.run(ChangelogWriter(Settings()).write(counts, {"k": (0, b"1")}))  # no broker reached
