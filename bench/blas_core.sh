# blas_core.sh — sourced by bench/run.sh and bench/llama.sh: choose the
# OpenBLAS core both sides of a benchmark run with.
#
# bench_blas_core MODE PY: MODE auto keeps OPENBLAS_CORETYPE when set; when
# unset and OpenBLAS falls back to its generic "Prescott" (SSE3) kernels on a
# CPU with AVX-512 (or AVX2), it exports OPENBLAS_CORETYPE=SkylakeX (or
# Haswell) and says so (OpenBLAS 0.3.21 does not know recent Xeons). MODE
# default unsets it (OpenBLAS's own choice); any other MODE is exported as
# the core. Sets `detected` to the core OpenBLAS picks by itself.
bench_blas_core() {
  local mode=$1 py=$2 flags
  detected=$(env -u OPENBLAS_CORETYPE "$py" -c \
    'import ctypes; l = ctypes.CDLL("libopenblas.so.0"); l.openblas_get_corename.restype = ctypes.c_char_p; print(l.openblas_get_corename().decode())')
  flags=$(grep -m1 '^flags' /proc/cpuinfo)
  case $mode in
    auto)
      if [[ -z ${OPENBLAS_CORETYPE:-} && $detected == Prescott ]]; then
        if [[ $flags == *avx512f* && $flags == *avx512bw* && $flags == *avx512vl* ]]; then
          export OPENBLAS_CORETYPE=SkylakeX
        elif [[ $flags == *avx2* && $flags == *fma* ]]; then
          export OPENBLAS_CORETYPE=Haswell
        fi
        if [[ -n ${OPENBLAS_CORETYPE:-} ]]; then
          echo "note: OpenBLAS detected '$detected' (its generic fallback) on this CPU;" \
               "using OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE (--coretype default to keep '$detected')"
        fi
      fi ;;
    default) unset OPENBLAS_CORETYPE ;;
    *) export OPENBLAS_CORETYPE=$mode ;;
  esac
}
