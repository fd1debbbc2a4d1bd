"""`launch:` without training anything: the launcher command's checks, a failing launcher's error and
exit code, the rl reward server (and its key), and the checks of trl's vLLM rollouts."""

from __future__ import annotations

import http.server
import shlex
import socket
import sys
import threading
from multiprocessing.connection import AuthenticationError, Client
from pathlib import Path
from types import SimpleNamespace

import pytest

from ladder.config import load_experiment
from ladder.errors import ConfigError, LadderError
from ladder.runner import run_experiment
from ladder.training.launch import check_launch, processes
from ladder.training.remote import RemoteRollouts, RewardServer
from tests.conftest import experiment

RL = {"type": "rl", "steps": 1, "generations": 2, "prompts_per_step": 1, "best_of_n": False}


@pytest.mark.parametrize("launch", ["accelerate launch --cpu --num_processes 2",
                                    "accelerate launch --cpu --num-processes=4"])
def test_accelerate_cpu_with_several_processes_is_refused_with_the_command_that_works(launch):
    # accelerate 1.15's --cpu takes its single-process launcher unless mpirun runs it: asking for 2
    # processes that way trains on one, silently.
    with pytest.raises(ValueError) as err:
        check_launch(launch)
    assert "starts one process" in str(err.value) and "--multi_gpu --num_processes" in str(err.value)
    assert "torchrun --nproc_per_node" in str(err.value)


@pytest.mark.parametrize("launch", ["accelerate launch --multi_gpu --num_processes 2", "accelerate launch --cpu",
                                    "accelerate launch --cpu --num_processes 1", "torchrun --nproc_per_node 2",
                                    "accelerate launch --config_file fsdp.yaml",
                                    "accelerate launch --cpu --num_processes 2 --mpirun_hostfile hosts"])
def test_working_launchers_pass(launch):
    assert check_launch(launch) == launch


def test_process_count_and_bad_launch_values():
    assert processes(shlex.split("torchrun --nproc_per_node=8")) == 8
    assert processes(shlex.split("accelerate launch --num_processes 4")) == 4
    assert processes(["python"]) == 1
    for bad, needle in (("", "empty"), ("accelerate 'launch", "not a command line")):
        with pytest.raises(ValueError, match=needle):
            check_launch(bad)


def test_launch_is_a_key_of_every_training_stage_and_checked_at_load(tmp_path):
    for stage in ({"type": "rl"}, {"type": "reward_model", "data": "pairs.jsonl"}, {"type": "sft"}):
        path = experiment(tmp_path, "ladder-tiny", stages=[{**stage, "launch": "accelerate launch --cpu "
                                                            "--num_processes 2"}])
        with pytest.raises(ConfigError) as err:
            load_experiment(path)
        assert "launch" in str(err.value) and "starts one process" in str(err.value)


def test_a_missing_launcher_fails_before_the_best_of_n_run(tmp_path):
    path = experiment(tmp_path, "ladder-tiny", n_test=4, stages=[{**RL, "best_of_n": True,
                                                                  "launch": "no-such-launcher --num_processes 2"}])
    with pytest.raises(ConfigError) as err:
        run_experiment(load_experiment(path))
    assert "launcher 'no-such-launcher' is not found" in str(err.value) and "stages.rl.launch" in str(err.value)
    assert not list(tmp_path.glob("results/t/rl/*/best_of_n_samples.jsonl"))


def test_a_launcher_that_fails_is_one_paragraph_and_exit_code_2(tmp_path):
    # The launched command gets `-m ladder.training.rl_local <spec>` appended; this one exits 3 at once.
    # (`ladder run` exits with a LadderError's exit_code, one paragraph, no traceback: tests/test_cli.py.)
    launch = shlex.join([sys.executable, "-c", "import sys; sys.exit(3)"])
    path = experiment(tmp_path, "ladder-tiny", n_test=4, stages=[{**RL, "launch": launch}])
    with pytest.raises(LadderError) as err:
        run_experiment(load_experiment(path))
    text = str(err.value)
    assert err.value.exit_code == 2 and "field 'stages.rl.launch'" in text and "failed (exit code 3)" in text
    assert "re-running resumes from the last checkpoint" in text
    run = next((tmp_path / "results" / "t" / "rl").iterdir())
    assert (run / "rl_spec.json").exists() and (run / "rl_prompts.json").exists()  # what the ranks read
    assert not (run / "model").exists()


class Running:
    """A stand-in for the launcher's process: running while `thread` (the ranks) runs."""

    def __init__(self, thread: threading.Thread):
        self.thread = thread

    def poll(self):
        return None if self.thread.is_alive() else 0


