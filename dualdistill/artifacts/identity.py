"""Which config fields make each artefact: the hashes that say whether a record is current.

    rollout_hash(cfg)         # stage 01's teacher rollouts
    composition_hash(cfg)     # stage 02's T1 and baselines' data
    s1_hash(cfg)              # what made S1 (a sweep reuses S1 only under the same hash)
    samples_hash(cfg)         # stage 04's S1 samples

"Current" means written under the config that would write it now: each record or stamp stores the
hash of the config fields that made it.
"""

from __future__ import annotations

from typing import Any

from dualdistill.common.hashing import stable_hash
from dualdistill.config import RunConfig
from dualdistill.rollout.official_loop import OFFICIAL_LOOP_VERSION


def _pick(data: dict[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"config has no field {dotted!r}")
        node = node[part]
    return node


def config_hash(cfg: RunConfig, *fields: str, exclude: tuple[str, ...] = ()) -> str:
    """Stable hash of the named config fields (dotted paths), minus ``exclude``d subfields."""
    data = cfg.model_dump(mode="json")
    picked = {f: _pick(data, f) for f in fields}
    for dotted in exclude:
        head, _, leaf = dotted.rpartition(".")
        parent = picked.get(head) if head in picked else None
        if isinstance(parent, dict):
            picked[head] = {k: v for k, v in parent.items() if k != leaf}
        else:
            raise KeyError(f"exclude {dotted!r}: {head!r} is not one of the hashed sections")
    return stable_hash(picked)


RUNTIME_TEACHER_FIELDS = ("teachers.max_in_flight", "teachers.max_failed_fraction")  # how, not what, is sampled


def rollout_hash(cfg: RunConfig) -> str:
    """Teacher rollouts (stage 01): the teachers, sandbox limits, seed, world and the student's
    tokenizer (it counts the budget) — not the number of sandbox workers or trajectories in flight."""
    return config_hash(cfg, "teachers", "sandbox", "seed", "world", "student.model", "student.tiny",
                       exclude=("sandbox.workers", *RUNTIME_TEACHER_FIELDS))


def composition_hash(cfg: RunConfig) -> str:
    """T1 and the baselines' data (stage 02), given the teacher records."""
    return config_hash(cfg, "composition", "baselines", "student.prompt_style")


S1_FIELDS = ("world", "data.train", "teachers", "student", "composition", "sft")


S1_EXCLUDE = ("student.backend", "student.batch_size", "student.extra", *RUNTIME_TEACHER_FIELDS)


def s1_hash(cfg: RunConfig) -> str:
    """What made S1 (stages 01-03): the world, training data, teachers, student, composition and SFT —
    not how it is sampled. A β sweep reuses S1 only between configs with the same hash."""
    return config_hash(cfg, *S1_FIELDS, exclude=S1_EXCLUDE)


def samples_hash(cfg: RunConfig) -> str:
    """Self-distillation samples (stage 04): everything that made S1 plus how it is sampled — the
    sampling settings and the backend (engines differ in numerics and defaults). K, max_problems, β1,
    β2, pick and the S2 SFT settings are left out on purpose (changing them reuses the samples), and
    so are runtime knobs (batch size, in-flight window, engine arguments)."""
    sd = cfg.self_distill
    backend = sd.policy.backend if sd.policy is not None else cfg.student.backend
    fields = config_hash(cfg, *S1_FIELDS, "self_distill.temperature", "self_distill.top_p", "self_distill.top_k",
                         "self_distill.budget", "self_distill.max_code_calls", "self_distill.seed", "sandbox.timeout",
                         exclude=S1_EXCLUDE)
    if cfg.student.prompt_style == "official":  # the official loop samples (formatting.loop_mode)
        return stable_hash([fields, backend, OFFICIAL_LOOP_VERSION])
    return stable_hash([fields, backend])
