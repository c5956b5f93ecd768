"""The official loop, request by request, against the official ``sft/evaluate.py::server_inference``.

The same scripted model outputs go through the official function (loaded from the reference, with a
recording stand-in for its OpenAI client and its REAL ``code_block``, which runs ``python`` on this
machine) and through the project's tool loop in official mode (``rollout.official_loop``, the code in
the project's sandbox). Every request (prompt and token budget) and the final text must be byte-identical.

The project's prompt text starts with the BOS token that a vLLM server adds to the official text (the
engine sees the same tokens): ours must be BOS + the official text. The official code runs in the
directory that is the sandbox's working directory inside its namespace (``/tmp/sandbox``), so the temp
files of both sides are ``/tmp/sandbox/workspace/tmpXXXXXXXX.py``; the one normalisation: the 8 random
characters of those names. A missing reference fails (never skips).
"""

from __future__ import annotations

import os
import re
import sys
from types import SimpleNamespace
from typing import Any

import pytest

from dualdistill.config import SamplingSettings, SandboxConfig
from dualdistill.formats import formatting
from dualdistill.formats.problem import Problem
from dualdistill.rollout.official_loop import OfficialLoop
from dualdistill.rollout.policy import Generation, GenerationRequest, Policy
from dualdistill.rollout.tool_loop import RolloutItem, generate_trajectories
from dualdistill.sandbox.official_executor import clean_code, program, run_official
from dualdistill.sandbox.pool import make_sandbox_pool
from dualdistill.sandbox.worker_process import NS_WORKDIR
from tests import official_ref as ref

C = "</code>"
ANSWER = "\nSo it is done.\n</think>\n<answer>\nThe answer is \\boxed{42}\n</answer>"
COUNT = "n = globals().get('n', 0) + 1\nprint(n)"  # how often this line ran in the program: the replays
SLOW = "import time\ntime.sleep(0.1)\nprint('slept')"  # 0.1 s, doubled by every later replay

# name -> (pieces the model writes, one per request; max_tokens). Pieces end at their first </code>
# (the stop string) or are the model's last words.
SCRIPTS: dict[str, tuple[list[str], int]] = {
    "plain answer": (["Easy: 6*7.\n</think>\n<answer>\nThe answer is \\boxed{42}\n</answer>"], 4096),
    "think only, no answer": (["I am not sure what to do here."], 4096),
    "answer without tags": (["Hmm.\n</think>\nSo the final answer is $\\boxed{7}$."], 4096),
    "print": (["Compute.\n<code>\nprint(6*7)\n" + C, ANSWER], 4096),
    "print, no newline before </code>": (["Compute.\n<code>print(6*7)" + C, ANSWER], 4096),
    "print without a trailing newline": (["<code>\nprint(41, end='')\n" + C, ANSWER], 4096),
    "print several lines": (["<code>\nfor i in range(3):\n    print(i, i*i)\n" + C, ANSWER], 4096),
    "raise": (["Divide.\n<code>\nx = 1\n1/0\n" + C, ANSWER], 4096),
    "syntax error": (["<code>\nprint(1\n" + C, ANSWER], 4096),
    "name error": (["<code>\nprint(undefined_name)\n" + C, ANSWER], 4096),
    "stdout then an error": (["<code>\nprint('before')\nraise ValueError('bad value')\n" + C, ANSWER], 4096),
    "stdout and stderr": (["<code>\nimport sys\nprint('out')\nprint('err', file=sys.stderr)\n" + C, ANSWER], 4096),
    "a warning only": (["<code>\nimport warnings\nwarnings.warn('careful')\nprint(3)\n" + C, ANSWER], 4096),
    "exit status 3, no stderr": (["<code>\nimport sys\nprint('bye')\nsys.exit(3)\n" + C, ANSWER], 4096),
    "exit with a message": (["<code>\nimport sys\nsys.exit('stopped here')\n" + C, ANSWER], 4096),
    "```python fence": (["<code>\n```python\nprint(5)\n```\n" + C, ANSWER], 4096),
    "```py fence": (["<code>\n```py\nprint(5)\n```\n" + C, ANSWER], 4096),
    "fence marks inside a string": (["<code>\nprint('a```b```python c')\n" + C, ANSWER], 4096),
    "empty block": (["<code>\n" + C, ANSWER], 4096),
    "state kept": (["<code>\nx = 20\n" + C, "\n<code>\nprint(x + 22)\n" + C, ANSWER], 4096),
    "failed block not kept": (["<code>\ny = 5\n1/0\n" + C, "Retry.\n<code>\nprint(y)\n" + C, ANSWER], 4096),
    "error after state": (["<code>\nz = 2\n" + C, "<code>\nprint(z)\nz.nope()\n" + C, ANSWER], 4096),
    "replays double": ([f"<code>\n{COUNT}\n" + C for _ in range(5)] + [ANSWER], 4096),
    "two <code> in one generation": (["<code>\nprint(1)\n<code>\nprint(2)\n" + C, ANSWER], 4096),
    "stray </code>": (["I think " + C, ANSWER], 4096),
    "tags in the output": (["<code>\nprint('</executor>\\n<answer>')\n" + C, ANSWER], 4096),
    "unicode output": (["<code>\nprint('x² ≡ 4 — ∑ 中文')\n" + C, ANSWER], 4096),
    "sympy": (["<code>\nimport sympy\nprint(sympy.factorint(360))\n" + C, ANSWER], 4096),
    "code after </answer>": (["Done.\n</think>\n<answer>\\boxed{1}</answer>\nAlso <code>\nprint(9)\n" + C], 4096),
    "eleven calls": ([f"<code>\nprint({i})\n" + C for i in range(11)] + [" 42\n</answer>"], 4096),
    "ten calls, then an answer": ([f"<code>\nprint({i})\n" + C for i in range(10)] + [ANSWER, " 42\n</answer>"],
                                  4096),
    "ten calls, then a call after the notice": ([f"<code>\nprint({i})\n" + C for i in range(10)]
                                                + ["Fine.", "\\boxed{3}</answer><code>\nprint(1)\n" + C], 4096),
    "budget spent by a generation": (["A long thought " * 10], 60),
    "budget spent by the executor": (["<code>\nprint('y' * 200)\n" + C, ANSWER], 120),
    "budget spent by the last answer": (["<code>\nprint(1)\n" + C, ANSWER * 3], 160),
    "timeout": (["<code>\nwhile True:\n    pass\n" + C, ANSWER], 4096),
    "replays time out": ([f"<code>\n{SLOW}\n" + C for _ in range(7)] + [ANSWER], 4096),
}
PATH_RE = re.compile(re.escape(NS_WORKDIR) + r"/workspace/tmp[a-z0-9_]{8}\.py")