def test_reward_server_answers_with_the_key_and_refuses_a_wrong_one():
    asked = []

    def handler(indices, texts, step, tokens):
        asked.append((indices, texts, step, tokens))
        if texts == ["boom"]:
            raise ValueError("the judge is down")
        return [float(len(t)) for t in texts]

    with RewardServer(handler) as server:
        env = server.env
        host, port = env["LADDER_REWARD_ADDRESS"].split(":")
        assert host == "127.0.0.1" and len(bytes.fromhex(env["LADDER_REWARD_AUTHKEY"])) == 32
        with pytest.raises(AuthenticationError):
            Client((host, int(port)), authkey=b"not the key")
        results = {}

        def rank():  # a rank's reward function, as trl calls it in a launched process
            remote = RemoteRollouts(env["LADDER_REWARD_ADDRESS"], env["LADDER_REWARD_AUTHKEY"])
            results["ok"] = remote([0, 1], ["ab", "abc"], 1, [2, 3])
            with pytest.raises(RuntimeError) as err:
                remote([2], ["boom"], 1, [1])
            results["error"] = str(err.value)
            remote._conn.close()

        t = threading.Thread(target=rank)
        t.start()
        server.serve(Running(t), poll=0.05)
    assert results["ok"] == [2.0, 3.0] and asked[0] == ([0, 1], ["ab", "abc"], 1, [2, 3])
    assert "the judge is down" in results["error"] and isinstance(server.error, ValueError)
    assert server.refused == 1  # the wrong key got nothing, and the server went on serving


def test_a_rank_started_without_the_stage_says_so(monkeypatch):
    monkeypatch.delenv("LADDER_REWARD_ADDRESS", raising=False)
    with pytest.raises(SystemExit, match="started by the rl stage"):
        RemoteRollouts()


# -- trl's vLLM rollouts ---------------------------------------------------------------------------


@pytest.mark.parametrize("args,needle", [
    ({"use_vllm": True, "vllm_mode": "remote"}, "vllm_mode must be server"),
    ({"vllm_server_port": 8001}, "only applies with use_vllm: true"),
])
def test_vllm_keys_are_checked_at_load(tmp_path, args, needle):
    path = experiment(tmp_path, "ladder-tiny", stages=[{"type": "rl", "trainer_args": args}])
    with pytest.raises(ConfigError, match=needle):
        load_experiment(path)


def test_use_vllm_without_a_gpu_is_a_clear_error_before_any_sampling(tmp_path):
    path = experiment(tmp_path, "ladder-tiny", n_test=4, stages=[
        {**RL, "best_of_n": True, "trainer_args": {"use_vllm": True, "vllm_mode": "colocate"}}])
    with pytest.raises(ConfigError) as err:
        run_experiment(load_experiment(path))
    text = str(err.value)
    assert "stages.rl.trainer_args" in text and "needs a CUDA GPU and the vllm package" in text
    assert "no CUDA GPU" in text and "drop use_vllm" in text
    assert not list(tmp_path.glob("results/t/rl/*/best_of_n_samples.jsonl"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_vllm_server_probe_names_the_address_and_how_to_start_it():
    from ladder.stages.rl import probe_vllm_server

    port = free_port()  # nothing listens there
    with pytest.raises(ConfigError) as err:
        probe_vllm_server({"vllm_mode": "server", "vllm_server_host": "127.0.0.1", "vllm_server_port": port},
                          "stages.rl.trainer_args", "/models/policy")
    text = str(err.value)
    assert f"http://127.0.0.1:{port} does not answer" in text
    assert f"trl vllm-serve --model /models/policy --port {port}" in text

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            self.send_response(200 if self.path == "/health/" else 404)
            self.end_headers()

        def log_message(self, *a):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        probe_vllm_server({"vllm_server_base_url": f"http://127.0.0.1:{server.server_port}"}, "f", "m")
    finally:
        server.shutdown()


def test_vllm_rollouts_stop_at_the_stop_strings(tmp_path):
    from ladder.stages.rl import RL, RLConfig

    ctx = SimpleNamespace(experiment=SimpleNamespace(seed_for=lambda s: 0), run_dir=Path(tmp_path),
                          gen=SimpleNamespace(stop=["\n"], max_tokens=8))
    base = SimpleNamespace(config=SimpleNamespace(model_dump=lambda mode: {"backend": "hf", "name": "m"}))
    with_vllm = RL(RLConfig(trainer_args={"use_vllm": True})).spec(ctx, base)
    assert with_vllm.trainer["generation_kwargs"] == {"stop": ["\n"]}
    # trl's transformers sampling takes no stop strings: ladder cuts the text before rewarding it.
    assert "generation_kwargs" not in RL(RLConfig()).spec(ctx, base).trainer


def test_a_launcher_beside_the_interpreter_is_found_without_it_on_path(tmp_path, monkeypatch):
    """`venv/bin/ladder` (or `venv/bin/python -m pytest`) run without the venv on PATH: the
    launcher pip put beside that Python is found there, and the stage runs that very file."""
    import os
    import subprocess

    from ladder.training import launch

    venv_bin = tmp_path / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").symlink_to(sys.executable)
    fake = venv_bin / "my-launcher"
    fake.write_text(f"#!{sys.executable}\nimport sys; sys.exit(0)\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(venv_bin / "python"))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    launch.check_launcher("my-launcher --num_processes 2", "stages.sft.launch")  # no ConfigError
    assert launch.find_launcher("my-launcher") == str(fake)
    ran = []
    monkeypatch.setattr(subprocess, "Popen", lambda cmd, env=None: ran.append(cmd) or SimpleNamespace(
        wait=lambda: 0, poll=lambda: 0))
    launch.run_launched("my-launcher --num_processes 2", "ladder.training.sft_local", tmp_path / "spec.json",
                        "stages.sft.launch")
    assert ran[0][:3] == [str(fake), "--num_processes", "2"]
    with pytest.raises(ConfigError, match="launcher 'not-there' is not found"):
        launch.check_launcher("not-there", "stages.sft.launch")
    assert os.environ["PATH"] == "/usr/bin:/bin"
