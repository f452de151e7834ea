# Thin wrapper: the README's two commands. Each installs missing Debian
# packages first (tools/setup.sh), then configures and builds with CMake.
BUILD ?= build
JOBS  ?= $(shell nproc)

.PHONY: all build test demo deps fuzz sanitize clean

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

# The whole suite under AddressSanitizer + UndefinedBehaviorSanitizer + LeakSanitizer
# (Debug build in build-asan; about 6 minutes on 2 cores).
sanitize: deps
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DONNXT_SANITIZE=ON >/dev/null
	@cmake --build build-asan -j$(JOBS)
	@cd build-asan && LSAN_OPTIONS=suppressions=$(CURDIR)/tools/lsan.supp ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0 \
	  OMPI_MCA_mca_base_component_disable_dlclose=1 \
	  ctest --output-on-failure -j$(JOBS)

clean:
	rm -rf $(BUILD) build-fuzz build-asan
