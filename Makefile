# SPDX-License-Identifier: GPL-2.0
#
# mshv-rs: /dev/mshv in Rust. The two commands a newcomer needs:
#   make run     boot the test VM, load the module, run the demo
#   make check   the whole test suite (what CI runs)
# See README.md for the rest.

ifneq ($(KERNELRELEASE),)
# Invoked by Kbuild: the real rules are in Kbuild.
include $(src)/Kbuild
else

SHELL := /bin/bash
REPO := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
MSHV_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/mshv-rs
export MSHV_CACHE
export PATH := /usr/lib/llvm-19/bin:$(HOME)/.cargo/bin:$(PATH)

# KDIR: a configured and built kernel with CONFIG_RUST=y. Default: the cached
# test kernel (built on first use by scripts/kernel).
ifeq ($(KDIR),)
KDIR_DEFAULT := 1
KDIR = $(shell $(REPO)/scripts/kernel builddir)
endif
# Module objects go outside the repository (Kbuild's MO=), one dir per kernel.
# MSHV_MO=<dir> overrides it (scripts/vm-run honours the same variable), so two
# work trees can build and test side by side.
MO = $(or $(MSHV_MO),$(MSHV_CACHE)/module/$(notdir $(KDIR)))
# MSHV_EMULATOR=y (the default for development builds and every test) builds
# the emulator behind backend=sim (CONFIG_MSHV_RS_EMULATOR); n builds what a
# production root runs. `make install` defaults to n (scripts/install).
MSHV_EMULATOR ?= y
KBUILD_ARGS = -C $(KDIR) M=$(REPO) MO=$(MO) CONFIG_MSHV_RS=m CONFIG_MSHV_RS_EMULATOR=$(MSHV_EMULATOR) LLVM=1 RUSTC=/usr/bin/rustc $(if $(V),V=$(V))

.PHONY: all module setup kernel kernel-debug kunit check check-debug check-faults fuzz run bench \
	demo-build demo-smoke \
	vm-test host-test fmt fmtcheck clippy install clean help

all: module

help:
	@sed -n 's/^#   //p' $(REPO)/Makefile | head -3; \
	echo "targets: module kunit check check-debug fuzz run bench demo-smoke fmt fmtcheck clippy install clean"; \
	echo "variables: KDIR=<kernel build dir>  V=1  WERROR=1  VMM=mshv-demo|cloud-hypervisor (make run)"

setup:
	$(REPO)/scripts/setup

# On a fresh machine the first `make run` (or any target that builds the
# module) installs the toolchain itself when run as root: scripts/setup
# leaves a stamp naming the versions it installed, so later runs skip it.
kernel:
ifeq ($(KDIR_DEFAULT),1)
	@$(REPO)/scripts/setup --if-needed
	@$(REPO)/scripts/kernel build >/dev/null
else
	@$(REPO)/scripts/check-kdir $(KDIR)
endif

# WERROR=1 (set by make check and CI) turns every C and Rust warning into an error.
module: kernel
	@mkdir -p $(MO)
	$(MAKE) $(KBUILD_ARGS) $(if $(WERROR),KCFLAGS=-Werror KRUSTFLAGS=-Dwarnings) modules
	@echo "module: $(MO)/mshv_rs.ko"

clippy: kernel
	@mkdir -p $(MO)
	$(MAKE) $(KBUILD_ARGS) CLIPPY=1 CLIPPY_DRIVER=/usr/bin/clippy-driver KRUSTFLAGS=-Dwarnings KCFLAGS=-Werror modules

fmt:
	rustfmt --edition 2021 --config-path $(REPO)/.rustfmt.toml $(REPO)/src/mshv_rs.rs

fmtcheck:
	rustfmt --edition 2021 --check --config-path $(REPO)/.rustfmt.toml $(REPO)/src/mshv_rs.rs

kunit:
	$(REPO)/scripts/kunit $(KUNIT_ARGS)

host-test:
	cd $(REPO)/tests/host && cargo test --locked
	cd $(REPO)/tests/guest-asm && cargo test --locked
	cd $(REPO)/tests/mini-vmm && cargo test --locked
	cd $(REPO)/vmm && cargo test --locked
	cd $(REPO)/tests/vm && cargo test --locked
	cd $(REPO)/tests/fuzz && cargo test --locked

