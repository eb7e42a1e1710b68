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


def read_detectors(seeds_dir: Path, override: Path | None = None) -> DetectorConfig:
    """Detector parameters from `<seeds_dir>/detectors.yaml` (defaults plus per-model overrides).

    `override` is a file of the same shape whose keys replace the seed's, key
    by key: a what-if names only the knobs it turns.
    """
    path = seeds_dir / "detectors.yaml"
    doc = _read_yaml(path)
    if override is None:
        return load_config(doc, str(path))
    return load_config(_merge(doc, _read_yaml(override), str(override)), f"{path} + {override}")


def _merge(base: object, over: object, source: str) -> dict[str, object]:
    if not isinstance(over, dict) or not set(over) <= {"defaults", "models"}:
        raise InvalidSeed(f"{source}: expected a mapping with 'defaults' and/or 'models'")
    base = base if isinstance(base, dict) else {}
    models = dict(base.get("models") or {})
    for name, keys in (over.get("models") or {}).items():
        models[name] = {**(models.get(name) or {}), **(keys or {})}
    return {"defaults": {**(base.get("defaults") or {}), **(over.get("defaults") or {})}, "models": models}


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
