"""`fleet-twin desire`: the arguments become the body the API takes; a command line or a worker
that cannot serve it is one line and exit 2 (tests/e2e/test_desire_api.py drives a real worker)."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from streams.cli.desire_commands import assignments, describe, field_names, selector
from streams.cli.main import app
from tests.support.net import free_port

TOKEN = "t" * 32


def test_options_make_the_selector_and_none_means_the_whole_fleet() -> None:
    assert selector(None, None, None, None, None, None) == {}
    assert selector(["r-1", "r-2"], "logistics", None, "amr", "policy-2.4.0", 0.05) == {
        "robots": ["r-1", "r-2"], "sector": "logistics", "model": "amr", "version": "policy-2.4.0", "share": 0.05}
    assert describe({}) == "whole fleet"
    assert describe({"robots": ["r-1", "r-2"], "model": "amr", "share": 0.05}) == "robots=r-1,r-2 model=amr share=0.05"


def test_assignments_and_field_names() -> None:
    assert assignments(["ai_model=policy-2.5.0", " config.max_speed_mps = 1.2"]) == {
        "ai_model": "policy-2.5.0", "config.max_speed_mps": "1.2"}
    assert assignments(["config.note=a=b"]) == {"config.note": "a=b"}  # the first '=' splits
    assert field_names(["ai_model", "firmware"]) == {"ai_model": None, "firmware": None}
    for bad in (["ai_model"], ["=x"], ["ai_model=a", "ai_model=b"]):
        with pytest.raises(typer.BadParameter):
            assignments(bad)
    with pytest.raises(typer.BadParameter, match="field names only"):
        field_names(["ai_model=x"])


@pytest.mark.parametrize(("args", "says"), [
    (["desire", "set", "ai_model", "--reason", "r"], "want FIELD=VALUE"),
    (["desire", "clear", "ai_model=x", "--reason", "r"], "field names only"),
    (["desire", "set", "ai_model=policy-2.5.0"], "Missing option '--reason'"),
    (["desire", "set", "ai_model=policy-2.5.0", "--reason", "r", "--share", "half"], "'--share'"),
])
def test_a_command_line_that_cannot_mean_anything_is_exit_2(args: list[str], says: str) -> None:
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200", "FLEET_TWIN_API_TOKEN": TOKEN})
    assert result.exit_code == 2 and says in result.output, result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("args", [["desire", "list"], ["desire", "set", "ai_model=policy-2.5.0", "--reason", "r"],
                                  ["desire", "clear", "ai_model", "--reason", "r", "--model", "amr"]])
def test_no_worker_or_no_token_is_one_line_and_exit_2(args: list[str], tmp_path: Path) -> None:
    port = str(free_port())  # nothing listens there
    result = CliRunner().invoke(app, args, env={"FLEET_TWIN_WEB_PORT": port, "FLEET_TWIN_API_TOKEN": TOKEN})
    assert result.exit_code == 2
    assert f"fleet-twin desire: no answer from the worker at http://127.0.0.1:{port}/desired" in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(app, args, env={"FLEET_TWIN_WEB_PORT": port, "FLEET_TWIN_STATE_DIR": str(tmp_path),
                                                "FLEET_TWIN_API_TOKEN": ""})
    assert result.exit_code == 2 and "fleet-twin desire: no API token" in result.output, result.output
