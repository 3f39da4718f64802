"""The set-up a newcomer gets: pinned dependencies that agree, and generated data kept out of git."""
from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def locked_versions() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_every_direct_dependency_is_locked_at_its_pinned_version():
    direct = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    locked = locked_versions()
    for requirement in direct:
        name, version = requirement.split("==")
        assert locked.get(name.lower().replace("_", "-")) == version, f"{requirement} differs in requirements.lock"


def test_torch_trio_is_pinned_together_and_cv2_has_one_provider():
    locked = locked_versions()
    assert (locked["torch"], locked["torchvision"], locked["torchaudio"]) == ("2.11.0", "0.26.0", "2.11.0")
    assert "opencv-contrib-python" in locked
    assert not {"opencv-python", "opencv-python-headless"} & set(locked)


@pytest.mark.parametrize("path, ignored", [
    ("data/raw/demo/AudioWAV/1001_IEO_NEU_XX.wav", True),
    ("data/features/demo/shard-0.h5", True),
    ("data/models/face_detection_short_range.tflite", True),
    ("data/manifests/demo/manifest.csv", True),
    ("runs/demo/separability/confusion.png", True),
    (".venv/bin/python", True),
    ("data/raw/README.md", False),
    ("data/features/README.md", False),
])
def test_generated_files_stay_out_of_git(path, ignored):
    result = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT)
    if result.returncode == 128:
        pytest.skip("not a git checkout")
    assert (result.returncode == 0) == ignored


def test_set_up_on_a_short_disk_stops_before_creating_the_environment(tmp_path):
    (tmp_path / "Makefile").write_bytes((ROOT / "Makefile").read_bytes())
    (tmp_path / "requirements.lock").write_text("")
    result = subprocess.run(["make", "setup", "SETUP_MIN_FREE_GB=1000000", f"PYTHON={sys.executable}"],
                            cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode != 0
    assert "GB free on this project's disk" in result.stdout
    assert "SETUP_MIN_FREE_GB=0" in result.stdout
    assert not (tmp_path / ".venv").exists()
