# sparsec: `make demo` sets everything up and compiles the bundled real model; `make test` sets up and runs the tests.
PY      ?= python3
VENV    := .venv
VPY     := $(VENV)/bin/python
SPARSEC := $(VENV)/bin/sparsec
EP_LIB  := sparsec/runtime/lib/libsparsec_ep.so
DEMO    := .cache/demo

.PHONY: setup demo test lint bench fuzz clean

WASM_NPM := .cache/wasm/npm/node_modules/.sparsec-lock

setup: $(VENV)/.installed $(EP_LIB) $(WASM_NPM)

$(VENV)/.installed: pyproject.toml
	bash tools/system_deps.sh
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet -e '.[dev]'
	touch $@

$(EP_LIB): $(VENV)/.installed $(wildcard sparsec/runtime/ep/*.cc sparsec/runtime/ep/*.h sparsec/runtime/ep/CMakeLists.txt)
	$(VPY) -m sparsec.runtime.build_ep

$(WASM_NPM): $(VENV)/.installed targets/wasm/npm/package-lock.json
	$(VPY) -m sparsec.targets.wasm.npm

demo: setup
	@mkdir -p $(DEMO)
	$(VPY) -m models.minilm $(DEMO)/minilm
	$(SPARSEC) prune $(DEMO)/minilm/model.onnx --pattern unstructured:0.9 -o $(DEMO)/minilm90.onnx
	$(SPARSEC) compile $(DEMO)/minilm90.onnx --target x86 -o $(DEMO)/minilm90.sparsec \
		--dim batch_size=1 --dim sequence_length=128
	$(SPARSEC) bench $(DEMO)/minilm90.sparsec --baseline $(DEMO)/minilm90.onnx \
		--dim batch_size=1 --dim sequence_length=128

test: setup
	$(VENV)/bin/ruff check sparsec passes targets tests models benchmarks tools
	$(VPY) -m tools.typecheck
	$(VENV)/bin/pytest -q

fuzz: setup
	$(VPY) -m tests.fuzz.harness --cases 1000

bench: setup
	bash benchmarks/setup_deepsparse.sh
	$(VPY) -m benchmarks.run

clean:
	rm -rf build $(DEMO) sparsec/runtime/lib
