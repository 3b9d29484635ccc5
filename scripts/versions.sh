# SPDX-License-Identifier: GPL-2.0
# The one place that names the versions this project builds against.
# Sourced by every script; change the series here and nowhere else.

# Debian kernel-source series and the suite it comes from.
KSERIES=7.3
KSUITE=trixie-backports
# bindgen-cli from crates.io (the kernel needs >= 0.71.1).
BINDGEN_VERSION=0.73.2
# virtme-ng from PyPI (boots the test kernel on the host's root file system).
VIRTME_NG_VERSION=1.42
# LLVM toolchain.
LLVM_VERSION=19
LLVM_BIN=/usr/lib/llvm-${LLVM_VERSION}/bin
# Cache for the extracted and built kernels (never inside the repository).
MSHV_CACHE=${MSHV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mshv-rs}
