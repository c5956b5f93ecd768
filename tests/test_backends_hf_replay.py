"""The hf and replay backends, and the backend registry (every name resolves and hf/replay build)."""

from __future__ import annotations

import json

import pytest

from dualdistill.config import PolicyConfig, SamplingSettings
from dualdistill.formats import formatting
from dualdistill.formats.problem import Problem
from dualdistill.rollout.policy import BACKENDS, GenerationRequest, Policy, _resolve, build_policy


# --- registry -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_every_backend_name_resolves_to_a_factory(name):
    factory = _resolve(name)
    assert callable(factory)


def test_unknown_backend_is_an_error():
    with pytest.raises(ValueError, match="unknown policy backend"):
        _resolve("nope")


# --- hf -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tests.helpers_tiny import build_scripted_tiny

    return build_scripted_tiny(tmp_path_factory.mktemp("tiny"))  # after "<code>\n": print(42)</code> EOS


@pytest.fixture(scope="module")
def hf(tiny):
    policy = build_policy(PolicyConfig(backend="hf", model=tiny["dir"], max_concurrency=2), device="cpu", seed=0)
    yield policy
    policy.close()


def req(prompt: str, n: int, stop=(), temperature: float = 0.0, seed=None) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, max_new_tokens=n, stop=list(stop), temperature=temperature, seed=seed)


def test_hf_builds_from_the_registry(hf):
    from dualdistill.rollout.backends.hf import HFPolicy

    assert isinstance(hf, HFPolicy) and isinstance(hf, Policy)
    assert hf.count_tokens("print(42)</code>") == 8


def test_hf_stop_eos_length_per_row_in_one_batch(hf, tiny):
    """Rows of one batch stop on their own: stop string (dropped), EOS, their own limit."""
    trig = "Question:\n<code>\n"
    gens = hf.generate([
        req(trig, 30, stop=["</code>"]),          # stop string: text cut before it
        req(trig, 30),                             # EOS after the script
        req(trig, 3),                              # its own limit
        req(trig, 30, stop=["(4"]),                # a stop inside a token run
        req(trig, 30, stop=["never", "42"]),       # the first of several stops that occurs
    ])
    stop, eos, length, inner, multi = gens
    assert (stop.text, stop.finish_reason, stop.stop, stop.n_tokens) == ("print(42)", "stop", "</code>", 8)
    assert hf.tokenizer.decode(stop.token_ids) == "print(42)</code>"  # ids run up to the stop's last token
    assert (eos.text, eos.finish_reason, eos.n_tokens) == ("print(42)</code>", "eos", 9)
    assert eos.token_ids == tiny["chain_ids"]  # EOS counted, not returned
    assert (length.text, length.finish_reason, length.n_tokens) == ("print(4", "length", 3)
    assert (inner.text, inner.finish_reason, inner.stop) == ("print", "stop", "(4")
    assert (multi.text, multi.stop) == ("print(", "42")


def test_hf_greedy_is_batch_independent_and_sampling_is_seeded(hf):
    prompts = ["<code>\n", "The answer is", "x" * 30]  # lengths differ: left padding in one chunk
    batched = hf.generate([req(p, 8) for p in prompts])
    single = [hf.generate([req(p, 8)])[0] for p in prompts]
    assert [g.text for g in batched] == [g.text for g in single]  # left padding does not leak
    a = hf.generate([req("The answer is", 20, temperature=1.0, seed=7)])[0]
    b = hf.generate([req("The answer is", 20, temperature=1.0, seed=7)])[0]
    assert a.token_ids == b.token_ids


def test_hf_zero_budget_and_too_long_prompt(hf):
    zero, long = hf.generate([req("<code>\n", 0), req("x " * 3000, 5)])
    assert (zero.finish_reason, zero.n_tokens, zero.text) == ("length", 0, "")
    assert long.finish_reason == "error" and "context" in long.error


def test_hf_needs_a_model():
    with pytest.raises(ValueError, match="cfg.model"):
        build_policy(PolicyConfig(backend="hf"))


# --- replay ---------------------------------------------------------------------------------------
R1 = "Okay, 6 times 7.\nThat is 42.\n</think>\n\nSo the product is $\\boxed{42}$."
R1_NO_BOX_IN_ANSWER = "<think>\nIt must be \\boxed{7}.\n</think>\nSeven."


def problem(pid="p", text="What is 6*7?", **meta) -> Problem:
    return Problem(id=pid, problem=text, answer="42", source="t", meta=meta)


def replay_req(p: Problem, sample=0, n=4096, stop=("</answer>",)) -> GenerationRequest:
    return GenerationRequest(prompt="...", max_new_tokens=n, stop=list(stop),
                             context={"problem": p, "sample": sample, "completion": formatting.GENERATION_PREFIX})


