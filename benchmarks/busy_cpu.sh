#!/usr/bin/env bash
# Wall time and the whole machine's busy and idle CPU seconds while COMMAND runs, from /proc/stat (Linux).
# Counts every process, sandboxed grading workers included (`time` misses those bwrap starts).
#   usage: bash benchmarks/busy_cpu.sh COMMAND [ARGS...]     e.g. bash benchmarks/busy_cpu.sh make test-fast
read -r _ u n s i w q sq st _ < /proc/stat; b0=$((u+n+s+q+sq+st)); i0=$((i+w)); t0=$(date +%s.%N)
"$@"; rc=$?
read -r _ u n s i w q sq st _ < /proc/stat; b1=$((u+n+s+q+sq+st)); i1=$((i+w)); t1=$(date +%s.%N)
hz=$(getconf CLK_TCK)
python3 -c "print(f'wall {$t1-$t0:.1f} s, busy CPU {($b1-$b0)/$hz:.1f} s, idle CPU {($i1-$i0)/$hz:.1f} s')"
exit $rc
