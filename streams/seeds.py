"""Read the seed files from disk and hand the parsed documents to the core."""

from __future__ import annotations

from pathlib import Path

import yaml

from twin.detect.params import DetectorConfig, load_config
from twin.exceptions import InvalidSeed
from twin.fleet import Fleet, load_fleet
from twin.sim.scenario import Scenario, load_scenario


def read_fleet(seeds_dir: Path) -> Fleet:
    """The fleet model from `<seeds_dir>/sectors.yaml` and `models.yaml`."""
    docs = [_read_yaml(seeds_dir / name) for name in ("sectors.yaml", "models.yaml")]
    return load_fleet(*docs, source=str(seeds_dir))


def read_detectors(seeds_dir: Path) -> DetectorConfig:
    """Detector parameters from `<seeds_dir>/detectors.yaml` (defaults plus per-model overrides)."""
    path = seeds_dir / "detectors.yaml"
    return load_config(_read_yaml(path), str(path))


def read_scenario(seeds_dir: Path, name: str) -> Scenario:
    """A scenario by name (`seeds/scenarios/<name>.yaml`) or by path to a YAML file."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else seeds_dir / "scenarios" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (seeds_dir / "scenarios").glob("*.yaml"))
        raise InvalidSeed(f"{path}: no such scenario (known: {', '.join(known)})")
    return load_scenario(_read_yaml(path), str(path))


def _read_yaml(path: Path) -> object:
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise InvalidSeed(f"{path}: seed file not found") from None
    except yaml.YAMLError as exc:
        raise InvalidSeed(f"{path}: not valid YAML: {exc}") from None