def test_r1_traces_become_canonical_segments():
    from dualdistill.formats.formatting import r1_to_segments

    segs = r1_to_segments(R1)
    assert [(s.kind, s.text) for s in segs] == [("think", "Okay, 6 times 7.\nThat is 42."),
                                                ("answer", "So the product is $\\boxed{42}$.")]
    assert formatting.is_valid(segs)
    segs = r1_to_segments(R1_NO_BOX_IN_ANSWER)
    assert segs[1].text == "Seven.\nThe answer is \\boxed{7}"  # the reasoning's boxed answer is added
    assert [s.kind for s in r1_to_segments("no end of thinking")] == ["think"]
    with pytest.raises(ValueError, match="text traces only"):
        r1_to_segments("<code>\nprint(1)\n</code>\n</think>\n\\boxed{1}")


def test_replay_from_meta_uses_field_by_sample():
    from dualdistill.formats.formatting import r1_to_segments

    policy = build_policy(PolicyConfig(backend="replay", replay_fields=["a", "b"]))
    p = problem(a=R1, b=R1_NO_BOX_IN_ANSWER)
    g0, g1, g2 = policy.generate([replay_req(p, 0), replay_req(p, 1), replay_req(p, 2)])
    full0 = formatting.render(r1_to_segments(R1))
    assert formatting.GENERATION_PREFIX + g0.text + "</answer>\n" == full0
    assert (g0.finish_reason, g0.stop, g0.extra["replay_field"]) == ("stop", "</answer>", "a")
    assert g1.extra["replay_field"] == "b" and "\\boxed{7}" in g1.text
    assert g2.text == g0.text  # sample 2 -> field 2 mod 2 = a
    assert g0.token_ids is None and g0.n_tokens == policy.count_tokens(g0.text + "</answer>")


def test_replay_from_jsonl_by_id_or_text(tmp_path):
    path = tmp_path / "traces.jsonl"
    path.write_text(json.dumps({"id": "p1", "r1_solution_1": R1}) + "\n"
                    + json.dumps({"question": "  What is 6*7?  ", "r1_solution_1": R1_NO_BOX_IN_ANSWER}) + "\n")
    policy = build_policy(PolicyConfig(backend="replay", replay_path=str(path)))
    by_id, by_text, missing, other_sample = policy.generate([
        replay_req(problem("p1", "other text")), replay_req(problem("zz")),
        replay_req(problem("nope", "unknown")), replay_req(problem("p1", "other text"), sample=1),
    ])
    assert "boxed{42}" in by_id.text and "boxed{7}" in by_text.text
    assert missing.finish_reason == "error" and "'r1_solution_1'" in missing.error and "'nope'" in missing.error
    assert other_sample.finish_reason == "error" and "r1_solution_2" in other_sample.error


def test_replay_budget_and_diverged_completion():
    policy = build_policy(PolicyConfig(backend="replay", replay_fields=["a"]))
    p = problem(a=R1)
    cut = policy.generate([replay_req(p, n=5)])[0]
    assert cut.finish_reason == "length" and cut.n_tokens == 5 and cut.text == "Okay, 6 times 7"
    r = replay_req(p)
    r.context["completion"] = "<think>\nsomething else"
    assert policy.generate([r])[0].finish_reason == "error"


def test_replay_in_the_tool_loop_gives_a_valid_text_trajectory():
    from dualdistill.rollout.tool_loop import RolloutItem, generate_trajectories

    policy = build_policy(PolicyConfig(backend="replay", replay_fields=["a"]))
    p = problem(a=R1)
    [t] = generate_trajectories(policy, [RolloutItem(p, formatting.build_prompt(p.problem, code=False), "text")], SamplingSettings(max_code_calls=10, temperature=0.6), budget=4096, sandbox_pool=None, tools=False, progress=False)
    assert t.finish_reason == "answer" and t.format_valid and t.final_answer == "42"
    assert [s.kind for s in t.segments] == ["think", "answer"]
    assert t.n_tokens == t.n_generated_tokens == policy.count_tokens(t.completion[len("<think>\n"):])


def test_hf_top_p_top_k_unset_are_the_generation_configs_own_values():
    """top_p/top_k None = the engine's default: what the model's generation_config sets explicitly, else
    off — not transformers' class default top_k=50 (the tiny model sets top_p 1.0, top_k 0: no change)."""
    from types import SimpleNamespace

    from transformers import GenerationConfig

    from dualdistill.rollout.backends.hf import HFPolicy

    def defaults(**kw):
        return HFPolicy.default_sampling(SimpleNamespace(model=SimpleNamespace(generation_config=GenerationConfig(**kw))))

    assert defaults() == (1.0, -1)
    assert defaults(do_sample=True, temperature=0.6, top_p=0.95) == (0.95, -1)
    assert defaults(do_sample=True, top_p=1.0, top_k=0) == (1.0, 0)
