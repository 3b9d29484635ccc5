#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# VM test: unload and reload the module many times with work in between.
# Each cycle must unload cleanly (no fd keeps it busy, debugfs goes away)
# and leave no live object; slab and free memory are compared before and
# after (reported, and bounded). Needs MSHV_KO and MSHV_PARAMS (vm-run).
set -u
cycles=${1:-10}
work=${2:-}
n=0 failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
nok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; shift; for l in "$@"; do echo "# $l"; done; }
kb() { awk -v k="$1:" '$1 == k { print $2 }' /proc/meminfo; }

echo "TAP version 13"
echo "1..4"
[ -n "${MSHV_KO:-}" ] || { echo "Bail out! MSHV_KO not set (run under scripts/vm-run)"; exit 1; }
errors=()
# Cycle 0 is a warm-up (first-time allocations of the kernel and the
# workload's binary); the baseline is taken after it.
for i in $(seq 0 "$cycles"); do
	if [ "$i" = 1 ]; then
		echo 3 >/proc/sys/vm/drop_caches 2>/dev/null
		slab0=$(kb Slab) free0=$(kb MemFree)
	fi
	rmmod mshv_rs || { errors+=("cycle $i: rmmod failed"); break; }
	[ -e /sys/kernel/debug/mshv_rs ] && errors+=("cycle $i: debugfs dir left after rmmod")
	# shellcheck disable=SC2086
	insmod "$MSHV_KO" $MSHV_PARAMS || { errors+=("cycle $i: insmod failed"); break; }
	if [ -n "$work" ]; then
		$work >/dev/null 2>&1 || errors+=("cycle $i: workload '$work' failed")
	fi
	live=$(grep -v ' 0$' /sys/kernel/debug/mshv_rs/live_objects)
	[ -z "$live" ] || errors+=("cycle $i: live objects after the workload: $live")
done
if [ ${#errors[@]} = 0 ]; then ok "$cycles unload/reload cycles"; else nok "$cycles unload/reload cycles" "${errors[@]}"; fi
grep -q '^mshv_rs ' /proc/modules && ok "module loaded at the end" || nok "module loaded at the end"
echo 3 >/proc/sys/vm/drop_caches 2>/dev/null
slab1=$(kb Slab) free1=$(kb MemFree)
ds=$((slab1 - slab0)) df=$((free0 - free1))
echo "# slab: ${slab0} kB -> ${slab1} kB (${ds} kB); MemFree: ${free0} kB -> ${free1} kB ($((free1 - free0)) kB)"
# Bounds, not exact: the kernel's own caches move a little between cycles.
# A leak of one partition per cycle (hundreds of deposited pages, SLAT
# tables) is far above these; run-to-run noise of MemFree is a few MiB.
[ "$ds" -lt 1024 ] && ok "slab grew less than 1 MiB over $cycles cycles (${ds} kB)" || nok "slab grew ${ds} kB over $cycles cycles"
[ "$df" -lt 16384 ] && ok "free memory fell less than 16 MiB over $cycles cycles (${df} kB)" || nok "free memory fell ${df} kB over $cycles cycles"
echo "# reload: $((n - failed)) passed, $failed failed"
[ $failed = 0 ]
