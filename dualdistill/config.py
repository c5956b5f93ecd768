"""One typed configuration tree for a run; ``params/*.yaml`` keys are exactly its field names.

    cfg = load_config("params/smoke.yaml", overrides={"self_distill.beta2": 0.8})

Unknown keys, wrong types and impossible values raise :class:`ConfigError` naming the file and
the dotted field path. Defaults are the paper's values (METHOD §1) unless a field says otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dualdistill.common.hashing import stable_hash
from dualdistill.common.store import write_atomic
from dualdistill.formats import formatting


class ConfigError(ValueError):
    """A params file or override that does not fit the schema."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


# --- data -------------------------------------------------------------------------------------
class JoinSource(Strict):
    """Fields of another dataset added to a source's problems, matched by the exact problem text
    (how the official code paired its 985-problem list with DeepMath-103K's R1 solutions)."""

    path: str = Field(description="HF dataset id, local dataset directory (save_to_disk) or JSON/JSONL/parquet file")
    split: str = Field("train", description="HF split")
    problem_field: str = Field("question", description="column of the joined rows that holds the problem text")
    fields: list[str] = Field(
        default_factory=lambda: ["r1_solution_1", "r1_solution_2", "r1_solution_3"],
        description="fields copied into each matched problem's meta (e.g. the recorded R1 solutions)",
    )
    on_missing: Literal["error", "keep"] = Field(
        "error", description="a problem without a matching row: raise (naming it), or keep it without the fields")


class DataSource(Strict):
    """One source of problems."""

    kind: Literal["dualdistill", "jsonl", "hf", "synthetic"] = Field(
        description="dualdistill: a file of ../shared/data/dualdistill (schema detected); "
        "jsonl: any JSON/JSONL with field_map; hf: datasets.load_dataset; synthetic: the embedded world"
    )
    name: str | None = Field(None, description="benchmark / source name (default: file stem)")
    path: str | None = Field(None, description="file path, or HF dataset id for kind=hf")
    split: str = Field("train", description="HF split, or synthetic split (train|test|stage0)")
    field_map: dict[str, str] = Field(
        default_factory=dict, description="record field -> source field (problem, answer, id, subset, ...)"
    )
    limit: int | None = Field(None, ge=1, description="keep the first N problems")
    on_malformed: Literal["error", "skip"] = Field("error", description="malformed rows: raise or skip+count")
    n: int | None = Field(None, ge=1, description="synthetic: number of problems")
    families: list[str] | None = Field(None, description="synthetic: families to draw (default all)")
    subset: str | None = Field(None, description="subset label given to every problem of this source")
    join: JoinSource | None = Field(None, description="add fields of another dataset, matched by problem text")

    @model_validator(mode="after")
    def _needs_path(self) -> DataSource:
        if self.kind in ("dualdistill", "jsonl", "hf") and not self.path:
            raise ValueError(f"data source of kind {self.kind!r} needs a path")
        if self.kind == "synthetic" and self.split not in ("train", "test", "stage0"):
            raise ValueError("synthetic split must be train, test or stage0")
        return self


class DataConfig(Strict):
    train: list[DataSource] = Field(default_factory=list, description="problems for teacher rollouts and self-distillation")
    test: list[DataSource] = Field(default_factory=list, description="benchmarks for evaluation")
    dedup_threshold: float = Field(90.0, ge=0, le=100, description="rapidfuzz ratio above which a train problem is a near-duplicate of a test problem (official: 90)")


# --- models and policies ----------------------------------------------------------------------
class ServeConfig(Strict):
    """A local server a policy talks to, started by the run when the policy is built and stopped when
    it is closed (``policy.build_policy``; ``server_process.ServerProcess``). The policy's ``base_url``
    defaults to ``http://{host}:{port}/v1``."""

    command: list[str] = Field(min_length=1, description="the server's command line; {port}, {host} and {python} "
                               "(the interpreter of the run) are filled in; relative paths resolve from the "
                               "repository root")
    host: str = "127.0.0.1"
    port: int | None = Field(None, ge=1, le=65535, description="None: a free port")
    ready_path: str = Field("/v1/models", description="polled (GET, JSON) until the server answers")
    startup_timeout: float = Field(120.0, gt=0)
    env: dict[str, str] = Field(default_factory=dict, description="environment variables added for the server")