def normalise(text: str) -> str:
    return PATH_RE.sub(NS_WORKDIR + "/workspace/tmpXXXXXXXX.py", text)


class RecordingClient:
    """The OpenAI client of the official code: records every request, returns the next piece of the
    script streamed one character per chunk (one character = one token of ``ref.CharTokenizer``)."""

    pieces: list[str] = []
    requests: list[tuple[str, int]] = []
    extra: list[dict[str, Any]] = []

    def __init__(self, **_: Any) -> None:
        self.completions = SimpleNamespace(create=self.create)

    def create(self, *, prompt: str, max_tokens: int, **kw: Any) -> Any:
        RecordingClient.requests.append((prompt, max_tokens))
        RecordingClient.extra.append(kw)
        text = RecordingClient.pieces.pop(0)[:max_tokens] if RecordingClient.pieces else ""
        return iter([SimpleNamespace(choices=[SimpleNamespace(text=c)]) for c in text])


class ScriptPolicy(Policy):
    """The same pieces for the project's loop, with engine semantics: generation stops at a stop
    string (not returned in the text) or at ``max_new_tokens``."""

    name = "script"

    def __init__(self, pieces: list[str]) -> None:
        self.pieces = list(pieces)
        self.tokenizer = ref.CharTokenizer()
        self.requests: list[GenerationRequest] = []

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        out = []
        for r in requests:
            self.requests.append(r)
            piece = self.pieces.pop(0) if self.pieces else ""
            text = piece[: r.max_new_tokens]
            hit = next((s for s in r.stop if s in text), None)
            if hit is not None:
                cut = text.index(hit)
                out.append(Generation(text[:cut], "stop", cut + len(hit), stop=hit))
            else:
                out.append(Generation(text, "length" if len(piece) > len(text) else "eos", len(text)))
        return out


@pytest.fixture(scope="module")
def official_runs(tmp_path_factory) -> dict[str, tuple[list[tuple[str, int]], str, list[dict[str, Any]]]]:
    """Every script through the official ``server_inference`` (its real ``code_block`` runs ``python``
    from PATH, which here is this interpreter) in the directory that is the sandbox's working
    directory inside its namespace, so both temp files have the same directory (and length)."""
    ev = ref.evaluate()
    cwd = NS_WORKDIR
    os.makedirs(cwd, exist_ok=True)
    old_cwd, old_path, old_client = os.getcwd(), os.environ.get("PATH", ""), ev.OpenAI
    os.chdir(cwd)
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + old_path
    ev.OpenAI = RecordingClient
    runs = {}
    try:
        for i, (name, (pieces, budget)) in enumerate(SCRIPTS.items()):
            RecordingClient.pieces, RecordingClient.requests, RecordingClient.extra = list(pieces), [], []
            out = ev.server_inference(model_base_url="scripted", model_name="m", tokenizer_path="t",
                                      input=f"Problem {i}: {name}?", code_mode=True, max_tokens=budget)
            runs[name] = (RecordingClient.requests, out, RecordingClient.extra)
    finally:
        os.chdir(old_cwd)
        os.environ["PATH"] = old_path
        ev.OpenAI = old_client
    return runs


