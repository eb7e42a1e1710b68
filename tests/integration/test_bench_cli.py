"""bench/pipeline_throughput.py: its --help documents the options with their defaults, and
--profile without py-spy stops at once, not after the throughput part (issue 17: a crash after
ten minutes on the missing py-spy, with 4.1 GB left in the temporary folder)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "pipeline_throughput.py"
WITH_DEFAULTS = ("--events", "--robots", "--repeat", "--rates", "--seconds", "--high-rate", "--high-seconds",
                 "--memory-robots", "--reports")


def bench_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pipeline_throughput", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_help_describes_every_option_and_gives_the_defaults() -> None:
    out = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "COLUMNS": "200"}, check=True).stdout
    options = {o.split()[0]: " ".join(o.split()) for o in out.split("options:")[1].split("\n  --")[1:]}
    assert all(len(text.split()) > 2 for text in options.values()), options  # a description beside each
    for name in WITH_DEFAULTS:
        assert "(default: " in options[name.removeprefix("--")], options[name.removeprefix("--")]
    assert "pip install py-spy" in options["profile"] and "docs/img/throughput.png" in options["plot"]


def test_profile_without_py_spy_stops_before_any_work(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bench = bench_module()
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))  # no py-spy beside it
    monkeypatch.setenv("PATH", str(tmp_path))  # nor on PATH
    monkeypatch.setattr(sys, "argv", ["pipeline_throughput.py", "--profile"])
    with pytest.raises(SystemExit) as stopped:
        bench.arguments()
    assert stopped.value.code == 2


def test_the_plot_does_not_overwrite_the_docs_figure_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["pipeline_throughput.py"])
    assert bench_module().arguments().plot is None  # main() then picks a file in the temporary folder
