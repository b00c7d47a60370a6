#!/usr/bin/env bash
# Runs every test binary in BUILD/tests (cmocka), then the integration tests,
# then (full runs only) the dashboard's browser test
# (tests/integration/test_*.py) against BUILD/aflorad; --c-only or --py-only
# runs one kind. Prints one closing line
# "N passed, N failed, N skipped" (skipped: integration tests that skip
# themselves, e.g. for want of ../shared/data; neither passed nor failed)
# and exits non-zero if anything failed.
set -u
build=${1:-build}
mode=${2:-all}
passed=0; failed=0; skipped=0; failed_names=()
[[ -n ${VALGRIND:-} ]] && export AFLORAD_VALGRIND=1
# OpenBLAS reads its kernel set (OPENBLAS_CORETYPE) when it loads: the
# aflorad binary chooses and checks one itself (daemon/blas_setup.c), the
# test binaries get one here; one already set (this environment's) is kept.
# Idle OpenMP threads must sleep, not spin against OpenBLAS's threads.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
# valgrind does not emulate AVX-512: under it, stay with AVX2 kernels.
if [[ -z ${OPENBLAS_CORETYPE:-} ]]; then
  if [[ -z ${VALGRIND:-} ]] && grep -qw avx512bw /proc/cpuinfo; then export OPENBLAS_CORETYPE=SkylakeX
  elif grep -qw avx2 /proc/cpuinfo; then export OPENBLAS_CORETYPE=Haswell; fi
fi

c_tests=1; py_tests=1
[[ $mode == --c-only ]] && py_tests=0
[[ $mode == --py-only ]] && c_tests=0
# run_c_test LABEL BINARY [ENV=VALUE...]: one cmocka binary, counted.
run_c_test() {
  local label=$1 t=$2; shift 2
  out=$(env "$@" ${VALGRIND:-} "$t" 2>&1); rc=$?
  p=$(grep -Eo '^\[  PASSED  \] [0-9]+' <<<"$out" | awk '{s+=$NF} END {print s+0}')
  f=$(grep -Eo '^\[  FAILED  \] [0-9]+' <<<"$out" | awk '{s+=$NF} END {print s+0}')
  if (( rc != 0 && f == 0 )); then f=1; fi   # crashed or exited early
  passed=$((passed + p)); failed=$((failed + f))
  if (( rc != 0 )); then
    failed_names+=("$label")
    echo "$out" | tail -n 40
  fi
  printf '%-28s %3d passed %3d failed\n' "$label" "$p" "$f"
}

(( c_tests )) && for t in "$build"/tests/test_*; do
  [[ -x $t && ! -d $t && $t != *.o && $t != *.d ]] || continue
  run_c_test "$(basename "$t")" "$t"
done

# The golden, finite-difference and learning tests once more at every other
# kernel level the CPU supports (engine/base/isa.h; the loop above ran them at
# the level chosen by default), so each variant is proven, not just the best.
# valgrind does not emulate AVX-512: no avx512 under it. Under valgrind the
# reruns are skipped altogether: memcheck finds the same errors at every level
# in code outside the kernels, and the ASan+UBSan pass reruns each level.
level_ok() {
  case $1 in
    base) return 0 ;;
    avx2) grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo ;;
    avx512) [[ -z ${VALGRIND:-} ]] && grep -qw avx512f /proc/cpuinfo && grep -qw avx512bw /proc/cpuinfo &&
              grep -qw avx512dq /proc/cpuinfo && grep -qw avx512vl /proc/cpuinfo ;;
  esac
}
default_level=${AFLORAD_ISA:-}
if [[ -z $default_level ]]; then
  for l in base avx2 avx512; do level_ok "$l" && default_level=$l; done
fi
(( c_tests )) && [[ -z ${VALGRIND:-} ]] && for level in base avx2 avx512; do
  [[ $level == "$default_level" ]] && continue
  level_ok "$level" || { printf '%-28s not run (CPU or valgrind)\n' "[$level]"; continue; }
  for name in test_golden test_model test_train test_llama test_llama_mem test_lmtrain test_deberta; do
    [[ -x $build/tests/$name ]] && run_c_test "$name [$level]" "$build/tests/$name" AFLORAD_ISA="$level"
  done
done

if (( py_tests )); then
  for t in tests/integration/test_*.py; do
    [[ -f $t ]] || continue
    out=$(AFLORAD_BUILD="$build" python3 "$t" 2>&1); rc=$?
    p=$(grep -Eo '^Ran [0-9]+' <<<"$out" | awk '{print $2+0}'); p=${p:-0}
    f=$(grep -Eo 'failures=[0-9]+|errors=[0-9]+' <<<"$out" | awk -F= '{s+=$2} END {print s+0}')
    # unittest's closing line: "OK (skipped=2)" / "FAILED (failures=1, skipped=2)"
    s=$(grep -E '^(OK|FAILED) \(' <<<"$out" | grep -Eo 'skipped=[0-9]+' | awk -F= '{s+=$2} END {print s+0}')
    if (( rc != 0 && f == 0 )); then f=1; fi
    # an error in setUpClass fails with no test run: nothing passed, not -1
    (( p - f - s < 0 )) && p=$((f + s))
    passed=$((passed + p - f - s)); failed=$((failed + f)); skipped=$((skipped + s))
    if (( rc != 0 )); then failed_names+=("$(basename "$t")"); echo "$out" | tail -n 60; fi
    if (( s > 0 )); then
      printf '%-28s %3d passed %3d failed %3d skipped\n' "$(basename "$t")" "$((p - f - s))" "$f" "$s"
    else
      printf '%-28s %3d passed %3d failed\n' "$(basename "$t")" "$((p - f))" "$f"
    fi
  done
fi

# The dashboard in real headless Chromium (tests/browser/run.sh).
if (( c_tests && py_tests )) && [[ -x tests/browser/run.sh && -z ${AFLORAD_SKIP_BROWSER:-} ]]; then
  out=$(BUILD="$build" tests/browser/run.sh 2>&1); rc=$?
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' <<<"$out" | tail -n 1)
  p=$(awk '{print $1+0}' <<<"${line:-0 passed, 0 failed}")
  f=$(awk '{print $3+0}' <<<"${line:-0 passed, 0 failed}")
  if (( rc != 0 && f == 0 )); then f=1; fi
  passed=$((passed + p)); failed=$((failed + f))
  if (( rc != 0 )); then failed_names+=("browser"); echo "$out" | tail -n 60; fi
  sk=$(grep -Eo '[0-9]+ skipped' <<<"${line:-}" | awk '{print $1+0}')   # counted neither way
  skipped=$((skipped + ${sk:-0}))
  printf '%-28s %3d passed %3d failed%s\n' "browser (chromium)" "$p" "$f" "${sk:+ $sk skipped}"
  (( ${sk:-0} )) && grep -E '^SKIP ' <<<"$out" | cut -c1-200
fi

(( ${#failed_names[@]} )) && echo "failing: ${failed_names[*]}"
echo "$passed passed, $failed failed, $skipped skipped"
(( failed == 0 && passed > 0 ))
