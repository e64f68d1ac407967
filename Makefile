# Conclave: `make run` sets up, fetches the default model, builds and launches the app;
# `make test` sets up and runs every test (Rust, UI, end-to-end under Xvfb).

# GPU=vulkan or GPU=cuda compiles that llama.cpp backend into the worker (README: GPU
# builds). Each backend gets its own build folder, so switching does not rebuild the others.
GPU ?=
# A Vulkan build runs scripts/setup-vulkan first: the apt packages, and on Debian 12 newer
# Vulkan headers (VULKAN_SDK=…, which it prints for `env`; README: GPU builds).
VULKAN_ENV :=
ifeq ($(GPU),vulkan)
VULKAN_ENV = env $$(scripts/setup-vulkan)
endif
ifneq ($(GPU),)
ifeq ($(filter $(GPU),vulkan cuda),)
$(error GPU must be vulkan or cuda, not $(GPU))
endif
WORKER_FEATURES := --features conclave-worker/$(GPU)
TARGET_SUFFIX := -$(GPU)
endif

# One shared build folder outside the clone: llama.cpp and Tauri take minutes to compile,
# and CI reruns on the same machine reuse them.
export CARGO_TARGET_DIR ?= /var/tmp/conclave-target$(TARGET_SUFFIX)
export PATH := $(HOME)/.cargo/bin:$(PATH)
CARGO ?= cargo
BIN := $(CARGO_TARGET_DIR)/debug
REL := $(CARGO_TARGET_DIR)/release

.PHONY: run test setup models models-all ui-build build build-release package check bindings test-rust test-ui test-vulkan bench bench-app bench-stream bench-rpc

# What users run is optimised: a release build starts faster and idles in less memory.
run: setup models ui-build build-release
	$(REL)/conclave-app

# The UI is built first: the shell embeds ui/dist at compile time, clippy included.
test: setup models-all ui-build check build package test-rust test-ui
	@echo "make test: all checks and tests passed"

setup:
	@scripts/setup

models:
	@models/fetch smollm2

models-all:
	@models/fetch smollm2 gemma3

ui-build:
	cd ui && npm run build

# The worker sits next to every binary that spawns it (CLI, app, test executables find
# it in the same target folder).
build:
	$(VULKAN_ENV) $(CARGO) build -p conclave-worker -p conclave-cli -p conclave-app $(WORKER_FEATURES)

build-release:
	$(VULKAN_ENV) $(CARGO) build --release -p conclave-worker -p conclave-cli -p conclave-app $(WORKER_FEATURES)

# The Debian package: the release app with `conclave-worker` next to it and `conclave` on
# the PATH, all in /usr/bin, plus the desktop entry and icons Tauri writes. tauri-cli comes
# from npm (ui's devDependencies: a prebuilt binary, where crates.io's would compile for
# minutes). `tauri bundle` packs the binaries build-release already made in this
# CARGO_TARGET_DIR (`tauri build` would compile the app again with other feature
# unification). No AppImage: its tools are downloaded while bundling.
DEB_FILES := {"/usr/bin/conclave":"$(REL)/conclave","/usr/bin/conclave-worker":"$(REL)/conclave-worker"}
package: setup ui-build build-release
	cd src-tauri && ../ui/node_modules/.bin/tauri bundle --bundles deb --ci \
	  --config '{"bundle":{"linux":{"deb":{"files":$(DEB_FILES)}}}}'
	@ls -1 $(REL)/bundle/deb/*.deb

# The TypeScript bindings in ui/src/lib/bindings must be what the Rust types generate:
# the test fails on any difference (`make bindings` rewrites them).
check:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) test -p conclave-app --lib bindings::
	cd ui && npm run check && npm run lint

bindings:
	CONCLAVE_UPDATE_BINDINGS=1 $(CARGO) test -p conclave-app --lib bindings::

# CONCLAVE_DEB: the package test installs this .deb into a temporary root and runs it.
test-rust:
	CONCLAVE_DEB=$$(ls -t $(REL)/bundle/deb/*.deb | head -1) \
	CONCLAVE_E2E=1 scripts/with-xvfb $(CARGO) test --workspace --no-fail-fast

test-ui:
	cd ui && npm test

# Vulkan smoke test (not in `make test`: a second llama.cpp build with its shaders, about
# 20 minutes on 2 cores). Builds the release CLI and worker with GPU=vulkan in their own
# folder, then tests/tests/vulkan.rs answers with them on the CPU and on the first Vulkan
# device (lavapipe without a GPU) at temperature 0 and wants the same text. The test
# executable itself is built in the plain (CPU) folder, where `make test` builds it anyway.
VULKAN_TARGET := /var/tmp/conclave-target-vulkan
test-vulkan: models
	env CARGO_TARGET_DIR=$(VULKAN_TARGET) $$(CARGO_TARGET_DIR=$(VULKAN_TARGET) scripts/setup-vulkan) \
	  $(CARGO) build --release -p conclave-worker -p conclave-cli --features conclave-worker/vulkan
	CONCLAVE_VULKAN=1 CONCLAVE_VULKAN_CLI=$(VULKAN_TARGET)/release/conclave \
	  $(CARGO) test -p conclave-tests --test vulkan -- --nocapture

bench:
	$(BIN)/conclave bench --model models/SmolLM2-135M-Instruct.Q4_1.gguf --threads 2

# The same model spread over a loopback RPC server against the CPU alone, in one run.
bench-rpc: setup models build
	bench/rpc.sh

# Cold start and idle memory of the release app against a blank Tauri window (the floor).
bench-app: setup ui-build build-release
	$(CARGO) build --release -p conclave-app --example blank_window
	PROFILE=release scripts/with-xvfb bench/app-startup.sh

# Streaming in the real app against `conclave chat`, same model, threads and prompt.
bench-stream: setup models ui-build build-release
	bench/app-stream.sh
