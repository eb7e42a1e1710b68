"""Write a labelled-window data set (`twin.dataset`) to a folder.

`write_dataset(out, events, anomalies, labels, meta)` writes one from frames in
memory. A long window's events do not fit there: `EventChunks` takes them one
by one as the replay folds and writes them to `events/part-NNNNN.parquet`
every `rows` events, and `write_chunked_dataset` cuts the windows and samples
from those files, chunk by chunk; the chunks stay, so a run stopped half way
leaves what it read. The folder holds `windows.parquet`, `samples.parquet`
(the same rows, whichever way they were made) and `manifest.json`; the
manifest is written last, so a folder with one is finished (`complete` says
whether the whole window was read), and it carries each file's sha256 so a
training job can check what it reads.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl

from twin.dataset import FORMAT_VERSION, in_order, samples, tagged, tally, windows
from twin.frames import seen_to_frame
from twin.replay import Seen
from twin.schema import SCHEMA_VERSION

META_KEYS = ("source", "from", "to", "command")
"""Keys of `meta` the manifest shows at its top level; any others go under `meta`."""


def write_dataset(out: Path, events: pl.DataFrame, anomalies: pl.DataFrame, labels: pl.DataFrame | None,
                  meta: dict[str, Any], *, pre_s: float = 60.0, post_s: float = 60.0,
                  normal_per_anomaly: int = 1, seed: int = 0) -> dict[str, Any]:
    """Write the windows, their samples and the manifest into `out`; return the manifest as written.

    `events` is a `twin.frames.seen_to_frame` table, `anomalies` an
    `anomalies_to_frame` one, `labels` the simulator's ground truth or None.
    `meta` names the source and its window (`source`, `from`, `to`) and the
    `command` that made the set; missing keys are written as null.
    """
    params = Params(pre_s, post_s, normal_per_anomaly, seed)
    found = windows(events, anomalies, labels, **asdict(params))
    rows = samples(events, found)
    out.mkdir(parents=True, exist_ok=True)
    files = {"windows.parquet": found, "samples.parquet": rows}
    for name, frame in files.items():
        frame.write_parquet(out / name)
    return _manifest(out, found, anomalies, labels, meta, params,
                     {name: frame.height for name, frame in files.items()})


@dataclass(frozen=True)
class Params:
    """How windows are cut (`twin.dataset.windows`), as the manifest records them."""

    pre_s: float = 60.0
    post_s: float = 60.0
    normal_per_anomaly: int = 1
    seed: int = 0


class EventChunks:
    """Replayed events written to `folder/part-NNNNN.parquet`, `rows` at a time, as they come.

    Memory holds one chunk, whatever the window's length; a part on disk is
    complete (written whole, then renamed), so a run killed at any moment
    leaves only readable parts.
    """

    def __init__(self, folder: Path, rows: int = 200_000) -> None:
        self.folder, self.rows = folder, rows
        self.parts: list[Path] = []
        self.part_rows: list[int] = []
        self.written = 0
        self.last_ts: float | None = None
        self._buffer: list[Seen] = []
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("part-*.parquet"):  # a previous export's parts are not this one's
            stale.unlink()

    def add(self, seen: Seen) -> None:
        self._buffer.append(seen)
        self.last_ts = seen.received_ts
        if len(self._buffer) >= self.rows:
            self.flush()

    def flush(self) -> None:
        """Write what is buffered as the next part."""
        if not self._buffer:
            return
        path = self.folder / f"part-{len(self.parts):05d}.parquet"
        seen_to_frame(self._buffer).write_parquet(path.with_suffix(".tmp"))
        path.with_suffix(".tmp").rename(path)
        self.parts.append(path)
        self.part_rows.append(len(self._buffer))
        self.written += len(self._buffer)
        self._buffer = []

    def scan(self) -> pl.LazyFrame:
        """Every part as one table (a chunk lacks the signals none of its robots reported)."""
        if not self.parts:
            return seen_to_frame([]).lazy()
        return pl.concat([pl.scan_parquet(p) for p in self.parts], how="diagonal_relaxed")


def write_chunked_dataset(out: Path, chunks: EventChunks, anomalies: pl.DataFrame, labels: pl.DataFrame | None,
                          meta: dict[str, Any], params: Params = Params(), *, complete: bool = True,
                          on_step: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """`write_dataset` over the events `chunks` wrote, one chunk in memory at a time (plus the samples).

    `complete=False` marks a set cut from the part of the window that was read
    (an interrupted export); `on_step(what, done, total)` follows the work.
    """
    chunks.flush()
    step = on_step or (lambda what, done, total: None)
    step("cutting windows", 0, len(chunks.parts) + 1)
    found = windows(chunks.scan(), anomalies, labels, **asdict(params))
    columns = event_columns(chunks.scan().collect_schema().names())
    out.mkdir(parents=True, exist_ok=True)
    tagged_parts, first_row = [], 0
    for i, part in enumerate(chunks.parts):
        step(f"samples of {part.name}", i + 1, len(chunks.parts) + 1)
        events = pl.read_parquet(part)
        tagged_parts.append(tagged(events, found, first_row).lazy())
        first_row += events.height
    rows = (pl.concat(tagged_parts, how="diagonal_relaxed").collect() if tagged_parts
            else tagged(seen_to_frame([]), found))
    rows = in_order(rows.with_columns(pl.lit(None, pl.Float64).alias(c) for c in columns if c not in rows.columns),
                    columns)
    step("writing windows and samples", len(chunks.parts) + 1, len(chunks.parts) + 1)
    found.write_parquet(out / "windows.parquet")
    rows.write_parquet(out / "samples.parquet")
    parts = {str(p.relative_to(out) if p.is_relative_to(out) else p): n
             for p, n in zip(chunks.parts, chunks.part_rows)}
    return _manifest(out, found, anomalies, labels, {**meta, "complete": complete}, params,
                     {"windows.parquet": found.height, "samples.parquet": rows.height, **parts})


def event_columns(names: list[str]) -> list[str]:
    """The columns of `seen_to_frame` in its order (head, codes, signals by name, where in the log) for
    the union of several chunks' columns."""
    fixed = seen_to_frame([]).columns
    head, tail = fixed[:fixed.index("codes") + 1], fixed[fixed.index("codes") + 1:]
    return [*head, *sorted(set(names) - set(fixed)), *tail]


def _manifest(out: Path, found: pl.DataFrame, anomalies: pl.DataFrame, labels: pl.DataFrame | None,
              meta: dict[str, Any], params: Params, files: dict[str, int]) -> dict[str, Any]:
    """Write `manifest.json` last (a folder with one is finished); return it as the file says."""
    manifest = {
        "format": "fleet-twin.labelled-windows", "format_version": FORMAT_VERSION,
        "event_schema_version": SCHEMA_VERSION,
        **{key: meta.get(key) for key in META_KEYS}, "complete": meta.get("complete", True),
        "parameters": asdict(params), "ground_truth": labels is not None,
        "counts": {**tally(found, anomalies, params.normal_per_anomaly), "samples": files["samples.parquet"]},
        "files": {name: {"rows": rows, "sha256": _sha256(out / name)} for name, rows in files.items()},
        "meta": {k: v for k, v in meta.items() if k not in (*META_KEYS, "complete")},
    }
    text = json.dumps(manifest, indent=2, default=str)
    (out / "manifest.json").write_text(text + "\n")
    return dict(json.loads(text))  # exactly what the file says (a Path in meta became a string)


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
