"""Read the seed files from disk and hand the parsed documents to the core."""

from __future__ import annotations

from pathlib import Path

import yaml

from twin.exceptions import InvalidSeed
from twin.fleet import Fleet, load_fleet


def read_fleet(seeds_dir: Path) -> Fleet:
    """The fleet model from `<seeds_dir>/sectors.yaml` and `models.yaml`."""
    docs = [_read_yaml(seeds_dir / name) for name in ("sectors.yaml", "models.yaml")]
    return load_fleet(*docs, source=str(seeds_dir))


def _read_yaml(path: Path) -> object:
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise InvalidSeed(f"{path}: seed file not found") from None
    except yaml.YAMLError as exc:
        raise InvalidSeed(f"{path}: not valid YAML: {exc}") from None
