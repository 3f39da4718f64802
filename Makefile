# Entry points of the pipeline. Each target calls one module's main(); the logic lives there.
# `make help` lists the targets. Set-up is a prerequisite of everything, and a no-op once done.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
SETUP_STAMP := $(VENV)/.setup-done
# A new .venv takes about 6.3 GB on x86_64 (PyTorch's CUDA build), and pip unpacks beside it: a
# fresh set-up stops at once with what to do, rather than an hour later with a full disk.
SETUP_MIN_FREE_GB ?= 7
DEMO_DIR := data/raw/demo
DATASET ?= demo
PARTITION ?= 1
MODEL ?= auxformer
FORCE ?= 0
# make crossval: the variants compared (the first against each other), partitions, seeds per partition,
# and make train options for every run.
MODELS ?= auxformer mult audio video
PARTITIONS ?= 1-5
SEEDS ?= 3
TRAIN_ARGS ?=
FORCE_FLAG := $(if $(filter 1 true yes,$(FORCE)),--force,)
# A clip of actor 1001, who is in the test split of partition 1.
DEMO_PREDICT_CLIP := 1001_DFA_HAP_XX
# Extra options for a stage, e.g. make demo-data ARGS="--actors 20 --seed 3"
ARGS ?=
# The feature options of an extraction, given once for every stage that makes or names it:
# make features train eval FEATURES="--audio-encoder egemaps"
FEATURES ?=

.DEFAULT_GOAL := help
.PHONY: help setup models test lint demo demo-data demo-check manifest stats features verify-features features-floor train eval predict crossval convert-reference convert-face-weights inspect bench gpu-check lock clean-demo

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

setup: $(SETUP_STAMP) ## create .venv with the locked dependencies and fetch the pinned model files

