#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# VM smoke test of the module's device node; run by scripts/vm-run with the
# module loaded. Prints TAP and exits non-zero on any failure.
set -u
n=0 failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
nok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; echo "# $2"; }
check() { if eval "$2"; then ok "$1"; else nok "$1" "failed: $2"; fi; }

echo "TAP version 13"
echo "1..6"
check "module is loaded" 'grep -q "^mshv_rs " /proc/modules'
check "/dev/mshv is a character device" '[ -c /dev/mshv ]'
mode=$(stat -c %a /dev/mshv 2>/dev/null)
check "/dev/mshv has mode 0600 (got $mode)" '[ "$mode" = 600 ]'
check "root can open and close /dev/mshv" 'exec 3<>/dev/mshv && exec 3>&-'
out=$(setpriv --reuid=65534 --regid=65534 --clear-groups sh -c 'exec 3<>/dev/mshv' 2>&1)
rc=$?
check "non-root open is refused with EACCES" '[ $rc != 0 ] && case "$out" in *"Permission denied"*) true;; *) false;; esac'
# The errno of an unknown ioctl, printed by python3 (which must exist and
# open the node: a missing interpreter or a failed open is a failure).
got=$(python3 -c '
import errno, fcntl, os
fd = os.open("/dev/mshv", os.O_RDWR)
try:
    fcntl.ioctl(fd, 0xB8FF)
    print("success")
except OSError as e:
    print(errno.errorcode.get(e.errno, e.errno))
' 2>&1 | tail -1)
check "unknown ioctl on /dev/mshv fails with ENOTTY (got: $got)" '[ "$got" = ENOTTY ]'
echo "# smoke: $((n - failed)) passed, $failed failed"
[ $failed = 0 ]
