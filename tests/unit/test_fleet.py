from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from streams.seeds import read_fleet
from twin.exceptions import InvalidSeed
from twin.fleet import Fleet, load_fleet

SEEDS = Path(__file__).resolve().parents[2] / "seeds"


def docs() -> tuple[dict, dict]:
    return (
        yaml.safe_load((SEEDS / "sectors.yaml").read_text()),
        yaml.safe_load((SEEDS / "models.yaml").read_text()),
    )


def test_the_fleet_has_18_sectors_each_with_sites_and_models(fleet: Fleet) -> None:
    assert len(fleet.sectors) == 18
    for name, sector in fleet.sectors.items():
        assert sector.sites, name
        assert all(m in fleet.models for m in sector.models), name


def test_a_site_in_two_sectors_is_refused_naming_both() -> None:
    sectors, models = docs()
    sectors["sectors"]["retail"]["sites"].append("mining-pilbara-01")
    with pytest.raises(InvalidSeed, match=r"site 'mining-pilbara-01' is in both 'retail' and 'mining'"):
        load_fleet(sectors, models)


def test_a_model_referenced_but_not_defined_names_file_and_field() -> None:
    sectors, models = docs()
    sectors["sectors"]["mining"]["models"] = ["excavator-9000"]
    with pytest.raises(InvalidSeed, match=r"sectors\.yaml: sectors\.mining\.models .*excavator-9000"):
        load_fleet(sectors, models)


def test_an_ill_typed_field_names_its_path() -> None:
    sectors, models = docs()
    models["models"]["amr"]["period_s"] = "often"
    with pytest.raises(InvalidSeed, match=r"models\.yaml: .* `models\.amr\.period_s`"):
        load_fleet(sectors, models)


def test_nominal_band_must_lie_within_limits() -> None:
    sectors, models = docs()
    models["models"]["amr"]["signals"]["speed_mps"]["nominal"] = [0, 20]
    with pytest.raises(InvalidSeed, match="amr.signals.speed_mps"):
        load_fleet(sectors, models)


def test_a_site_in_two_sectors_is_refused() -> None:
    sectors, models = docs()
    sectors["sectors"]["retail"]["sites"].append("mining-pilbara-01")
    with pytest.raises(InvalidSeed, match="mining-pilbara-01"):
        load_fleet(sectors, models)


def test_missing_seed_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(InvalidSeed, match="sectors.yaml: seed file not found"):
        read_fleet(tmp_path)


def test_per_joint_signals_are_expanded_per_joint(fleet: Fleet) -> None:
    arm = fleet.models["industrial-arm-6ax"].signals
    assert {f"joint{j}_temp_c" for j in range(1, 7)} <= set(arm)
    assert "joint7_temp_c" not in arm
    assert len(fleet.models["humanoid"].signals) == 30


def test_a_bad_per_joint_signal_names_its_path() -> None:
    sectors, models = docs()
    models["models"]["humanoid"]["per_joint"]["temp_c"]["unit"] = 3
    with pytest.raises(InvalidSeed, match=r"models\.yaml: .* `models\.humanoid\.per_joint\.temp_c\.unit`"):
        load_fleet(sectors, models)


def test_an_unknown_field_in_a_seed_is_refused_with_its_path() -> None:
    sectors, models = docs()
    models["models"]["amr"]["colour"] = "red"
    with pytest.raises(InvalidSeed, match=r"unknown field `colour` - at `models\.amr`"):
        load_fleet(sectors, models)
