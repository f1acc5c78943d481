"""The device self-check's CPU half, and its device half run against the CPU itself."""

import torch
from scripts import load_script


def load_gpu_check():
    return load_script("gpu_check")


def test_the_self_check_passes_on_the_cpu_and_says_what_it_skipped(capsys, monkeypatch):
    gpu_check = load_gpu_check()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main([]) == 0
    out = capsys.readouterr().out
    assert out.count("PASS") == len(gpu_check.CPU_HALF)
    assert "SKIP  device half: no CUDA device here" in out
    assert gpu_check.main(["--device", "cuda"]) == 2  # asked for, not there: one line


def test_the_device_half_runs_against_the_cpu(capsys):
    gpu_check = load_gpu_check()
    assert gpu_check.run(gpu_check.DEVICE_HALF, torch.device("cpu"))
    out = capsys.readouterr().out
    assert "start states bit-equal" in out and "FAIL" not in out


def test_a_failing_check_fails_the_self_check(capsys, monkeypatch):
    gpu_check = load_gpu_check()
    monkeypatch.setattr(gpu_check, "CPU_HALF", (lambda device: (False, "broken"),))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main([]) == 1
    assert "SOME CHECKS FAILED" in capsys.readouterr().out
