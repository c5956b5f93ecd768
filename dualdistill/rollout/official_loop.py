"""The official evaluation loop (``sft/evaluate.py::server_inference``) as a mode of the tool loop.

    generate_trajectories(policy, items, settings, budget=4096, sandbox_pool=pool, mode="official")

Selected by the official prompt style (:func:`dualdistill.formats.formatting.loop_mode`); the
project's loop (:mod:`dualdistill.rollout.tool_loop`) stays the default. Every request the engine
sees is the official one (DESIGN §13), and the final text is the official output:

- each request is the text so far (never token ids: a server re-tokenises it, as the official
  requests make it), stop ``</code>`` only, the budget left as ``max_new_tokens``; the stop string
  is kept in the text;
- a generation with a ``</code>`` runs the code after its last ``<code>`` (in that generation), while
  the budget is not spent, it holds no ``</answer>`` and fewer than ``max_code_calls`` calls were made;
  what follows its first ``</code>`` is dropped and ``"\\n<executor>\\n" + feedback + "\\n</executor>\\n"``
  is appended (counted to the budget; past the budget the trajectory ends there);
- the code runs the official way (:mod:`dualdistill.sandbox.official_executor`: replayed program,
  a fresh interpreter per call, stderr-only errors, the official timeout text);
- when the loop ends with exactly ``max_code_calls`` calls made and budget left, the official notice
  and ``<answer>`` are appended (not counted) and the engine is asked once more — also after a
  finished answer;
- the final text: what follows the prompt's ``<think>\n`` encoded with the policy's tokenizer, cut
  to the budget and decoded without special tokens, as the official code returns it (no tokenizer: left as is,
  ``meta["official_truncation"] = "skipped"``).

The trajectory's segments are the official parse of that text (:func:`dualdistill.formats.official.parse`,
lossless), and ``meta["text_format"] = "official"`` makes ``Trajectory.completion`` that text.
"""

from __future__ import annotations

import time
from typing import Any

from dualdistill.formats import formatting, official
from dualdistill.formats.formatting import CODE_STOP, GENERATION_PREFIX
from dualdistill.formats.trajectory import Trajectory
from dualdistill.rollout.policy import Generation, GenerationRequest
from dualdistill.rollout.tool_loop import _Loop, _State
from dualdistill.sandbox.official_executor import OfficialRun, run_official

OFFICIAL_LOOP_VERSION = "official-loop-1"  # in the sample keys of official mode: bump when its behaviour changes


def executor_block(feedback: str) -> str:
    """The official executor block appended right after ``</code>``."""
    return f"\n<executor>\n{feedback}\n</executor>\n"


CAP_TEXT = executor_block(formatting.OFFICIAL_CALL_CAP_NOTICE) + "<answer>"


class OfficialLoop(_Loop):
    """The official loop's state machine (no I/O of its own), on the shared coroutine runner."""

    def start(self, st: _State) -> None:
        """No token ids: every request is text, as the official requests are."""

    def request(self, st: _State) -> GenerationRequest:
        """Text only, stopping at ``</code>`` alone (the official requests know no ``</answer>`` stop)."""
        return self.next_request(st, [CODE_STOP] if self.tools else [])

    def absorb(self, st: _State, gen: Generation, seconds: float) -> None:
        """Apply a generation the official way: run its first code block, or finish (see the module doc)."""
        if not self._count(st, gen, seconds):
            return
        text = gen.text + (gen.stop or "") if gen.finish_reason == "stop" else gen.text
        if st.forced:  # the answer asked for after the cap
            st.completion += text
            st.finish = self._official_end(st, gen)
            return
        if (self.tools and CODE_STOP in text and st.n_tokens < self.budget and "</answer>" not in text
                and st.n_calls < self.max_code_calls):
            head = text.split(CODE_STOP)[0]
            st.completion += head + CODE_STOP
            st.pending_code = (st.n_calls, head.split("<code>")[-1])
            return
        st.completion += text
        if self.tools and st.n_calls == self.max_code_calls and st.n_tokens < self.budget:
            st.completion += CAP_TEXT
            st.forced = True
            st.capped = True
            return
        st.finish = self._official_end(st, gen)

    def _official_end(self, st: _State, gen: Generation) -> str:
        if gen.finish_reason == "length" or st.n_tokens >= self.budget:
            return "length"
        if "</answer>" in st.completion:
            return "answer"
        return "call_cap" if st.capped else "eos"

    def execute(self, st: _State) -> OfficialRun:  # type: ignore[override]
        t0 = time.perf_counter()
        run = run_official(self.pool, st.pending_code[1], st.program)
        st.t_exec += time.perf_counter() - t0
        return run

    def after_run(self, st: _State, result: OfficialRun) -> None:  # type: ignore[override]
        st.pending_code = None
        st.n_calls += 1
        st.program = result.program
        st.statuses.append(result.status)
        st.n_errors += result.status != "ok"
        st.n_timeouts += result.status == "timeout"
        block = executor_block(result.feedback)
        st.completion += block
        st.n_inserted += self.policy.count_tokens(block)
        if st.n_tokens >= self.budget:
            st.finish = "length"

    def final_text(self, st: _State) -> tuple[str, str | None]:
        """The official output after the prompt: what follows the prefilled ``<think>\n`` (the end of
        the official prompt) cut to the budget in tokens, special tokens dropped."""
        if self.tokenizer is None:
            return st.completion, "skipped"
        head = GENERATION_PREFIX if st.completion.startswith(GENERATION_PREFIX) else ""
        ids = list(self.tokenizer.encode(st.completion[len(head):], add_special_tokens=False))[: self.budget]
        return head + self.tokenizer.decode(ids, skip_special_tokens=True), None

    def trajectory(self, st: _State) -> Trajectory:
        text, note = self.final_text(st)
        segments = official.parse(text)
        meta: dict[str, Any] = {"sample": st.item.sample, "seed": st.seed, "steps": st.steps,
                                "text_format": "official", "loop": "official",
                                "code_statuses": list(st.statuses)}
        if note:
            meta["official_truncation"] = note
        if st.error:
            meta["error"] = st.error
        return Trajectory(
            problem_id=st.item.problem.id, role=st.item.role, prompt=st.item.prompt, segments=segments,
            finish_reason=st.finish or "eos", n_tokens=st.n_tokens, n_generated_tokens=st.n_generated,
            n_code_calls=st.n_calls, n_code_errors=st.n_errors, n_code_timeouts=st.n_timeouts, token_ids=None,
            timings={"generation": round(st.t_gen, 4), "execution": round(st.t_exec, 4)}, meta=meta,
        )
