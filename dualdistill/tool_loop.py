"""The one tool-integrated generation loop, used by teachers, student sampling and evaluation.

    trajs = generate_trajectories(policy, items, budget=4096, max_code_calls=10, temperature=0.6,
                                  sandbox_pool=pool)

For every :class:`RolloutItem` the completion starts with ``formatting.GENERATION_PREFIX``
(``<think>\\n``, prefilled) and the policy continues ``prompt + completion``:

1. generate until ``</code>`` (only while tools are on and calls are left), ``</answer>``, EOS or
   the remaining token budget;
2. on ``</code>``: run the block in the trajectory's own sandbox (acquired from the pool and reset
   at its first call, kept for the whole trajectory, so variables persist across its calls), append
   ``</code>\\n<executor>\\n{output}\\n</executor>\\n`` and continue;
3. after the ``max_code_calls``-th call the notice ``formatting.CALL_CAP_NOTICE`` is appended and
   generation continues without the code stop (a forced answer, as in the official code); a code
   block written after that, or with ``tools=False``, is never executed (status ``not_run``).

Budget: ``n_tokens`` = generated tokens + tokens of the inserted executor text (as in the paper);
each call's ``max_new_tokens`` is the budget left. Finish reasons: ``answer`` (an answer block was
closed), ``length`` (budget spent), ``error`` (the policy returned an error), ``call_cap`` (the cap
was reached and generation then ended without a closed answer), ``eos`` (ended without one).

All trajectories are in flight together. Each round sends ONE batched ``policy.generate`` call for
every trajectory that is ready to generate (the policy batches internally); trajectories that
stopped at ``</code>`` run their code in a thread per sandbox, overlapping the next generation
round, and rejoin once their output is appended. A trajectory that needs a sandbox while all are
held waits (holders always progress, so this never deadlocks). Executor output that contains a
block tag has its ``<`` written as ``&lt;`` so the trajectory stays well-formed. Timings per
trajectory: ``generation`` = wall time of the batched calls it took part in, ``execution`` = time
its code ran.

Token ids: kept when the engine returns them and the policy exposes a ``tokenizer`` (inserted text is
encoded with it); they are stored only if they decode exactly to the final completion, else dropped
(``meta["token_ids_dropped"]`` says why).
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from dualdistill import formatting
from dualdistill.formatting import CODE_STOP, GENERATION_PREFIX, Segment
from dualdistill.policy import Generation, GenerationRequest, Policy
from dualdistill.problem import Problem
from dualdistill.trajectory import Trajectory

ANSWER_STOP = "</answer>"


@dataclass
class RolloutItem:
    """One trajectory to sample: a problem, its full prompt, who answers and which sample it is.

    ``context`` goes to the policy with every request (e.g. ``first_attempt`` for a second teacher).
    """

    problem: Problem
    prompt: str
    role: str
    sample: int = 0
    context: dict[str, Any] = field(default_factory=dict)


@dataclass
class _State:
    """A trajectory in flight."""

    index: int
    item: RolloutItem
    seed: int
    completion: str = GENERATION_PREFIX
    n_generated: int = 0
    n_inserted: int = 0
    n_calls: int = 0
    n_errors: int = 0
    n_timeouts: int = 0
    capped: bool = False
    code_status: dict[int, str] = field(default_factory=dict)  # code block index -> status
    pending_code: tuple[int, str] | None = None  # (code block index, code) waiting to run
    sandbox: Any = None
    exit_stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    ids: list[int] | None = None
    ids_text: str = ""
    ids_note: str | None = None
    t_gen: float = 0.0
    t_exec: float = 0.0
    steps: int = 0
    finish: str | None = None
    error: str | None = None

    @property
    def n_tokens(self) -> int:
        return self.n_generated + self.n_inserted


def make_sandbox_pool(cfg: Any) -> Any:
    """A :class:`dualdistill.sandbox.SandboxPool` from a :class:`~dualdistill.config.SandboxConfig`."""
    from dualdistill.sandbox import SandboxPool

    return SandboxPool(
        cfg.workers,
        timeout=cfg.timeout,
        memory_mb=cfg.memory_mb,
        max_processes=cfg.max_processes,
        max_output_chars=cfg.max_output_chars,
        preload=tuple(cfg.preload),
    )


def request_seed(seed: int, problem_id: str, role: str, sample: int, step: int) -> int:
    """A stable per-request seed (independent of batch order and of PYTHONHASHSEED)."""
    blob = f"{seed}|{problem_id}|{role}|{sample}|{step}".encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:4], "little")


def executor_text(output: str) -> str:
    """The ``<executor>`` block appended after a code call (tags in the output are neutralised)."""
    output = formatting.TAG_RE.sub(r"&lt;\1\2>", output.rstrip("\n"))
    return f"<executor>\n{output}\n</executor>\n"


def _has_closed_answer(completion: str) -> bool:
    return any(s.kind == "answer" and not s.meta.get("open") for s in formatting.parse(completion))


class _Loop:
    """Bookkeeping of one ``generate_trajectories`` call."""

    def __init__(self, policy: Policy, *, budget: int, max_code_calls: int, temperature: float,
                 pool: Any, tools: bool) -> None:
        self.policy = policy
        self.budget = budget
        self.max_code_calls = max_code_calls
        self.temperature = temperature
        self.pool = pool
        self.tools = tools and max_code_calls > 0
        self.tokenizer = getattr(policy, "tokenizer", None)
        capacity = getattr(pool, "size", None) if pool is not None else None
        self.capacity: int | None = int(capacity) if capacity is not None else None
        self.held = 0

    # --- token ids --------------------------------------------------------------------------
    def _ids_from_text(self, st: _State) -> None:
        """Extend the ids so they cover ``st.completion`` (inserted, non-generated text)."""
        if st.ids is None:
            return
        if not st.completion.startswith(st.ids_text):
            st.ids, st.ids_note = None, "engine tokens overshoot the inserted text"
            return
        rest = st.completion[len(st.ids_text):]
        if rest:
            st.ids.extend(self.tokenizer.encode(rest, add_special_tokens=False))
            st.ids_text += rest

    def _add_text(self, st: _State, text: str, *, inserted: bool = False) -> None:
        """Append non-sampled text; ``inserted`` text (executor, notice) counts to the budget."""
        st.completion += text
        if inserted:
            st.n_inserted += self.policy.count_tokens(text)
        self._ids_from_text(st)

    # --- one generation ---------------------------------------------------------------------
    def request(self, st: _State) -> GenerationRequest:
        stop = [ANSWER_STOP]
        if self.tools and not st.capped:
            stop.insert(0, CODE_STOP)
        context = {"problem": st.item.problem, "completion": st.completion, "sample": st.item.sample,
                   "role": st.item.role, **st.item.context}
        return GenerationRequest(
            prompt=st.item.prompt + st.completion,
            max_new_tokens=self.budget - st.n_tokens,
            stop=stop,
            temperature=self.temperature,
            seed=request_seed(st.seed, st.item.problem.id, st.item.role, st.item.sample, st.steps),
            context=context,
        )

    def absorb(self, st: _State, gen: Generation, seconds: float) -> None:
        """Apply a generation to a trajectory: finish it or queue its code."""
        st.steps += 1
        st.t_gen += seconds
        if gen.finish_reason == "error":
            st.finish, st.error = "error", gen.error or "generation error"
            return
        st.n_generated += gen.n_tokens
        st.completion += gen.text
        if st.ids is not None:
            if gen.token_ids is None or self.tokenizer is None:
                st.ids, st.ids_note = None, "the engine gave no token ids"
            else:
                st.ids.extend(gen.token_ids)
                st.ids_text += self.tokenizer.decode(gen.token_ids, skip_special_tokens=False)
        if gen.finish_reason == "length":
            st.finish = "length"
            return
        if gen.finish_reason != "stop" or gen.stop not in (CODE_STOP, ANSWER_STOP):
            st.finish = self._end_reason(st)  # eos (or a stop string this loop did not ask for)
            return
        segments = formatting.parse(st.completion)
        kind = gen.stop[2:-1]  # "code" | "answer"
        if not (segments and segments[-1].kind == kind and segments[-1].meta.get("open")):
            self._add_text(st, gen.stop)  # a stray closing tag: kept as written, nothing to run
            if gen.n_tokens == 0 and not gen.text:
                st.finish = self._end_reason(st)  # and no progress: stop here
            elif st.n_tokens >= self.budget:
                st.finish = "length"
            return
        if not st.completion.endswith("\n"):
            self._add_text(st, "\n")  # canonical "<kind>\n...\n</kind>\n"
        self._add_text(st, gen.stop + "\n")
        if kind == "answer":
            st.finish = "answer"
        elif st.n_tokens >= self.budget:
            st.finish = "length"  # no budget left for the executor's answer
        elif self.tools and not st.capped:
            index = sum(1 for s in segments if s.kind == "code") - 1
            st.pending_code = (index, segments[-1].text)  # executed in the next phase
        # else: a code stop this loop did not ask for: the block is not run, generation goes on

    def _end_reason(self, st: _State) -> str:
        if _has_closed_answer(st.completion):
            return "answer"
        return "call_cap" if st.capped else "eos"

    # --- code execution ---------------------------------------------------------------------
    def can_run(self, st: _State) -> bool:
        if st.sandbox is not None:
            return True
        if self.capacity is not None and self.held >= self.capacity:
            return False
        try:  # never block: a pool shared with other callers may be empty even below capacity
            st.sandbox = st.exit_stack.enter_context(self.pool.acquire(timeout=0))
        except TimeoutError:
            return False
        st.sandbox.reset()  # fresh state for this trajectory (cheap when it is already fresh)
        self.held += 1
        return True

    @staticmethod
    def run_code(st: _State) -> tuple[Any, float]:
        t0 = time.perf_counter()
        result = st.sandbox.run(st.pending_code[1])
        return result, time.perf_counter() - t0

    def after_run(self, st: _State, result: Any, seconds: float) -> None:
        index, _ = st.pending_code
        st.pending_code = None
        st.t_exec += seconds
        st.n_calls += 1
        status = result.status
        st.code_status[index] = status
        st.n_errors += status != "ok"
        st.n_timeouts += status == "timeout"
        self._add_text(st, executor_text(result.output), inserted=True)
        if st.n_calls >= self.max_code_calls:
            st.capped = True
            self._add_text(st, formatting.CALL_CAP_NOTICE + "\n", inserted=True)
        if st.n_tokens >= self.budget:
            st.finish = "length"

    def release(self, st: _State) -> None:
        if st.sandbox is not None:
            st.exit_stack.close()
            st.sandbox = None
            self.held -= 1

    # --- the record -------------------------------------------------------------------------
    def trajectory(self, st: _State) -> Trajectory:
        segments = formatting.parse(st.completion)
        segments = _annotate(segments, st.code_status)
        completion = formatting.render(segments)
        ids, note = st.ids, st.ids_note
        if ids is not None and completion.startswith(st.ids_text):
            # canonical closing text (e.g. the newline after a final tag, or the closing tag of a
            # block cut by the budget) was not sampled: encode it
            ids = ids + list(self.tokenizer.encode(completion[len(st.ids_text):], add_special_tokens=False))
        elif ids is not None:
            ids, note = None, "the sampled text is not a prefix of the canonical completion"
        meta: dict[str, Any] = {"sample": st.item.sample, "seed": st.seed, "steps": st.steps}
        if st.error:
            meta["error"] = st.error
        if note and self.tokenizer is not None:
            meta["token_ids_dropped"] = note
        return Trajectory(
            problem_id=st.item.problem.id,
            role=st.item.role,
            prompt=st.item.prompt,
            segments=segments,
            finish_reason=st.finish or "eos",
            n_tokens=st.n_tokens,
            n_generated_tokens=st.n_generated,
            n_code_calls=st.n_calls,
            n_code_errors=st.n_errors,
            n_code_timeouts=st.n_timeouts,
            token_ids=ids,
            timings={"generation": round(st.t_gen, 4), "execution": round(st.t_exec, 4)},
            meta=meta,
        )


def _annotate(segments: list[Segment], code_status: dict[int, str]) -> list[Segment]:
    """Execution status on code segments and on the executor segment that follows each run."""
    code_index = -1
    ran_previous = False
    for seg in segments:
        if seg.kind == "code":
            code_index += 1
            status = code_status.get(code_index, "not_run")
            seg.meta["status"] = status
            ran_previous = code_index in code_status
            continue
        if seg.kind == "executor":
            if ran_previous:
                seg.meta["status"] = code_status[code_index]
            else:  # written by the model itself, not by the environment
                seg.meta["status"] = "not_run"
                seg.meta["written_by_model"] = True
        ran_previous = False
    return segments


def generate_trajectories(
    policy: Policy,
    items: list[RolloutItem],
    *,
    budget: int,
    max_code_calls: int,
    temperature: float,
    sandbox_pool: Any = None,
    tools: bool = True,
    seed: int = 0,
    progress: bool = True,
    desc: str = "",
    on_finish: Callable[[int, Trajectory], None] | None = None,
) -> list[Trajectory]:
    """Sample one trajectory per item with the tool loop (see the module docstring).

    ``sandbox_pool`` is a ``dualdistill.sandbox.SandboxPool``; with ``tools=True`` and no pool a
    default one is made for this call and closed after. ``on_finish(index, trajectory)`` is called
    as each trajectory ends (e.g. to append its record at once). Returns trajectories in item order.
    """
    from tqdm.auto import tqdm

    if budget < 1:
        raise ValueError(f"budget must be positive, got {budget}")
    own_pool = None
    if tools and max_code_calls > 0 and sandbox_pool is None and items:
        from dualdistill.config import SandboxConfig

        sandbox_pool = own_pool = make_sandbox_pool(SandboxConfig())
    loop = _Loop(policy, budget=budget, max_code_calls=max_code_calls, temperature=temperature,
                 pool=sandbox_pool, tools=tools)
    states = [_State(index=i, item=it, seed=seed) for i, it in enumerate(items)]
    if loop.tokenizer is not None:
        for st in states:
            st.ids = list(loop.tokenizer.encode(st.completion, add_special_tokens=False))
            st.ids_text = st.completion
    results: list[Trajectory | None] = [None] * len(states)
    bar = tqdm(total=len(states), desc=desc or "trajectories", disable=not progress, leave=False)
    active = list(states)
    max_steps = budget + max_code_calls + 2

    def finish(st: _State) -> None:
        loop.release(st)
        results[st.index] = traj = loop.trajectory(st)
        bar.update(1)
        if on_finish is not None:
            on_finish(st.index, traj)

    running: dict[Future, _State] = {}
    try:
        with ThreadPoolExecutor(max_workers=max(1, loop.capacity or 8)) as threads:
            while active:
                for fut in [f for f in running if f.done()]:  # executions that came back
                    loop.after_run(running.pop(fut), *fut.result())
                busy = {st.index for st in running.values()}
                ready = [st for st in active if st.finish is None and st.pending_code is None]
                for st in ready:
                    if st.n_tokens >= budget:
                        st.finish = "length"
                    elif st.steps >= max_steps:
                        st.finish, st.error = "error", "no progress"
                ready = [st for st in ready if st.finish is None]
                if ready:  # ONE batched call for every trajectory that is generating
                    t0 = time.perf_counter()
                    gens = policy.generate([loop.request(st) for st in ready])
                    seconds = time.perf_counter() - t0
                    if len(gens) != len(ready):
                        raise RuntimeError(f"policy {policy.name!r} returned {len(gens)} generations "
                                           f"for {len(ready)} requests")
                    for st, gen in zip(ready, gens, strict=True):
                        loop.absorb(st, gen, seconds)
                still = []
                for st in active:  # finished trajectories give their sandbox back first
                    (finish if st.finish is not None else still.append)(st)
                active = still
                for st in active:  # start the code of trajectories that stopped at </code>
                    if st.pending_code is not None and st.index not in busy and loop.can_run(st):
                        running[threads.submit(loop.run_code, st)] = st
                        busy.add(st.index)
                if active and not any(st.pending_code is None for st in active):
                    if not running:
                        raise RuntimeError("rollout loop stalled: trajectories wait for sandboxes none of them holds")
                    wait(running, return_when=FIRST_COMPLETED)  # nothing to generate until code returns
    finally:
        for st in active:
            loop.release(st)
        bar.close()
        if own_pool is not None:
            own_pool.close()
    return [t for t in results if t is not None]
