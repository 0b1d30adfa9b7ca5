"""The CPU precision decision: measured once per machine, cached, reused, and shown by `tunepipe doctor`."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tunepipe import cli, devices

pytestmark = pytest.mark.unit


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "cache" / "precision.json"
    monkeypatch.setenv(devices.CACHE_ENV, str(path))
    monkeypatch.delenv(devices.DECISION_ENV, raising=False)
    monkeypatch.setattr(devices, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    devices.cpu_auto_precision.cache_clear()
    yield path
    devices.cpu_auto_precision.cache_clear()


def _fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new process: no inherited decision, nothing decided in memory."""
    monkeypatch.delenv(devices.DECISION_ENV, raising=False)
    devices.cpu_auto_precision.cache_clear()


def test_the_decision_is_measured_once_and_reused_from_the_cache(
    monkeypatch: pytest.MonkeyPatch, cache: Path
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(devices, "matmul_speedup", lambda: calls.append(1) or 4.0)
    assert devices.cpu_auto_precision()["precision"] == "bf16"
    stored = json.loads(cache.read_text())
    assert stored["precision"] == "bf16" and stored["bf16_matmul_speedup"] == 4.0
    assert stored["key"] == devices.cache_key(["avx512_bf16"])
    # a later process on a loaded machine would measure 1.1x: it reads the cache instead
    _fresh(monkeypatch)
    monkeypatch.setattr(devices, "matmul_speedup", lambda: calls.append(1) or 1.1)
    again = devices.cpu_auto_precision()
    assert again["precision"] == "bf16" and "cached in" in again["reason"]
    assert len(calls) == 1


def test_another_cpu_model_or_torch_build_measures_again(
    monkeypatch: pytest.MonkeyPatch, cache: Path
) -> None:
    monkeypatch.setattr(devices, "matmul_speedup", lambda: 4.0)
    assert devices.cpu_auto_precision()["precision"] == "bf16"
    _fresh(monkeypatch)
    monkeypatch.setattr(devices, "cpu_model", lambda: "Another CPU 9000")
    monkeypatch.setattr(devices, "matmul_speedup", lambda: 1.1)
    assert devices.cpu_auto_precision()["precision"] == "fp32"
    assert json.loads(cache.read_text())["key"].startswith("Another CPU 9000 |")


def test_a_damaged_cache_is_measured_again(monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    cache.parent.mkdir(parents=True)
    cache.write_text("{not json")
    monkeypatch.setattr(devices, "matmul_speedup", lambda: 1.1)
    assert devices.cpu_auto_precision()["precision"] == "fp32"
    assert json.loads(cache.read_text())["precision"] == "fp32"


def test_cache_off_writes_nothing(monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    monkeypatch.setenv(devices.CACHE_ENV, "off")
    monkeypatch.setattr(devices, "matmul_speedup", lambda: 4.0)
    assert devices.cpu_auto_precision()["precision"] == "bf16"
    assert devices.cache_path() is None and not cache.exists()


def test_matmul_figures_are_positive() -> None:
    figures = devices.matmul_figures(rows=64, inner=32, outer=32, repeats=2)
    assert figures["fp32_gflops"] > 0 and figures["bf16_gflops"] > 0


def test_doctor_prints_the_machine_the_figures_and_the_decision(
    cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch
    import transformers

    cli.main(["doctor"])
    first, err = capsys.readouterr()
    assert "precision auto" not in err  # said once, on stdout with the figures
    assert f"cpu: {devices.cpu_model()}" in first
    assert "bf16 units: avx512_bf16" in first
    assert "matmul: fp32 " in first and "GFLOP/s, bf16 " in first
    assert "precision auto on this CPU: " in first
    assert f"torch {torch.__version__}, transformers {transformers.__version__}" in first
    assert f"threads: torch {torch.get_num_threads()} intra-op" in first
    assert cache.is_file()
    measured = json.loads(cache.read_text())["measured"]
    cli.main(["doctor"])  # the second run reads the cache
    second = capsys.readouterr().out
    assert f"measured {measured}, cached in {cache}" in second
    cli.main(["doctor", "--remeasure"])
    assert "cached in" not in capsys.readouterr().out.split("precision auto")[1].split("\n")[0]
