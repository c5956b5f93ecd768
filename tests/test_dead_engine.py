"""An engine that dies part-way never becomes a quiet number (stages 05 and 04).

A local OpenAI-compatible engine answers ``alive_for`` completions, then drops every connection (the
process is gone; the port refuses to talk) until it is revived. The stage command must exit with
``EXIT_INCOMPLETE`` and one stderr line naming the count and the first cause, the summary must mark
its rows incomplete, the loop must stop starting trajectories after a run of failures, and the same
command, once the engine is back, must complete the stage with every sample recorded once.
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from dualdistill.common.failures import EXIT_INCOMPLETE, IncompleteStage, check_complete
from dualdistill.common.store import JsonlStore
from dualdistill.config import load_config
from dualdistill.report.metrics import latest_per_sample, paired_difference, record_features
from dualdistill.report.tables import results_table, table_markdown
from dualdistill.rollout.recorder import HALT_AFTER
from dualdistill.stages.entry import main

from .conftest import DUALDISTILL_DATA

AIME = DUALDISTILL_DATA / "test" / "aime2025.jsonl"
TRAIN = DUALDISTILL_DATA / "train" / "whole_training_set.jsonl"


class DyingEngine:
    """Completions that answer ``\\boxed{1}`` for ``alive_for`` requests, then dropped connections."""

    def __init__(self, alive_for: int) -> None:
        self.alive_for, self.answered, self.refused = alive_for, 0, 0
        self.lock = threading.Lock()
        engine = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["content-length"]))
                if self.path != "/v1/completions":
                    self.send_error(404)
                    return
                with engine.lock:
                    alive = engine.answered < engine.alive_for
                    engine.answered += alive
                    engine.refused += not alive
                if not alive:  # the engine is gone: the connection drops without a reply
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                text = "Sure.\n</think>\nThe answer is \\boxed{1}."
                payload = json.dumps({"id": "c", "object": "text_completion",
                                      "choices": [{"index": 0, "text": text, "finish_reason": "stop"}],
                                      "usage": {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14}})
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload.encode())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}/v1"

    def revive(self) -> None:
        with self.lock:
            self.alive_for = 10**9

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def engine():
    e = DyingEngine(alive_for=6)
    yield e
    e.close()


def policy(engine: DyingEngine) -> dict[str, Any]:
    return {"backend": "openai", "model": "m", "base_url": engine.base_url, "max_retries": 0,
            "max_concurrency": 2, "request_timeout": 10}


def write_params(tmp_path: Path, body: dict[str, Any]) -> Path:
    params = tmp_path / "p.yaml"
    params.write_text(json.dumps({"run_name": "dead", "output_dir": str(tmp_path / "outputs"), "device": "cpu",
                                  **body}))
    return params


def stderr_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]


def test_evaluate_exits_non_zero_marks_the_summary_and_a_rerun_completes(tmp_path, engine, capsys):
    params = write_params(tmp_path, {
        "data": {"test": [{"kind": "dualdistill", "name": "aime2025", "path": str(AIME), "limit": 20}]},
        "eval": {"models": [{"name": "api", "policy": policy(engine), "tools": False}],
                 "budgets": {"S": 256}, "samples": 2, "max_in_flight": 2},
    })
    args = [str(params), "--quiet"]
    assert main("05", args) == EXIT_INCOMPLETE
    [line] = stderr_lines(capsys)
    assert line.startswith("error: stage 05 incomplete: 34 of 40 samples failed (first error: ")
    assert line.endswith("rerun the same command to retry them")
    # the loop stopped starting trajectories: at most the run of failures plus what was in flight reached it
    assert engine.refused <= HALT_AFTER + 2
    cfg = load_config(params)
    rows = json.loads((Path(cfg.output_dir) / "dead" / "report" / "summary.json").read_text())["eval"]
    row = next(r for r in rows if r["subset"] == "all")
    assert (row["n_samples"], row["n_failed"], row["complete"]) == (6, 34, False)
    assert "⚠ incomplete (34 failed)" in table_markdown(results_table(rows))

    engine.revive()  # the engine is back: the same command completes the stage
    assert main("05", args) == 0
    records = JsonlStore(Path(cfg.output_dir) / "dead" / "eval" / "api.jsonl").read()
    latest = latest_per_sample(records)
    assert len(latest) == 40 and all(r["status"] == "ok" for r in latest)
    assert len([r for r in records if r["status"] == "ok"]) == 40  # no sample recorded ok twice
    row = next(r for r in json.loads((Path(cfg.output_dir) / "dead" / "report" / "summary.json").read_text())["eval"]
               if r["subset"] == "all")
    assert (row["n_samples"], row["n_failed"], row["complete"]) == (40, 0, True)


def test_a_tolerance_lets_the_stage_end(tmp_path, engine, capsys):
    params = write_params(tmp_path, {
        "data": {"test": [{"kind": "dualdistill", "name": "aime2025", "path": str(AIME), "limit": 4}]},
        "eval": {"models": [{"name": "api", "policy": policy(engine), "tools": False}], "budgets": {"S": 256},
                 "samples": 2, "max_in_flight": 1},
    })
    engine.alive_for = 6  # 2 of 8 fail
    assert main("05", [str(params), "--quiet", "--set", "eval.max_failed_fraction=0.25"]) == 0
    assert stderr_lines(capsys) == []


def test_self_distill_sampling_exits_non_zero_then_completes(tmp_path, engine, capsys):
    params = write_params(tmp_path, {
        "data": {"train": [{"kind": "dualdistill", "path": str(TRAIN), "limit": 5}]},
        "sandbox": {"workers": 1, "timeout": 3.0},
        "self_distill": {"k": 4, "budget": 64, "max_in_flight": 2, "policy": policy(engine)},
    })
    engine.alive_for = 8
    assert main("04", [str(params), "--quiet"]) == EXIT_INCOMPLETE
    [line] = stderr_lines(capsys)
    assert line.startswith("error: stage 04 incomplete: 12 of 20 samples of S1 failed (first error: ")
    cfg = load_config(params)
    assert not Path(cfg.output_dir, "dead", "self_distill", "t2.jsonl").exists()  # no T2 from a partial ḡ

    engine.revive()
    from dualdistill.stages.self_distillation import self_distill

    summary = self_distill(cfg, until="select", progress=False)  # the rerun (S2's SFT needs an S1 model)
    assert summary["n_failed_samples"] == 0 and summary["short_problems"] == 0
    assert summary["n_samples"] == 20 and summary["samples_drawn"] == 12


def test_partial_gbar_problems_are_left_out_unless_asked(tmp_path, engine):
    params = write_params(tmp_path, {
        "data": {"train": [{"kind": "dualdistill", "path": str(TRAIN), "limit": 3}]},
        "self_distill": {"k": 2, "budget": 64, "max_in_flight": 1, "policy": policy(engine),
                         "max_failed_fraction": 0.5},
    })
    from dualdistill.stages.self_distillation import self_distill

    engine.alive_for = 4  # problems 0 and 1 complete, problem 2 has no successful sample
    summary = self_distill(load_config(params), until="sample", progress=False)
    assert summary["n_failed_samples"] == 2 and summary["short_problems"] == 1
    assert any("left out of T2" in w for w in summary["warnings"])


def test_check_complete_and_paired_differences_drop_incomplete_problems():
    check_complete("05", "samples", n_failed=1, n_total=10, first_error="x", max_failed_fraction=0.1)
    with pytest.raises(IncompleteStage, match=r"2 of 10 samples failed \(first error: ConnectError: gone\)"):
        check_complete("05", "samples", n_failed=2, n_total=10, first_error="ConnectError: gone\nmore",
                       max_failed_fraction=0.1)

    def rec(model: str, pid: str, sample: int, correct: bool, status: str = "ok") -> dict:
        return record_features({"model": model, "benchmark": "b", "budget": "S", "sample": sample,
                                "problem": {"id": pid, "answer": "1"}, "correct": correct, "status": status,
                                "trajectory": {"segments": [], "n_code_calls": 0, "n_tokens": 3,
                                               "finish_reason": "answer"}})
    a = [rec("A", "p1", 0, False), rec("A", "p2", 0, False), rec("A", "p2", 1, False)]
    b = [rec("B", "p1", 0, True), rec("B", "p2", 0, True), rec("B", "p2", 1, True, status="failed")]
    out = paired_difference(a, b)
    assert (out["n_problems"], out["n_dropped"], out["delta"]) == (1, 1, 1.0)  # p2 is incomplete on B's side