$(SETUP_STAMP): requirements.lock
	@command -v $(PYTHON) >/dev/null || { echo "setup: $(PYTHON) not found; install Python 3.11 or run make setup PYTHON=/path/to/python3.11"; exit 1; }
	@free_gb=$$(df -Pk . | awk 'NR==2 {print int($$4 / 1048576)}'); \
	[ -d $(VENV) ] || [ "$$free_gb" -ge $(SETUP_MIN_FREE_GB) ] || { echo "setup: $$free_gb GB free on this project's disk; .venv needs about $(SETUP_MIN_FREE_GB) GB. Free some space, or make setup SETUP_MIN_FREE_GB=0 to try anyway."; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m extract.model_files
	touch $@

models: $(SETUP_STAMP) ## fetch (again) and verify the pinned model files; list every encoder's weights and where to put them
	$(PY) -m extract.model_files
	$(PY) -m extract.encoder_files

test: lint ## run the style and layering checks, then the test suite on CPU
	$(PY) -m pytest $(ARGS)

lint: $(SETUP_STAMP) ## ruff (style) and import-linter (the package layers in pyproject.toml)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-logo --no-cache

# The generator's default folder is DEMO_DIR, or data/raw/demo-ravdess with ARGS="--layout ravdess".
demo-data: $(SETUP_STAMP) ## write the demo corpus to data/raw/demo (a miniature CREMA-D; ARGS="--layout ravdess": RAVDESS)
	$(PY) -m pipeline.demo_data $(FORCE_FLAG) $(ARGS)

demo-check: demo-data ## measure how well each modality separates the demo corpus's emotions
	$(PY) -m pipeline.demo_separability --corpus-dir $(DEMO_DIR) $(ARGS)

demo: demo-data ## the main job on the demo corpus: data, report, features, training, evaluation, a prediction
	$(PY) -m pipeline.stats --dataset demo --partition 1 $(FORCE_FLAG)
	$(PY) -m pipeline.features --dataset demo
	$(PY) -m pipeline.verify_features --dataset demo
	$(PY) -m pipeline.train --dataset demo --partition 1 $(FORCE_FLAG)
	$(PY) -m pipeline.evaluate --dataset demo --partition 1
	$(PY) -m pipeline.predict --dataset demo --partition 1 --video $(DEMO_DIR)/VideoFlash/$(DEMO_PREDICT_CLIP).flv

manifest: $(SETUP_STAMP) ## index a corpus into data/manifests/ (DATASET=demo|crema|improv|ravdess|labelled|folder, PARTITION=1-5)
	$(PY) -m pipeline.manifest --dataset $(DATASET) --partition $(PARTITION) $(FORCE_FLAG) $(ARGS)

stats: $(SETUP_STAMP) ## corpus report (builds the manifest if missing): table, stats.txt, class chart PNG
	$(PY) -m pipeline.stats --dataset $(DATASET) --partition $(PARTITION) $(FORCE_FLAG) $(ARGS)

features: $(SETUP_STAMP) ## extract audio features and face embeddings into HDF5 shards (DATASET=demo|crema|improv|ravdess|labelled|folder)
	$(PY) -m pipeline.features --dataset $(DATASET) $(FEATURES) $(FORCE_FLAG) $(ARGS)

verify-features: $(SETUP_STAMP) ## check the extraction of DATASET made with the FEATURES options (default: the defaults)
	$(PY) -m pipeline.verify_features --dataset $(DATASET) --features="$(FEATURES)" $(ARGS)

features-floor: $(SETUP_STAMP) ## decode-only pass over the same clips: the speed floor of make features
	$(PY) -m pipeline.decode_floor --dataset $(DATASET) $(ARGS)

train: $(SETUP_STAMP) ## train on one partition into runs/<dataset>/p<k>/<model>/ (MODEL=auxformer|mult|audio|video; settings: training/presets/)
	$(PY) -m pipeline.train --dataset $(DATASET) --partition $(PARTITION) --model $(MODEL) --features="$(FEATURES)" $(FORCE_FLAG) $(ARGS)

eval: $(SETUP_STAMP) ## score the run of DATASET/PARTITION/MODEL on its test split: metrics.json, report.md, confusion.png
	$(PY) -m pipeline.evaluate --dataset $(DATASET) --partition $(PARTITION) --model $(MODEL) $(ARGS)

# --video=VALUE in one word: a file name that starts with a dash is still the option's value.
predict: $(SETUP_STAMP) ## predict the emotion of VIDEO (a file or a folder of videos) with the run of DATASET/PARTITION/MODEL
	@test -n "$(VIDEO)" || { echo "usage: make predict VIDEO=path/to/clip.mp4-or-folder [DATASET=demo PARTITION=1 MODEL=auxformer]"; exit 2; }
	$(PY) -m pipeline.predict --video="$(VIDEO)" --dataset $(DATASET) --partition $(PARTITION) --model $(MODEL) $(ARGS)

inspect: $(SETUP_STAMP) ## a PNG of what the model saw of VIDEO: frames with the face followed, its crops, the run's prediction
	@test -n "$(VIDEO)" || { echo "usage: make inspect VIDEO=path/to/clip.mp4-or-folder [DATASET=demo PARTITION=1 MODEL=auxformer]"; exit 2; }
	$(PY) -m pipeline.inspect --video="$(VIDEO)" --dataset $(DATASET) --partition $(PARTITION) --model $(MODEL) $(ARGS)

crossval: $(SETUP_STAMP) ## train and score MODELS x PARTITIONS x SEEDS runs of DATASET, then sum up: runs/<dataset>/crossval/<name>/
	$(PY) -m pipeline.features --dataset $(DATASET) $(FEATURES)
	$(PY) -m pipeline.crossval --dataset $(DATASET) --models "$(MODELS)" --partitions $(PARTITIONS) --seeds $(SEEDS) --train-options="$(FEATURES) $(TRAIN_ARGS)" $(ARGS)

convert-reference: $(SETUP_STAMP) ## a reference AuxFormer checkpoint as a run folder (ARGS="--source IN.pt --out-dir DIR --classes ...")
	$(PY) -m pipeline.convert_reference $(ARGS)

convert-face-weights: $(SETUP_STAMP) ## a pickled HSEmotion model as a state dict, once, by hand (ARGS="--source FILE --face-encoder enet_b2")
	$(PY) -m pipeline.convert_face_weights $(ARGS)

bench: $(SETUP_STAMP) ## time extraction, training, evaluation, prediction on demo corpora: bench/results/<date>-<host>.md
	$(PY) -m bench.run $(ARGS)

gpu-check: $(SETUP_STAMP) ## on a GPU machine: every CUDA path on a small demo corpus, one line per check (skips without CUDA)
	$(PY) -m bench.gpu_check $(ARGS)

lock: ## re-resolve requirements.lock from the pins in pyproject.toml (in a scratch venv)
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet $$(.lock-venv/bin/python -c "import tomllib; print(' '.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))")
	{ echo "# Generated by 'make lock' from the pins in pyproject.toml (pip freeze of a fresh venv). Do not edit."; .lock-venv/bin/python -m pip freeze; } > requirements.lock
	rm -rf .lock-venv

clean-demo: ## delete the generated demo corpus
	rm -rf $(DEMO_DIR)
