# Convenience wrapper around CMake. `make` builds into build/, `make test` builds and runs every test,
# `make demo` runs the built-in demo, `make demo-images` the Fashion-MNIST one (Glow, ~12 min),
# `make bench` the benchmark workloads, `make install PREFIX=/usr/local` installs under PREFIX (default
# /usr/local) every time: build/ is reconfigured for it when it was configured with another prefix (CMake
# derives the library and Python folders from the prefix); DESTDIR=/staging is honoured as usual.
BUILD ?= build
PREFIX ?= /usr/local
NFLOW_CMAKE_FLAGS ?=

.PHONY: all test demo demo-images bench install clean deps
all: $(BUILD)/Makefile
	cmake --build $(BUILD) -j$$(nproc)

$(BUILD)/Makefile: CMakeLists.txt
	cmake -S . -B $(BUILD) -DCMAKE_INSTALL_PREFIX=$(abspath $(PREFIX)) $(NFLOW_CMAKE_FLAGS)

deps:
	bash scripts/install-deps.sh

test: all
	ctest --test-dir $(BUILD) --output-on-failure -j$$(nproc)

demo: all
	./$(BUILD)/nflow demo

demo-images: all
	./$(BUILD)/nflow demo --data fashion-mnist

bench: all
	./$(BUILD)/nflow bench all --json bench.json

install: $(BUILD)/Makefile
	@[ "$$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' $(BUILD)/CMakeCache.txt)" = "$(abspath $(PREFIX))" ] || \
	  { echo "cmake -S . -B $(BUILD) -DCMAKE_INSTALL_PREFIX=$(abspath $(PREFIX))"; \
	    cmake -S . -B $(BUILD) -DCMAKE_INSTALL_PREFIX=$(abspath $(PREFIX)); }
	cmake --build $(BUILD) -j$$(nproc)
	cmake --install $(BUILD)

clean:
	rm -rf $(BUILD) build-asan demo-out