class PolicyConfig(Strict):
    """A policy that continues a prompt (METHOD §4)."""

    backend: Literal["hf", "vllm", "vllm-server", "openai", "codeact", "replay", "scripted"]
    model: str | None = Field(None, description="model path / hub id / served model name; scripted: text|agent")
    base_url: str | None = Field(None, description="openai: server URL, e.g. http://127.0.0.1:8000/v1")
    api_key_env: str = Field("OPENAI_API_KEY", description="openai: environment variable holding the key")
    api: Literal["completions", "chat"] = Field("completions", description="openai: endpoint kind")
    replay_path: str | None = Field(None, description="replay: JSONL of recorded traces")
    replay_fields: list[str] = Field(
        default_factory=lambda: ["r1_solution_1", "r1_solution_2", "r1_solution_3"],
        description="replay: fields holding traces, used in turn per sample",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    max_concurrency: int = Field(8, ge=1, description="openai: requests in flight; hf/vllm: batch size")
    max_retries: int = Field(5, ge=0, description="openai: retries with backoff on 429/5xx/timeouts")
    request_timeout: float = Field(600.0, gt=0, description="openai: seconds per request")
    extra: dict[str, Any] = Field(
        default_factory=dict, description="backend-specific options, e.g. vllm: {engine: {gpu_memory_utilization: 0.85, "
        "max_model_len: 20480}} (engine arguments); vllm-server: {python, engine, env, startup_timeout} "
        "(rollout/backends/vllm_server.py); hf: generate keyword arguments; openai: see its module")
    serve: ServeConfig | None = Field(
        None, exclude_if=lambda v: v is None,  # unset: not in dumps, so the hashes of existing runs stay as they were
        description="a local server this policy talks to, started with the policy and stopped when it closes "
        "(e.g. a stand-in endpoint; base_url then defaults to it)")


class SamplingSettings(Strict):
    """How the tool loop samples. The sections that sample (``teachers``, ``self_distill``, ``eval``) are
    each these fields plus their own, and hand them to the recorder and the loop as one object
    (:meth:`sampling`)."""

    temperature: float = Field(0.6, ge=0)
    top_p: float | None = Field(None, gt=0, le=1, description="nucleus sampling; None: the engine's default — the "
                                "model's generation config (a vLLM server fills it, hf and in-process vLLM read it), "
                                "as the official requests leave it")
    top_k: int | None = Field(None, ge=-1, description="top-k sampling (-1: off); None: the engine's default (the "
                              "model's generation config; off where it sets none)")
    max_code_calls: int = Field(10, ge=0, description="code calls per trajectory (paper: 10)")
    max_in_flight: int = Field(256, ge=1, description="trajectories under way at once in the tool loop (a GPU engine "
                               "runs 256-1,024 sequences at once; the hf backend takes at most one batch, "
                               "student.batch_size); a runtime knob, in no hash")
    max_failed_fraction: float = Field(0.0, ge=0, le=1, description="failed records (the policy failed after its "
                                       "retries) a stage may end with; above it the stage exits non-zero, and a "
                                       "rerun retries them; a runtime knob, in no hash")

    def sampling(self) -> SamplingSettings:
        """These fields alone, as one :class:`SamplingSettings`."""
        return SamplingSettings.model_validate(self.model_dump(include=set(SamplingSettings.model_fields)))


class TeachersConfig(SamplingSettings):
    text: PolicyConfig = Field(default_factory=lambda: PolicyConfig(backend="scripted", model="text"))
    agent: PolicyConfig = Field(default_factory=lambda: PolicyConfig(backend="scripted", model="agent"))
    first_agent_prob: float = Field(0.5, ge=0, le=1, description="P(z=1): the agentic teacher goes first")
    budget: int = Field(4096, ge=16, description="token budget per trajectory (executor tokens count)")
    samples: int = Field(1, ge=1, description="rollout pairs per problem")


class TinyModelConfig(Strict):
    """The locally built tiny Qwen2 (embedded default)."""

    hidden_size: int = Field(256, ge=8)
    num_hidden_layers: int = Field(4, ge=1)
    num_attention_heads: int = Field(4, ge=1)
    num_key_value_heads: int = Field(2, ge=1)
    intermediate_size: int = Field(768, ge=8)
    max_position_embeddings: int = Field(1024, ge=64)
    vocab_size: int = Field(2048, ge=300, description="BPE vocabulary size (model vocab padded to cover it)")
    seed: int = 0

    @model_validator(mode="after")
    def _heads(self) -> TinyModelConfig:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError("hidden_size must be divisible by num_attention_heads")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must be divisible by num_key_value_heads")
        return self


class StudentConfig(Strict):
    model: str = Field("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", description="S0: path or hub id; 'tiny' builds the local tiny model")
    backend: Literal["hf", "vllm", "vllm-server", "openai"] = Field(
        "hf", description="sampling backend for S0/S1/S2: hf (transformers), vllm (in-process engine), vllm-server (a "
        "vLLM server the run starts per model, from the interpreter in extra.python) or openai")
    batch_size: int = Field(
        32, ge=1, description="sampling S0/S1/S2: batch size (hf, vllm) or requests in flight (openai)"
    )
    prompt_style: Literal["r1", "compact", "official"] = Field(
        "r1", description="the student's prompt: the project's r1 system text, or its short one for small students "
        "(formatting.PROMPT_STYLES), the same in training and sampling; or official: the official training prompt "
        "(sft/dataloader.py) for training and the official evaluation prompt (sft/evaluate.py) for sampling and "
        "evaluation, as the paper did (formatting.sampling_prompt)"
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    extra: dict[str, Any] = Field(
        default_factory=dict, description="backend options of the S0/S1/S2 policies (PolicyConfig.extra), e.g. "
        "vllm: {engine: {gpu_memory_utilization: 0.85, max_num_seqs: 256}}; vllm-server: the same engine section "
        "(passed as server flags) and python: the interpreter with vLLM; max_model_len defaults to what "
        "prompt + budget need")
    tiny: TinyModelConfig | None = Field(None, description="sizes of the tiny model when model == 'tiny'")
    stage0_sft: SFTConfig | None = Field(None, description="embedded only: SFT of the tiny model on text-teacher traces to make S0")


class WorldConfig(Strict):
    """The synthetic problem world of the embedded default."""

    seed: int = 0
    n_train: int = Field(400, ge=1)
    n_test: int = Field(120, ge=1)
    n_stage0: int = Field(600, ge=0, description="problems for the S0 text-reasoner build")
    families: list[str] | None = Field(None, description="default: all families")
    stage0_families: list[str] | None = Field(None, description="families of the stage-0 split (S0's text-teacher "
                                              "traces); default: ``families``")


class SandboxConfig(Strict):
    timeout: float = Field(3.0, gt=0, description="seconds per code execution (paper: 3)")
    memory_mb: int = Field(1024, ge=64)
    max_processes: int = Field(16, ge=1)
    max_output_chars: int = Field(4000, ge=100, description="head + tail kept with a marker")
    workers: int = Field(4, ge=1, description="sandboxes in the pool")
    preload: list[str] = Field(
        default_factory=list, description="modules each worker imports at start-up (e.g. numpy, sympy), hidden behind generation"
    )


# --- composition and training -------------------------------------------------------------------
class ReleasedT1Config(Strict):
    """The paper's released T1 (Hugging Face dataset ``VanishD/DualDistill``) as stage 02's T1."""

    path: str = Field("VanishD/DualDistill", description="HF dataset id, local dataset directory (save_to_disk) "
                      "or JSON/JSONL/parquet file")
    split: str = Field("train", description="HF split")
    problem_field: str = Field("problem", description="column with the problem text (official dataloader: problem)")
    text_field: str = Field("synthetic_data", description="column with the trajectory after '<｜Assistant｜>' in "
                            "the official format (official dataloader: synthetic_data)")
    answer_field: str | None = Field(None, description="column with the answer; None: the first of answer, "
                                     "final_answer, ground_truth present (the rows need none)")
    limit: int | None = Field(None, ge=1, description="keep the first N rows")


class CompositionConfig(Strict):
    transitions: dict[str, str] = Field(
        default_factory=lambda: dict(formatting.DEFAULT_TRANSITIONS),
        description="'<fix|verify>:<text_to_code|code_to_text>' -> sentence (verify:text_to_code is the project's own: "
        "the official code has no verify sentence for that direction)",
    )
    transition_style: Literal["project", "official"] = Field(
        "project", description="project: a transition is a line of its own between the attempts; official: where "
        "the official data has it — a code→text (or verify) sentence opens a new think block, a text→code sentence "
        "ends the first attempt's think block — and T1/T2 are trained on the official rendering"
    )
    balance: Literal["subset_equal", "none"] = Field(
        "subset_equal", description="subset_equal: as many examples from each group (balance_by) as the smallest "
        "has; a single group is a warning (nothing balanced)"
    )
    balance_by: Literal["subset", "outcome"] = Field(
        "subset", description="the groups balanced: subset = the problems' subset label (from the data: "
        "DataSource.subset or field_map.subset); outcome = the teachers' outcomes: agent right and text wrong "
        "→ agentic, text right and agent wrong → reasoning, both right → neutral (kept whole, not balanced)"
    )
    released: ReleasedT1Config | None = Field(
        None, description="T1 = the paper's released data (official format) instead of composing stage 01's "
        "rollouts; not balanced (it is the paper's final T1)")
    max_per_case: dict[str, int] = Field(default_factory=dict, description="cap per case: '01', '11', '10'")
    max_per_first_teacher: dict[str, int] = Field(default_factory=dict, description="cap per first teacher: text|agent")
    baseline_fill: bool = Field(
        True, description="baselines train on as many examples as T1 (repeating their fewer distinct ones)"
    )
    mask_before_transition: Literal["wrong_first", "always", "never"] = Field(
        "wrong_first",
        description="no loss on the part before the first transition: only when the first attempt was wrong "
        "(case 01, and self-distillation corrections), always, or never",
    )
    seed: int = 0

    @model_validator(mode="after")
    def _keys(self) -> CompositionConfig:
        need = set(formatting.DEFAULT_TRANSITIONS)
        if set(self.transitions) != need:
            raise ValueError(f"transitions must have exactly the keys {sorted(need)}")
        bad = [k for k in self.max_per_case if k not in ("01", "11", "10")]
        if bad:
            raise ValueError(f"max_per_case keys must be 01, 11, 10; got {bad}")
        return self


# what recipe "official" fixes (sft/train.py, script/sft_script/*.sh): field -> value. Gradient
# checkpointing (on in the official run) changes memory and time, not the numbers: left to the params.
OFFICIAL_SFT = {"method": "full", "weight_decay": 0.01, "lr_scheduler_type": "constant", "warmup_ratio": 0.0,
                "max_grad_norm": 1.0, "per_device_train_batch_size": 1, "gradient_accumulation_steps": 1,
                "bf16": False, "packing": False, "padding_free": False, "over_length": "drop"}


class SFTConfig(Strict):
    recipe: Literal["project", "official"] = Field(
        "project", description="project: the settings below as given (full SFT keeps float32 master weights, bf16 "
        "autocast on GPU); official: the official run's numerics — bf16 weights without fp32 masters, torch AdamW "
        "with weight decay 0.01 on every parameter, constant lr, no warm-up, grad clip 1.0, global batch 1 (one "
        "process; refused under several). It fixes the fields of config.OFFICIAL_SFT (setting one of them to "
        "another value is an error); lr, epochs and max_length stay yours"
    )
    method: Literal["full", "lora", "qlora"] = "full"
    learning_rate: float = Field(1e-5, gt=0)
    lr_scheduler_type: str = "constant"
    warmup_ratio: float = Field(0.0, ge=0, le=1)
    weight_decay: float = Field(0.0, ge=0)
    num_train_epochs: float = Field(4.0, gt=0)
    max_steps: int = Field(-1, description="> 0 overrides epochs")
    per_device_train_batch_size: int = Field(1, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    max_length: int = Field(16384, ge=16)
    over_length: Literal["drop", "truncate"] = Field("drop", description="official code drops longer examples")
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    lora_target_modules: str | list[str] = "all-linear"
    bnb_4bit_quant_type: Literal["nf4", "fp4"] = "nf4"
    bnb_4bit_use_double_quant: bool = True
    bnb_4bit_compute_dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    packing: bool = False
    padding_free: bool = False
    gradient_checkpointing: bool = True
    bf16: bool | None = Field(None, description="None: on when a GPU supports it, off on CPU")
    logging_steps: int = Field(10, ge=1)
    save_steps: int = Field(500, ge=1)
    save_total_limit: int | None = 2
    merge_lora: bool = Field(True, description="save a merged plain model that vLLM can load")
    max_grad_norm: float = Field(1.0, gt=0, description="gradient clipping norm (official: 1.0)")
    optim: str = Field("adamw_torch", description="transformers optimizer name, e.g. adamw_torch_fused (one fused "
                       "kernel per step on a GPU), paged_adamw_8bit, adamw_bnb_8bit")
    attn_implementation: str | None = Field(None, description="None: sdpa on GPU, the model default on CPU; e.g. flash_attention_2")
    use_kernels: bool = Field(
        False, exclude_if=lambda v: not v,  # off: not in dumps, so the hashes of existing runs stay as they were
        description="GPU only: transformers' Hub kernels for the model's layers (from_pretrained(use_kernels=True), "
        "the `kernels` package, fetched from the Hub at load; TRL 1.16's replacement for use_liger_kernel)")
    report_to: str = "none"
    seed: int = 0

    @model_validator(mode="before")
    @classmethod
    def _recipe(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("recipe") != "official":
            return data
        for key, value in OFFICIAL_SFT.items():
            if key in data and data[key] != value:
                raise ValueError(f"recipe official fixes {key} = {value!r} (got {data[key]!r}); "
                                 f"remove {key} or use recipe project")
        return {**data, **OFFICIAL_SFT}


StudentConfig.model_rebuild()


class SelfDistillConfig(SamplingSettings):
    k: int = Field(16, ge=1, description="samples per training problem")
    beta1: float = Field(0.0, ge=0, le=1, description="ḡ > β1: add a verification example")
    beta2: float = Field(0.9, ge=0, le=1, description="ḡ < β2: add a correction example")
    budget: int = Field(4096, ge=16)
    pick: Literal["random", "shortest", "first"] = "random"
    max_problems: int | None = Field(None, ge=1)
    partial_gbar: bool = Field(False, description="select problems whose ḡ rests on fewer than k samples (some "
                               "failed, within max_failed_fraction); off: they are left out of T2")
    sft: SFTConfig | None = Field(None, description="SFT of S1 on T2 (default: the sft section)")
    replay_t1: float = Field(
        0.0, ge=0, description="add this many T1 examples per T2 example (seeded sample) to S2's training "
        "data, against forgetting; 0 = the paper's T2 only")
    policy: PolicyConfig | None = Field(
        None, description="S1 sampling policy, e.g. an OpenAI-compatible server (default: student.backend on "
        "models/S1; model None means models/S1)")
    seed: int = 0

    @model_validator(mode="after")
    def _betas(self) -> SelfDistillConfig:
        if self.beta1 > self.beta2:
            raise ValueError(f"beta1 ({self.beta1}) must not exceed beta2 ({self.beta2})")
        return self


class EvalModel(Strict):
    name: str = Field(description="row name in the results, e.g. S0, S1, S2, text_only")
    policy: PolicyConfig | None = Field(None, description="default: the run's own checkpoint of that name")
    tools: bool = True
    samples: int | None = Field(None, ge=1, description="samples per problem for this model (default eval.samples): "
                                "e.g. more for the models a paired difference compares, fewer for the others")


class EvalConfig(SamplingSettings):
    models: list[str | EvalModel] = Field(default_factory=lambda: ["S0", "S1", "S2"])
    budgets: dict[str, int] = Field(default_factory=lambda: {"S": 4096, "L": 16384}, description="budget name -> tokens (L: not confirmed by the paper)")
    samples: int = Field(5, ge=1)
    tools: bool = True
    limit: int | None = Field(None, ge=1, description="problems per benchmark")
    seed: int = 0

    @model_validator(mode="after")
    def _budgets(self) -> EvalConfig:
        if not self.budgets:
            raise ValueError("at least one budget is needed")
        bad = {k: v for k, v in self.budgets.items() if v < 16}
        if bad:
            raise ValueError(f"budgets must be >= 16 tokens: {bad}")
        return self


class RunConfig(Strict):
    run_name: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    output_dir: str = "outputs"
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    data: DataConfig = Field(default_factory=DataConfig)
    world: WorldConfig | None = Field(None, description="the synthetic world (embedded default)")
    teachers: TeachersConfig = Field(default_factory=TeachersConfig)
    student: StudentConfig = Field(default_factory=StudentConfig)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    composition: CompositionConfig = Field(default_factory=CompositionConfig)
    sft: SFTConfig = Field(default_factory=SFTConfig)
    self_distill: SelfDistillConfig = Field(default_factory=SelfDistillConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    baselines: dict[str, Literal["text", "agent"]] = Field(
        default_factory=dict, description="extra SFT baselines: name -> teacher whose traces only are used"
    )
    source: str | None = Field(None, description="the params file this config came from (set by the loader)")

    @model_validator(mode="after")
    def _released(self) -> RunConfig:
        if self.composition.released is not None and self.baselines:
            raise ValueError("baselines are trained on teacher rollouts, which a run with composition.released "
                             "does not make: remove baselines or composition.released")
        return self

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.run_name

    def hash(self, *sections: str) -> str:
        """Short stable hash of the whole config or of named sections (run_name excluded)."""
        data = self.model_dump(mode="json", exclude={"source", "run_name", "output_dir"})
        if sections:
            data = {s: data[s] for s in sections}
        return stable_hash(data)

    def save(self, path: str | Path) -> Path:
        """Write the resolved config (with its hash) next to an output."""
        data = self.model_dump(mode="json")
        data["_hash"] = self.hash()
        return write_atomic(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def _format_error(err: ValidationError, where: str) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "<root>"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown field"
        lines.append(f"{where}: {loc}: {msg}")
    return "\n".join(lines)


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for p in parts[:-1]:
        if not isinstance(node.setdefault(p, {}), dict):
            raise ConfigError(f"override {key}: {p} is not a section")
        node = node[p]
    node[parts[-1]] = value


def config_from_dict(data: dict[str, Any], *, where: str = "<params>", overrides: dict[str, Any] | None = None,
                     source: str | None = None) -> RunConfig:
    """Validate a params dict (plus dotted-key overrides) into a :class:`RunConfig`; ``where`` names
    it in errors, ``source`` (default ``where``) is recorded in the config."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the top level must be a mapping, got {type(data).__name__}")
    data = json.loads(json.dumps(data))  # deep copy, plain types
    for key, value in (overrides or {}).items():
        _set_dotted(data, key, value)
    data.setdefault("source", source or where)
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_error(err, where)) from None


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Load ``params/*.yaml``; ``overrides`` maps dotted field paths to values (papermill, CLI)."""
    path = Path(path)
    if not path.is_file():
        hint = "" if path.is_absolute() else f" (relative to the current directory {Path.cwd()}: run from the repository root)"
        raise ConfigError(f"params file not found: {path}{hint}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    return config_from_dict(data, where=str(path), overrides=overrides, source=str(path.resolve()))


def parse_override(item: str) -> tuple[str, Any]:
    """``key.path=value`` (value read as YAML) from the command line."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like section.field=value")
    key, raw = item.split("=", 1)
    return key.strip(), yaml.safe_load(raw)