@pytest.fixture(scope="module")
def pool():
    p = make_sandbox_pool(SandboxConfig(workers=2))
    assert p._all[0].isolation == "namespaces", "the comparison needs the sandbox's namespace working directory"
    yield p
    p.close()


def ours(name: str, index: int, pool) -> tuple[ScriptPolicy, Any]:
    pieces, budget = SCRIPTS[name]
    policy = ScriptPolicy(pieces)
    problem = Problem(id=f"p{index}", problem=f"Problem {index}: {name}?", answer="42", source="test")
    item = RolloutItem(problem, formatting.sampling_prompt(problem.problem, code=True, style="official"), "student")
    settings = SamplingSettings(temperature=0.6, top_p=None, top_k=None, max_code_calls=10)
    [traj] = generate_trajectories(policy, [item], settings, budget=budget, sandbox_pool=pool, loop=OfficialLoop,
                                   progress=False)
    return policy, traj


def test_there_are_enough_scripts() -> None:
    assert len(SCRIPTS) >= 30


@pytest.mark.parametrize("index,name", list(enumerate(SCRIPTS)))
def test_every_request_and_the_final_text_are_the_official_ones(index: int, name: str, official_runs, pool) -> None:
    official_requests, official_out, official_extra = official_runs[name]
    policy, traj = ours(name, index, pool)
    requests = [(r.prompt, r.max_new_tokens) for r in policy.requests]
    for text in [official_out, *(p for p, _ in official_requests)]:  # a temp file path, where one shows, has the
        for path in re.findall(r"[^\s\"']*workspace/tmp\w+\.py", text):  # the official shape on both sides
            assert PATH_RE.fullmatch(path), path
    bos = formatting.BOS_TOKEN  # the project's prompt text carries the BOS the server adds to the official one
    assert [(normalise(p), m) for p, m in requests] == [(bos + normalise(p), m) for p, m in official_requests]
    assert normalise(traj.prompt + traj.completion) == bos + normalise(official_out)
    assert all(r.stop == ["</code>"] and r.temperature == 0.6 and r.top_p is None and r.top_k is None
               and r.prompt_ids is None for r in policy.requests)
    assert all(kw == {"model": "m", "temperature": 0.6, "stream": True,
                      "extra_body": {"stop": ["</code>"], "include_stop_str_in_output": True,
                                     "skip_special_tokens": False}} for kw in official_extra)


def test_what_the_scripts_show(official_runs) -> None:
    """The differences from the project's loop that the scripts exercise really show in the official
    output (so the comparison above is not vacuous)."""
    out = {name: normalise(run[1]) for name, run in official_runs.items()}
    assert "</code>\n<executor>\n42\n\n</executor>\n" in out["print"]
    assert "<executor>\nerr\n\n</executor>" in out["stdout and stderr"]
    assert f'File "{NS_WORKDIR}/workspace/tmpXXXXXXXX.py", line 4' in out["raise"]  # the replay state + marker lines before
    assert "NameError: name 'py' is not defined" in out["```py fence"]
    assert "<executor>\nError: Code execution timed out.\n</executor>" in out["timeout"]
    assert "<executor>\nError: Code execution timed out.\n</executor>" in out["replays time out"]
    assert [int(x) for x in re.findall(r"<executor>\n(\d+)\n", out["replays double"])] == [1, 2, 4, 8, 16]
    assert len(official_runs["ten calls, then an answer"][0]) == 12
    assert out["ten calls, then a call after the notice"].endswith("</answer><code>\nprint(1)\n</code>")


def test_official_code_cleaning_and_program() -> None:
    assert clean_code("\n```python\nprint(1)\n```\n") == "print(1)"
    assert clean_code("```py\nx=1 ```") == "py\nx=1"
    assert program("", "print(1)").count("\n") == 2  # state line, marker line, the block
    state = "\n" + program("", "a = 1")
    assert program(state, "print(a)").startswith(state + "\n")


def test_the_official_executor_keeps_the_sandbox_limits(pool) -> None:
    """Official mode changes what the model reads, not where its code runs: the script process is the
    sandbox's (unprivileged, no network, read-only outside its tmpfs, limits inherited)."""
    probe = ("import os, socket\nprint(os.getuid() != 0)\n"
             "try:\n    socket.create_connection(('1.1.1.1', 53), timeout=1)\n    print('net')\n"
             "except OSError:\n    print('no net')\n"
             "try:\n    open('/etc/dualdistill-probe', 'w')\n    print('wrote')\nexcept OSError:\n    print('read-only')")
    run = run_official(pool, probe, "")
    assert (run.status, run.feedback) == ("ok", "True\nno net\nread-only\n")
    assert run.result.meta["path"].startswith(NS_WORKDIR + "/workspace/tmp")
