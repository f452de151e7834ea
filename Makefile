# Thin wrapper: the README's two commands. Each installs missing Debian
# packages first (tools/setup.sh), then configures and builds with CMake.
BUILD ?= build
JOBS  ?= $(shell nproc)

.PHONY: all build test demo deps fuzz clean

all: build

deps:
	@tools/setup.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

test: build
	@cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

demo: build
	@tools/demo.sh $(BUILD)

# Fuzz the ONNX loader under ASan+UBSan (docs/FUZZING.md); FUZZ_SECONDS=600 by default.
fuzz:
	@tools/setup.sh --fuzz
	@tools/fuzz/run.sh

clean:
	rm -rf $(BUILD) build-fuzz
