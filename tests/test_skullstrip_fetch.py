"""Set-up-time download and conversion of the skull-strip networks (no network needed)."""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
from test_skullstrip import tiny_keras_file

from bida_app.errors import BidaError, ExitCode
from bida_app.evaluation import fetch
from bida_app.evaluation.skullstrip import SkullStripper, sha256_file


def test_offline_download_fails_with_instructions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(cmd, **kwargs):
        assert "download" in cmd and "rbm==0.0.3" in cmd and "--no-deps" in cmd
        return subprocess.CompletedProcess(
            cmd, 1, "", "ERROR: Could not find a version that satisfies the requirement\n"
        )

    monkeypatch.setattr(fetch.subprocess, "run", offline)
    with pytest.raises(BidaError, match="internet") as err:
        fetch.fetch_skullstrip(tmp_path / "rat", "rat")
    assert err.value.code == ExitCode.TEMP_FAILURE
    assert "Could not find a version" in str(err.value)
    assert fetch.main(["--species", "rat", "--dest", str(tmp_path / "r")]) == 75
    assert not (tmp_path / "r" / "model.safetensors").exists()


def test_wrong_wheel_is_rejected(tmp_path: Path) -> None:
    source = fetch.SOURCES["rat"]
    h5 = tmp_path / "tiny.hdf5"
    tiny_keras_file(h5)
    wheel = tmp_path / "rbm-0.0.3-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.write(h5, source.member)
    with pytest.raises(BidaError, match="SHA-256") as err:
        fetch.fetch_skullstrip(tmp_path / "out", "rat", wheel=wheel)
    assert err.value.code == ExitCode.BAD_DATA
    empty = tmp_path / "empty.whl"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("other.txt", "x")
    with pytest.raises(BidaError, match="not the rbm==0.0.3 wheel"):
        fetch.fetch_skullstrip(tmp_path / "out", "rat", wheel=empty)


def test_convert_writes_verified_card(tmp_path: Path) -> None:
    h5 = tmp_path / "tiny.hdf5"
    tiny_keras_file(h5)
    card = fetch.convert(h5, "mouse", tmp_path / "mouse", fetch.SOURCES["mouse"])
    loaded = SkullStripper.from_safetensors(tmp_path / "mouse" / "model.safetensors", card)
    assert loaded.card["source"]["package"] == "seg-for-4modalities"
    assert loaded.card["weights"]["sha256"] == sha256_file(
        tmp_path / "mouse" / "model.safetensors"
    )
    assert loaded.card["recipe"]["threshold"] == 0.3
    x = np.zeros((1, 16, 16), np.float32)
    direct = SkullStripper.from_hdf5(h5, "mouse")
    assert np.array_equal(loaded.probabilities(x), direct.probabilities(x))


def test_existing_conversion_is_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    h5 = tmp_path / "tiny.hdf5"
    tiny_keras_file(h5)
    fetch.convert(h5, "rat", tmp_path / "rat")
    monkeypatch.setattr(fetch, "download_wheel", lambda *a: pytest.fail("downloaded again"))
    assert fetch.fetch_skullstrip(tmp_path / "rat", "rat") == tmp_path / "rat"


def test_default_location_follows_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bida_app.evaluation.skullstrip import default_weight_dirs, skullstrip_home

    monkeypatch.delenv("BIDA_SKULLSTRIP_DIR", raising=False)
    monkeypatch.setenv("BIDA_HOME", str(tmp_path / "home"))
    assert skullstrip_home() == tmp_path / "home" / "skullstrip"
    monkeypatch.setenv("BIDA_SKULLSTRIP_DIR", str(tmp_path / "ss"))
    assert default_weight_dirs("rat")[0] == tmp_path / "ss" / "rat"
    with pytest.raises(ValueError, match="unknown species"):
        default_weight_dirs("hamster")
