"""The synthetic world of the embedded default: problem families and scripted teachers (METHOD §5).

    from dualdistill.world import generate_split, tokenizer_corpus
    problems = generate_split("stage0", world=cfg.world)   # S0 is SFT on text-teacher traces of these

``families`` generates problems with exact answers; ``teachers`` holds the scripted text and
agentic teachers (policy backend ``scripted``). ``tokenizer_corpus`` gathers the texts the tiny
model's tokenizer is trained on.
"""

from __future__ import annotations

import random

from dualdistill.config import WorldConfig
from dualdistill.formats import formatting
from dualdistill.formats.formatting import Segment
from dualdistill.world.families import FAMILIES, SPLITS, family_names, generate_split, get_family
from dualdistill.world.teachers import agent_answer, agent_program, build_scripted_policy, text_solution

__all__ = ["FAMILIES", "SPLITS", "family_names", "generate_split", "get_family", "build_scripted_policy",
           "text_solution", "agent_program", "agent_answer", "tokenizer_corpus"]

# what the sandbox prints for failed programs (tokenizer coverage only)
_FAILURE_OUTPUTS = (
    "Traceback (most recent call last):\n  File \"<string>\", line 1, in <module>\nMemoryError",
    "TimeoutError: execution timed out after 3.0 seconds",
    "Traceback (most recent call last):\n  File \"<string>\", line 2, in <module>\n"
    "NameError: name 'x' is not defined",
)
# what one family's own programs print when they fail: in the corpus only of a world with that family,
# so a family added to the code leaves every other world's tokenizer, and so its student's token ids and
# initial embeddings, unchanged (the demo's S0 changed with its tokenizer: docs/EMBEDDED_WORLD.md)
_FAMILY_FAILURE_OUTPUTS = {
    "pair_difference": ("Traceback (most recent call last):\n  File \"<string>\", line 3, in <module>\nAssertionError",),
}


def tokenizer_corpus(world: WorldConfig | None = None, per_family: int = 40, seed: int = 0) -> list[str]:
    """Texts covering what the tiny model reads and writes: the prompts, transition sentences and
    notices of ``formatting``, world problems (train and stage0 splits, never test), text-teacher
    solutions and agent programs. Agent trajectories here show the program's expected output (its
    answer, or a typical failure message) instead of running it: they only teach the tokenizer."""
    rng = random.Random(f"corpus|{seed}")
    texts = [*(formatting.build_prompt("", code=code, style=style)
               for style in sorted(formatting.PROMPT_STYLES) for code in (True, False)),
             formatting.SECOND_TEACHER_INSTRUCTION, formatting.CALL_CAP_NOTICE,
             *sorted(formatting.KNOWN_TRANSITIONS), *_FAILURE_OUTPUTS]
    names = list((world.families if world is not None else None) or FAMILIES)
    texts += [text for name in names for text in _FAMILY_FAILURE_OUTPUTS.get(name, ())]
    for split in ("train", "stage0"):
        for problem in generate_split(split, n=per_family * len(names), families=names, world=world):
            texts.append(problem.problem)
            segments, _ = text_solution(problem, rng)
            texts.append(formatting.render(segments))
            prog = agent_program(problem, rng, clever_prob=0.5, typo_prob=0.0)
            output = problem.answer if prog.kind != "brute" else rng.choice(_FAILURE_OUTPUTS)
            tail, _ = agent_answer(problem, output, rng)
            texts.append(formatting.render([Segment("think", prog.think), Segment("code", prog.code),
                                            Segment("executor", output), *tail]))
    return texts
