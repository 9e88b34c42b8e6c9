# Thin wrapper over CMake and the scripts: the README's two commands are
# `make demo` and `make check`. Everything else is for developers.
BUILD  ?= build
PRESET ?= default
JOBS   ?= 2

.PHONY: all deps configure build check test unit demo demo-fleet image format format-check asan clean \
        install deb

all: build

deps:
	@scripts/deps.sh

configure: deps
	@cmake --preset $(PRESET) >/dev/null

build: configure
	@cmake --build $(BUILD) -j $(JOBS)

# Every test (unit + integration against the harness's real Kafka and
# Mosquitto, started and stopped around ctest). Non-zero on any failure.
check: build
	@scripts/harness run -- ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

test: check

# The tests that need no broker: in-process unit tests (label unit) and the
# ones that run the sluice binary (label daemon).
unit: build
	@ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS) -L 'unit|daemon'

# Install the daemon, connectors, systemd unit, example config, greenboot
# check and flightctl hook rule (deploy/CMakeLists.txt):
#   make install DESTDIR=/tmp/stage     (PREFIX defaults to /usr: the unit
# names /usr/bin/sluice and /etc/sluice/sluice.yaml).
PREFIX ?= /usr
install: build
	@DESTDIR=$(DESTDIR) cmake --install $(BUILD) --prefix $(PREFIX)

# The Debian package of the same files: build/sluice_VERSION_ARCH.deb.
deb: build
	@scripts/package-deb.sh $(BUILD)

demo: build
	@scripts/demo.sh $(BUILD)

# The fleet control plane: 20 daemons, batches, a bad policy stopped at the
# canaries, an offline node catching up (docs/FLEET.md).
demo-fleet: build
	@scripts/demo-fleet.sh $(BUILD)

# The OCI image (buildah FROM scratch, no Docker engine): $(BUILD)/image/
# (docs/deploy/image.md). Needs root.
image: build
	@scripts/image.sh $(BUILD)

format:
	@scripts/format.sh

format-check:
	@scripts/format.sh --check

asan:
	@$(MAKE) --no-print-directory check PRESET=asan BUILD=build-asan

clean:
	rm -rf build build-asan build-tsan build-fuzz build-release
