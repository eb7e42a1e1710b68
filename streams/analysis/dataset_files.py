"""Write a labelled-window data set (`twin.dataset`) to a folder.

`write_dataset(out, events, anomalies, labels, meta)` is the whole contract:
the CLI builds the frames from a replay and passes what it was asked for in
`meta`. The folder holds `windows.parquet`, `samples.parquet` and
`manifest.json`; the manifest is written last, so a folder with one is
complete, and it carries each file's sha256 so a training job can check what
it reads.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import polars as pl

from twin.dataset import FORMAT_VERSION, samples, tally, windows
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
    params = {"pre_s": pre_s, "post_s": post_s, "normal_per_anomaly": normal_per_anomaly, "seed": seed}
    found = windows(events, anomalies, labels, pre_s=pre_s, post_s=post_s,
                    normal_per_anomaly=normal_per_anomaly, seed=seed)
    rows = samples(events, found)
    out.mkdir(parents=True, exist_ok=True)
    files = {"windows.parquet": found, "samples.parquet": rows}
    for name, frame in files.items():
        frame.write_parquet(out / name)
    manifest = {
        "format": "fleet-twin.labelled-windows", "format_version": FORMAT_VERSION,
        "event_schema_version": SCHEMA_VERSION,
        **{key: meta.get(key) for key in META_KEYS},
        "parameters": params, "ground_truth": labels is not None,
        "counts": {**tally(found, anomalies, normal_per_anomaly), "samples": rows.height},
        "files": {name: {"rows": frame.height, "sha256": _sha256(out / name)} for name, frame in files.items()},
        "meta": {k: v for k, v in meta.items() if k not in META_KEYS},
    }
    text = json.dumps(manifest, indent=2, default=str)
    (out / "manifest.json").write_text(text + "\n")
    return dict(json.loads(text))  # exactly what the file says (a Path in meta became a string)


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