vm-test: module
	$(REPO)/scripts/vm-test

check:
	$(REPO)/scripts/check

# The VM tests on the debug kernel (KASAN, lockdep, DEBUG_VM, kmemleak,
# failslab built in): any splat or leak report fails the run. CI runs it
# after `make check` (.ci/run); CHECK_DEBUG_ARGS filters the cases.
check-debug:
	$(REPO)/scripts/check-debug $(CHECK_DEBUG_ARGS)

# The fuzzer (tests/fuzz, scripts/fuzz) in the debug-kernel VM for
# FUZZ_MINUTES (default 10) per seed; FUZZ_SEED=N replays a seed (default:
# a fresh one, printed). FUZZ_ARGS are passed to scripts/fuzz (for example
# --test-kernel, or "-- --threads 8 --no-wild-sizes" for the fuzzer).
fuzz:
	$(REPO)/scripts/fuzz $(if $(FUZZ_MINUTES),--minutes $(FUZZ_MINUTES)) $(if $(FUZZ_SEED),--seed $(FUZZ_SEED)) $(FUZZ_ARGS)

# The movable-memory scenarios on the debug kernel with failslab and the
# sim's random hypercall failures (scripts/check-faults): passes if nothing
# splats, leaks or leaves a stale translation. CHECK_FAULTS_ARGS replaces
# the "scen_" filter. `make check-debug` (in CI) runs a short pass of it.
check-faults:
	$(REPO)/scripts/kernel --debug build >/dev/null
	$(MAKE) module KDIR=$$($(REPO)/scripts/kernel --debug builddir)
	$(REPO)/scripts/check-faults $(CHECK_FAULTS_ARGS)

# The demo VMM (vmm/, mshv-demo) runs the demo guest over 1 GiB of movable
# RAM on two NUMA nodes while migrating, paging out and punching holes in it.
# VMM=cloud-hypervisor: the real Cloud Hypervisor (scripts/cloud-hypervisor,
# built on first use) runs the ch_memory guest (tests/guest/ch_memory.S)
# over 512 MiB with its seccomp filter on, printing its serial console.
VMM ?= mshv-demo
ifeq ($(VMM),cloud-hypervisor)
run: module
	cd $(REPO)/tests/vm && cargo build --release --locked --quiet
	target=$$(cd $(REPO)/tests/vm && cargo metadata --format-version 1 --no-deps | \
		python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])'); \
	elf=$$(ls -t $$target/release/build/mshv-vmtests-*/out/ch_memory.elf | head -1); \
	MSHV_CH_BIN=$$($(REPO)/scripts/cloud-hypervisor build) && export MSHV_CH_BIN && \
	$(REPO)/scripts/vm-run --memory 3G --numa -- $(REPO)/scripts/demo --cloud-hypervisor $$elf
else ifeq ($(VMM),mshv-demo)
run: module demo-build
	$(REPO)/scripts/vm-run --memory 3G --numa -- $(REPO)/scripts/demo
else
run:
	@echo "VMM=$(VMM): choose mshv-demo (the default) or cloud-hypervisor" >&2; exit 2
endif

demo-build:
	cd $(REPO)/vmm && cargo build --release --locked --quiet

# Benchmarks on the sim backend in the VM: results/bench-<date>.{md,svg},
# results/latest.md. BENCH_ARGS="--size 256 --reps 3" for a quicker run.
bench: module demo-build
	$(REPO)/scripts/bench $(BENCH_ARGS)

# make check's small version of `make run` (and of `make bench`).
demo-smoke: demo-build
	$(REPO)/scripts/vm-run --memory 2G --numa -- $(REPO)/scripts/demo --smoke

install:
	$(REPO)/scripts/install

clean:
	rm -rf $(MO)
	cd $(REPO)/tests/host && cargo clean
	cd $(REPO)/tests/guest-asm && cargo clean
	cd $(REPO)/tests/mini-vmm && cargo clean
	cd $(REPO)/tests/vm && cargo clean
	cd $(REPO)/vmm && cargo clean
	cd $(REPO)/tests/fuzz && cargo clean

endif
