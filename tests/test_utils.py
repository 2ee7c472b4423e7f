"""Devices, atomic writes and run folders."""

import pytest
import torch

from ssl4rl.errors import UserError
from ssl4rl.runs import claim_run_dir, release_run_dir
from ssl4rl.utils import atomic_path, resolve_device, write_json


def test_device_auto_picks_cuda_when_present(monkeypatch):
    # CUDA cannot run here; the availability check is the only part mocked.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto").type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"


def test_device_errors_are_one_line():
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA GPU"):
            resolve_device("cuda")
    with pytest.raises(UserError, match="valid: auto, cpu"):
        resolve_device("tpu")


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "a.json"
    write_json(target, {"x": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("crash mid-write")
    assert target.read_text().strip().startswith("{") and '"x": 1' in target.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_run_dir_refuses_earlier_results_but_resumes(tmp_path):
    out, resuming = claim_run_dir(tmp_path / "r", "a: 1\n")
    assert not resuming and (out / "config.yaml").read_text() == "a: 1\n"
    (out / "checkpoint.pt").write_bytes(b"x")
    release_run_dir(out)  # as when the first process ends
    with pytest.raises(UserError, match="already holds"):
        claim_run_dir(out, "a: 2\n")
    with pytest.raises(UserError, match=r"other settings: a \(1 -> 2\)"):
        claim_run_dir(out, "a: 2\n", resume_file="checkpoint.pt")
    (out / ".results.json.abc123.tmp").write_text("half")  # a write a kill interrupted
    out, resuming = claim_run_dir(out, "a: 1\nprogress: false\n", resume_file="checkpoint.pt", safe_keys=("progress",))
    assert resuming and (out / "config.yaml").read_text() == "a: 1\n"  # the original config is kept
    assert not (out / ".results.json.abc123.tmp").exists()
    release_run_dir(out)


def test_run_dir_reuses_folder_of_run_that_crashed_early(tmp_path):
    out, _ = claim_run_dir(tmp_path / "r", "a: 1\n")
    (out / "tb").mkdir()  # TensorBoard events exist before the first checkpoint
    release_run_dir(out)
    out, resuming = claim_run_dir(out, "a: 2\n", resume_file="checkpoint.pt")
    assert not resuming and (out / "config.yaml").read_text() == "a: 2\n"
    release_run_dir(out)
