"""scripts/gpu_check.sh's program runs on a CPU in its tiny mode and reports throughput."""

from __future__ import annotations

import json
import os
from pathlib import Path

from click.testing import CliRunner

from bench.gpu_check import main

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.sh"


def test_tiny_gpu_check_on_cpu(tmp_path: Path):
    path = tmp_path / "gpu.json"
    result = CliRunner().invoke(main, ["--device", "cpu", "--tiny", "--json", str(path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "samples/s" in result.stdout and "users/s" in result.stdout and "n/a (not CUDA)" in result.stdout
    report = json.loads(path.read_text())
    assert report["train_samples_per_s"] > 0 and report["eval_users_per_s"] > 0
    assert report["eval_users"] == 32 and report["train_peak_mib"] is None


def test_script_calls_the_check():
    assert os.access(SCRIPT, os.X_OK) and "-m bench.gpu_check" in SCRIPT.read_text()


def test_bad_option_is_one_line():
    result = CliRunner().invoke(main, ["--device", "cpu", "--tiny", "--steps", "0"])
    assert result.exit_code == 2 and "steps and users must be > 0" in result.stderr


def test_attention_probe_runs_every_variant_on_cpu():
    import subprocess
    import sys

    probe = SCRIPT.parent / "causal_attention_probe.py"
    done = subprocess.run([sys.executable, str(probe), "--device", "cpu", "--steps", "1"], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 12  # id and tiger x default, math, efficient, cudnn, eager, fp32
    for name in ("id", "tiger"):
        for variant in ("default", "math", "eager", "fp32"):
            assert any(line.split()[:2] == [name, variant] and "finite for 1 steps" in line for line in lines), (name, variant)


def test_gpu_suite_runs_each_check():
    suite = (SCRIPT.parent / "gpu_suite.sh").read_text()
    assert os.access(SCRIPT.parent / "gpu_suite.sh", os.X_OK)
    for check in ("-m bench.gpu_check", "bench.cli perf", "causal_attention_probe.py", "--backbone causal:tiny-llama",
                  "ml-100k:$DATA/ml-100k"):
        assert check in suite, check
