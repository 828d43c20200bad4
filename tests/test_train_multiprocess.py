"""Two CPU processes through `accelerate launch` with the DDP recipe config: GRPO trains and rank 0 saves."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")
pytest.importorskip("accelerate")

from emoreason.model.tiny import make_tiny_checkpoint  # noqa: E402
from emoreason.toyfaces import make_toy_dataset  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # two processes each import TRL and torch: 60-90 s on a 2-core CPU
def test_grpo_ddp_two_cpu_processes(tmp_path):
    launcher = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    if launcher is None:
        pytest.skip("the accelerate launcher is not installed next to this Python")
    data, checkpoint = make_toy_dataset(tmp_path / "data", 16, seed=0, size=64), make_tiny_checkpoint(tmp_path / "tiny")
    recipe = tmp_path / "grpo.yaml"
    recipe.write_text(
        f"model_path: {checkpoint}\ntrain_data: {data}\ncrops: frames\nevidence: false\nuse_audio: false\n"
        f"cache_dir: {tmp_path / 'cache'}\nreward_funcs: [format, emotion]\noutput_dir: {tmp_path / 'run'}\n"
        "max_steps: 2\nsave_steps: 2\nlogging_steps: 1\nper_device_train_batch_size: 4\nnum_generations: 4\n"
        "max_completion_length: 8\ngradient_checkpointing: false\nuse_cpu: true\nbf16: false\nreport_to: none\n"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1", MASTER_PORT="29517")
    command = [launcher, "launch", "--config_file", str(REPO / "scripts/recipes/accelerate/ddp.yaml"),
               "--main_process_port", "29517", str(REPO / "scripts/train_grpo.py"), "--config", str(recipe)]  # fmt: skip
    process = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert process.returncode == 0, process.stderr[-3000:]
    state = json.loads((tmp_path / "run" / "checkpoint-2" / "trainer_state.json").read_text())
    # two processes x 4 completions per step: the global generation batch is twice one process's
    assert state["global_step"] == 2 and state["train_batch_size"] == 4
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()
    assert process.stdout.count("trained checkpoint written to") == 2  # both ranks finish; rank 0 wrote it
