"""The fleet model: sectors, their sites, robot models and their signals.

Built once from the parsed seed files (the shell reads the YAML; this module
never touches files) and read-only afterwards. Validation errors name the
file's field path so a bad seed is fixed in one look.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

import msgspec

from twin.exceptions import InvalidSeed

T = TypeVar("T")


class Signal(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One numeric signal of a robot model."""

    unit: str
    nominal: tuple[float, float]
    """The normal operating band: outside it is anomalous but possible."""
    limits: tuple[float, float]
    """Physically possible range: outside it the message is rejected."""


ConfigName = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,47}$")]


class ConfigParam(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One named configuration parameter operators may desire (twin.desired checks values against it)."""

    type: Literal["float", "int", "enum"]
    min: float | None = None
    """Least value of a float or int parameter (None: unbounded)."""
    max: float | None = None
    values: tuple[str, ...] = ()
    """The allowed values of an enum parameter."""
    default: str | None = None
    """What a robot runs until told otherwise (the simulator starts its robots on it)."""


class Control(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What may be desired of a robot model beyond its AI-model version (seeds: `control`)."""

    firmware_versions: tuple[str, ...] = ()
    """Firmware a robot of this model may be told to run."""
    config: dict[ConfigName, ConfigParam] = {}
    """Named configuration parameters, reported by robots in `Event.config`."""


class RobotModel(msgspec.Struct, frozen=True):
    """A kind of robot and the full catalogue of signals it reports."""

    description: str
    period_s: float
    """Expected time between two reports of one robot, in seconds."""
    signals: dict[str, Signal]
    """Every signal by name, per-joint ones expanded (`joint1_temp_c`, ...)."""
    ai_model_versions: tuple[str, ...] = ()
    """Release registry: the AI-model versions this model may run (others count as 'other')."""
    control: Control = Control()
    """What may be desired of it besides `ai_model_versions` (twin.desired)."""


class _ModelSeed(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A robot model as written in models.yaml; signals are converted one by one."""

    period_s: Annotated[float, msgspec.Meta(gt=0)]
    signals: dict[str, Any]
    description: str = ""
    joints: Annotated[int, msgspec.Meta(ge=0, le=64)] = 0
    per_joint: dict[str, Any] = {}
    ai_model_versions: tuple[str, ...] = ()
    control: Control = Control()


def _model(body: Any, where: str, path: str) -> RobotModel:
    seed = _convert(body, _ModelSeed, where, path)
    own = {n: _convert(v, Signal, where, f"{path}.signals.{n}") for n, v in seed.signals.items()}
    per_joint = {n: _convert(v, Signal, where, f"{path}.per_joint.{n}") for n, v in seed.per_joint.items()}
    joint_signals = {
        f"joint{j}_{name}": sig for j in range(1, seed.joints + 1) for name, sig in per_joint.items()
    }
    return RobotModel(seed.description, seed.period_s, {**joint_signals, **own}, seed.ai_model_versions,
                      seed.control)


class Sector(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A sector of the economy, its sites and the robot models deployed there."""

    sites: tuple[str, ...]
    models: tuple[str, ...]


class Fleet(msgspec.Struct, frozen=True):
    """The whole fleet model; every label value the metrics use comes from here."""

    sectors: dict[str, Sector]
    models: dict[str, RobotModel]

    def version_label(self, model: str, version: str) -> str:
        """An AI-model version as a label: one of the model's release registry, else 'other'.

        Keeps every version-labelled series and summary bounded whatever robots report.
        """
        known = self.models[model].ai_model_versions if model in self.models else ()
        return version if version in known else "other"


def load_fleet(sectors_doc: Any, models_doc: Any, *, source: str = "seeds") -> Fleet:
    """Build and check the fleet model from the parsed `sectors` and `models` documents."""
    where = f"{source}/sectors.yaml"
    sectors = {
        name: _convert(body, Sector, where, f"sectors.{name}")
        for name, body in _top(sectors_doc, "sectors", where).items()
    }
    where = f"{source}/models.yaml"
    models = {
        name: _model(body, where, f"models.{name}")
        for name, body in _top(models_doc, "models", where).items()
    }
    fleet = Fleet(sectors=sectors, models=models)
    _check_references(fleet, source)
    return fleet


def _top(doc: Any, key: str, where: str) -> dict[str, Any]:
    body = doc.get(key) if isinstance(doc, dict) else None
    if not isinstance(body, dict):
        raise InvalidSeed(f"{where}: expected a mapping under the top-level key '{key}'")
    return body


def _convert(value: Any, type_: type[T], where: str, path: str) -> T:
    """msgspec.convert, with errors naming the file and the full field path."""
    try:
        return msgspec.convert(value, type_)
    except msgspec.ValidationError as exc:
        message = str(exc)
        if "`$" in message:
            message = message.replace("`$", f"`{path}")
        else:
            message += f" - at `{path}`"
        raise InvalidSeed(f"{where}: {message}") from None


def _check_references(fleet: Fleet, source: str) -> None:
    _check_sectors(fleet, f"{source}/sectors.yaml")
    _check_bands(fleet, f"{source}/models.yaml")
    _check_control(fleet, f"{source}/models.yaml")


def _check_sectors(fleet: Fleet, where: str) -> None:
    seen: dict[str, str] = {}
    for name, sector in fleet.sectors.items():
        for site in sector.sites:
            if site in seen:
                raise InvalidSeed(f"{where}: site '{site}' is in both '{seen[site]}' and '{name}'")
            seen[site] = name
        for model_name in sector.models:
            if model_name not in fleet.models:
                raise InvalidSeed(
                    f"{where}: sectors.{name}.models names unknown model '{model_name}'"
                )


def _check_bands(fleet: Fleet, where: str) -> None:
    for name, model in fleet.models.items():
        for sig_name, sig in model.signals.items():
            lo, hi = sig.limits
            if not lo <= sig.nominal[0] <= sig.nominal[1] <= hi:
                raise InvalidSeed(
                    f"{where}: models.{name}.signals.{sig_name}: "
                    "need limits[0] <= nominal[0] <= nominal[1] <= limits[1]"
                )


def _check_control(fleet: Fleet, where: str) -> None:
    for name, model in fleet.models.items():
        for param_name, param in model.control.config.items():
            path = f"{where}: models.{name}.control.config.{param_name}"
            if param.type == "enum" and not param.values:
                raise InvalidSeed(f"{path}: an enum needs a non-empty 'values' list")
            if param.type != "enum" and param.values:
                raise InvalidSeed(f"{path}: 'values' belongs to enums; a {param.type} takes min and max")
            if param.min is not None and param.max is not None and param.min > param.max:
                raise InvalidSeed(f"{path}: need min <= max")
            if param.default is not None and not _allowed(param, param.default):
                raise InvalidSeed(f"{path}: default {param.default!r} is not an allowed value")


def _allowed(param: ConfigParam, value: str) -> bool:
    if param.type == "enum":
        return value in param.values
    try:
        number = int(value) if param.type == "int" else float(value)
    except ValueError:
        return False
    return (param.min is None or number >= param.min) and (param.max is None or number <= param.max)
