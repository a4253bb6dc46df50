# neurovit — the two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.neurovit-installed
DEMO_DIR ?= demo_out

.PHONY: install test test-fast demo demo-allslices ablate-demo ablate reference lint bench clean mutation mutation-list

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch/torchvision first: on these machines they come from local disk (no multi-GB download)
	$(PY) -m pip install -q "torch==2.14.1" "torchvision==0.29.1" || $(PY) -m pip install -q torch torchvision
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

# branch coverage of the package is printed after the tests (figure in the README); no gate
test: install
	$(PY) -m pytest -q --cov=neurovit --cov-branch --cov-report=term:skip-covered

test-fast: install
	$(PY) -m pytest -q -m "not slow"

NEUROVIT := $(VENV)/bin/neurovit

# synthesise data → train the tiny demo model on CPU → score its validation predictions → non-learned baseline
demo: install
	$(NEUROVIT) synth @experiments/synth_demo.args --out $(DEMO_DIR)/data --overwrite
	rm -rf $(DEMO_DIR)/run  # a new run: `neurovit fit` refuses to train into a folder that holds one
	$(NEUROVIT) fit --config experiments/base.yaml --config experiments/demo.yaml \
		--data.data_dir $(DEMO_DIR)/data --trainer.default_root_dir $(DEMO_DIR)/run
	$(NEUROVIT) evaluate --pred $(DEMO_DIR)/run/predictions --gold $(DEMO_DIR)/data --split val --out $(DEMO_DIR)/run/evaluation
	$(NEUROVIT) baseline --data $(DEMO_DIR)/data --split val

# the demo model's all-slices variant (same data and recipe + experiments/allslices.yaml, twice the epochs: it
# learns D slices per block and needs them to catch up) — the whole-volume inference speed lever
demo-allslices: install
	test -f $(DEMO_DIR)/data/dataset.yaml || $(NEUROVIT) synth @experiments/synth_demo.args --out $(DEMO_DIR)/data
	rm -rf $(DEMO_DIR)/allslices
	$(NEUROVIT) fit --config experiments/base.yaml --config experiments/demo.yaml --config experiments/allslices.yaml \
		--data.data_dir $(DEMO_DIR)/data --trainer.default_root_dir $(DEMO_DIR)/allslices --trainer.max_epochs 12

# 4 strategies × 2 seeds × 2 training fractions of the tiny model on synthetic data (CPU)
ablate-demo: install
	$(NEUROVIT) ablate --config experiments/ablation_demo.yaml

# the paper's question on real morphologies: 2D sources (DINO on offline pictures, DINO on the training
# stacks, MIM) × center/average/vit2d, scratch and a 3D U-Net; 3 fractions × 3 seeds (resumable: re-run to go on)
ablate: install data/natural
	$(NEUROVIT) ablate --config experiments/ablation_realistic.yaml

# the reference recipe: the realistic ablation's best configuration trained once (≤ 45 min on 2 cores), scored on
# the held-out neurons at SNR 4 and 8 next to Frangi + Otsu: reference_out/ (checkpoint, config, report, figures)
reference: install
	$(PY) -m neurovit.ablate.reference --config experiments/reference.yaml

# ~90 offline natural pictures for the DINO "natural" source (more with Debian's wallpaper packages installed)
data/natural:
	$(PY) -m neurovit.ablate.natural --out data/natural

# mutation score per core module (mutmut, each module against its fast tests, in a temporary copy):
# survivors are listed; documented equivalents in tests/mutation_equivalent.txt. MODULES=transfer normalise ...
mutation: install
	$(PY) tests/mutation.py $(MODULES)

mutation-list: install
	$(PY) tests/mutation.py --list $(MODULES)

lint: install
	$(PY) -m ruff check neurovit tests

# CPU benchmarks. The inference accuracy check needs both demo checkpoints: trained here once if missing (~4 min each)
bench: install $(DEMO_DIR)/run/checkpoints/last.ckpt $(DEMO_DIR)/allslices/checkpoints/last.ckpt
	$(PY) -m neurovit.benchmarks.render
	$(PY) -m neurovit.benchmarks.model_stats
	$(PY) -m neurovit.benchmarks.trace
	$(PY) -m neurovit.benchmarks.inference --ckpt $(DEMO_DIR)/run/checkpoints/last.ckpt \
		--allslices-ckpt $(DEMO_DIR)/allslices/checkpoints/last.ckpt --data $(DEMO_DIR)/data
	$(PY) -m neurovit.benchmarks.levers --ckpt $(DEMO_DIR)/allslices/checkpoints/last.ckpt
	$(PY) -m neurovit.benchmarks.spacing --ckpt $(DEMO_DIR)/run/checkpoints/last.ckpt
	$(PY) -m neurovit.benchmarks.throughput --shape 16 512 512
	$(PY) -m neurovit.benchmarks.chunked --ckpt $(DEMO_DIR)/run/checkpoints/last.ckpt
	$(PY) -m neurovit.benchmarks.train

$(DEMO_DIR)/run/checkpoints/last.ckpt:
	$(MAKE) demo

$(DEMO_DIR)/allslices/checkpoints/last.ckpt:
	$(MAKE) demo-allslices

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
