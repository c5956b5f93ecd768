"""Share a run: push S1/S2 (merged model or LoRA adapter) and T1/T2 to the Hugging Face Hub.

    dualdistill push params/demo.yaml --repo-id you/agentic-r1-tiny --model S1
    dualdistill push params/demo.yaml --repo-id you/dualdistill-t1 --dataset t1

Cards are generated from the run's resolved config and summary.json (``model_card``,
``dataset_card`` are pure functions, tested offline); the upload uses ``huggingface_hub`` and the
token from ``HF_TOKEN`` / ``huggingface-cli login``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dualdistill.artifacts.paths import RunPaths
from dualdistill.common.store import read_jsonl
from dualdistill.config import RunConfig

PAPER = "https://arxiv.org/abs/2507.05707"


def _eval_rows(paths: RunPaths, model: str) -> list[dict[str, Any]]:
    if not paths.summary.exists():
        return []
    rows = json.loads(paths.summary.read_text()).get("eval", [])
    return [r for r in rows if r.get("model") == model and r.get("subset") == "all"]


def model_card(cfg: RunConfig, model: str, eval_rows: list[dict[str, Any]]) -> str:
    """README.md of a pushed model: what it is, how it was trained, its measured results."""
    base = "S1" if model == "S2" else "S0"
    stage = "self-distillation on T2" if model == "S2" else "teacher distillation on T1 (composed trajectories)"
    lines = [
        "---",
        "library_name: transformers",
        "tags: [dualdistill, agentic-r1, tool-use, math]",
        "---",
        f"# {cfg.run_name} — {model}",
        "",
        f"A DualDistill student ({PAPER}): {model} is {base} fine-tuned by {stage}. It reasons in "
        "`<think>` blocks, may write Python in `<code>` blocks (the executor's output comes back in "
        "`<executor>`), and gives its final answer as `\\boxed{}` inside `<answer>`.",
        "",
        "## Training",
        "",
        f"- base student: `{cfg.student.model}`",
        f"- SFT: method `{cfg.sft.method}`, lr {cfg.sft.learning_rate}, epochs {cfg.sft.num_train_epochs}, "
        f"max length {cfg.sft.max_length}",
        f"- self-distillation: K={cfg.self_distill.k}, β1={cfg.self_distill.beta1}, β2={cfg.self_distill.beta2}",
        f"- config hash: `{cfg.hash()}`",
        "",
        "## Results (measured in this run)",
        "",
    ]
    if eval_rows:
        lines += ["| benchmark | budget | accuracy | tool-use rate | samples |", "|---|---|---|---|---|"]
        lines += [
            f"| {r['benchmark']} | {r['budget']} | {100 * r['accuracy']:.1f} | {100 * r['tool_use_rate']:.1f} | {r['n_samples']} |"
            for r in eval_rows
        ]
    else:
        lines.append("No evaluation recorded for this model.")
    return "\n".join(lines) + "\n"


def dataset_card(cfg: RunConfig, name: str, examples: list[dict[str, Any]]) -> str:
    """README.md of a pushed training set (T1 or T2) with its composition counts."""
    from collections import Counter

    key = "case" if name == "t1" else "rule"
    counts = Counter(str(e.get(key)) for e in examples)
    lines = [
        "---",
        "tags: [dualdistill, agentic-r1, tool-use, math]",
        "---",
        f"# {cfg.run_name} — {name.upper()}",
        "",
        f"Training examples from a DualDistill run ({PAPER}): each row has a `prompt`, typed `segments` "
        "(think, code, executor, answer, transition, …) and `mask_until_first_transition`.",
        "",
        f"{len(examples)} examples. By {key}:",
        "",
        f"| {key} | count |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in sorted(counts.items())]
    return "\n".join(lines) + "\n"


def push_to_hub(cfg: RunConfig, *, repo_id: str, model: str | None = None, dataset: str | None = None,
                private: bool = False) -> dict[str, Any]:
    """Upload a model folder (with a generated card) and/or a training set."""
    from huggingface_hub import HfApi

    if not model and not dataset:
        raise ValueError("nothing to push: give --model and/or --dataset")
    paths, api, pushed = RunPaths.of(cfg), HfApi(), {}
    if model:
        folder = paths.model(model)
        if not folder.is_dir():
            raise FileNotFoundError(f"model {model} not found at {folder}: run the stage that trains it first")
        (folder / "README.md").write_text(model_card(cfg, model, _eval_rows(paths, model)))
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model")
        pushed["model"] = f"{repo_id} <- {folder}"
    if dataset:
        path = paths.t1 if dataset == "t1" else paths.t2
        if not path.exists():
            raise FileNotFoundError(f"{dataset} not found at {path}")
        examples = read_jsonl(path)
        card = Path(path.parent / "README.md")
        card.write_text(dataset_card(cfg, dataset, examples))
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        api.upload_file(path_or_fileobj=str(path), path_in_repo=f"{dataset}.jsonl", repo_id=repo_id, repo_type="dataset")
        api.upload_file(path_or_fileobj=str(card), path_in_repo="README.md", repo_id=repo_id, repo_type="dataset")
        pushed["dataset"] = f"{repo_id} <- {path}"
    return pushed
