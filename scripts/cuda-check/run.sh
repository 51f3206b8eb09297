#!/usr/bin/env bash
# The native trainer's CUDA check, in one script (docs/cuda-check.md). On the GPU machine (no node_modules, no
# network) it builds ggml (base, CPU, CUDA sm_90) from the sources that prepare.sh extracted, compiles native/*.cpp
# against those libraries, and runs: gradient checks, 200 training steps on the bench shape (CUDA) vs a short CPU
# run (tokens/s), CUDA-vs-CPU parity (training losses, adapter, logits) and PyTorch+PEFT LoRA tokens/s on the same
# shape. Prints ONE JSON object at the end and writes it to $OUT/cuda-check.json (logs and raw events in $OUT/raw).
#
#   scripts/cuda-check/prepare.sh            # first, on a machine with node_modules (not on the GPU machine)
#   scripts/cuda-check/run.sh [all|build|test]
#       all    build what is missing, then every check (default)
#       build  configure + build ggml and the trainer only (a first call when time is short; resumable)
#       test   the checks only (the build must be complete)
#
# Environment (defaults in brackets):
#   OUT                      results folder [scripts/cuda-check/work/out]
#   CUDA_CHECK_GPU           auto | on | off: off builds without CUDA and runs only the CPU halves [auto: on when
#                            nvidia-smi lists a GPU]
#   CUDA_CHECK_DEADLINE_S    the whole script's time budget; stages are cut to fit it [560]
#   CUDA_CHECK_TEST_RESERVE_S  time kept for the checks when the ggml build runs [150]
#   CUDA_CHECK_JOBS          build parallelism [nproc]
#   CUDA_CHECK_ARCH          CMAKE_CUDA_ARCHITECTURES [90-real: SASS for sm_90 only, no PTX]
#   CUDA_CHECK_FA            GGML_CUDA_FA [OFF: flash-attention kernels as stubs; unused by the trainer]
#   CUDA_CHECK_CMAKE_EXTRA   extra cmake arguments (word-split)
#   CUDA_CHECK_STEPS         training steps of the main runs [200]
#   CUDA_CHECK_CPU_STEPS     steps of the CPU run and of the CUDA run it is compared with [10]
#   CUDA_CHECK_CPU_THREADS   CPU threads of the CPU runs [nproc]
#   CUDA_CHECK_PEFT_STEPS    timed PEFT steps per precision (after 10 warm-up steps) [100]
#   CUDA_CHECK_PYTHON        python for peft_bench.py [python3]
#   CUDA_CHECK_SKIP          comma list of stages groups to skip: gradcheck,train,parity,peft,lori_d,bench_gradcheck
set -uo pipefail

T_START=$(date +%s)
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
W="$here/work"
MODE="${1:-all}"
case "$MODE" in all|build|test) ;; *) echo "usage: $0 [all|build|test]" >&2; exit 2 ;; esac
OUT="${OUT:-$W/out}"
RAW="$OUT/raw"
mkdir -p "$RAW" "$W/run"
: > "$RAW/times.txt"
: > "$RAW/info.txt"
NPROC=$(nproc)
JOBS="${CUDA_CHECK_JOBS:-$NPROC}"
DEADLINE="${CUDA_CHECK_DEADLINE_S:-560}"
TEST_RESERVE="${CUDA_CHECK_TEST_RESERVE_S:-150}"
STEPS="${CUDA_CHECK_STEPS:-200}"
CPU_STEPS="${CUDA_CHECK_CPU_STEPS:-10}"
CPU_THREADS="${CUDA_CHECK_CPU_THREADS:-$NPROC}"
PEFT_STEPS="${CUDA_CHECK_PEFT_STEPS:-100}"
PY="${CUDA_CHECK_PYTHON:-python3}"
ARCH="${CUDA_CHECK_ARCH:-90-real}"
SKIP=",${CUDA_CHECK_SKIP:-},"
skipped() { [[ "$SKIP" == *",$1,"* ]]; }

log() { echo "[cuda-check +$(( $(date +%s) - T_START ))s] $*" >&2; }
info() { echo "$1=$2" >> "$RAW/info.txt"; }
remaining() { echo $(( DEADLINE - ($(date +%s) - T_START) )); }
summary() { python3 "$here/check_tools.py" summary "$OUT" > /dev/null 2>"$RAW/summary.err" || log "summary failed: $(tail -c 300 "$RAW/summary.err")"; }
# record NAME SECONDS RC
record() { echo "$1 $2 $3" >> "$RAW/times.txt"; }
now_ns() { date +%s%N; }
secs_since() { awk -v a="$1" -v b="$(now_ns)" 'BEGIN { printf "%.2f", (b - a) / 1e9 }'; }

# stage NAME LIMIT_S cmd...  (stdout+stderr -> $RAW/NAME.log); the limit is cut to the time left
stage() {
  local name=$1 limit=$2; shift 2
  local left; left=$(( $(remaining) - 8 ))
  (( limit > left )) && limit=$left
  if (( limit < 3 )); then log "$name: skipped (out of time)"; record "$name" 0 125; return 125; fi
  log "$name (limit ${limit}s)"
  local t0 rc; t0=$(now_ns)
  if declare -F "$1" > /dev/null; then
    ( "$@" ) > "$RAW/$name.log" 2>&1  # a shell function (short stages): no timeout(1) around it
  else
    timeout -k 5 "$limit" "$@" > "$RAW/$name.log" 2>&1
  fi
  rc=$?
  record "$name" "$(secs_since "$t0")" "$rc"
  (( rc == 0 )) || log "$name: exit $rc ($(tail -c 400 "$RAW/$name.log" | tr '\n' ' '))"
  summary
  return $rc
}

# trainer NAME LIMIT_S JSON  (config -> $RAW/NAME.config.json, events -> $RAW/NAME.jsonl, stderr -> $RAW/NAME.err)
trainer() {
  local name=$1 limit=$2 json=$3
  local left; left=$(( $(remaining) - 8 ))
  (( limit > left )) && limit=$left
  if (( limit < 3 )); then log "$name: skipped (out of time)"; record "$name" 0 125; return 125; fi
  printf '%s\n' "$json" > "$RAW/$name.config.json"
  log "$name (limit ${limit}s)"
  local t0; t0=$(now_ns)
  timeout -k 5 "$limit" "$TRAINER" "$RAW/$name.config.json" > "$RAW/$name.jsonl" 2> "$RAW/$name.err"
  local rc=$?
  record "$name" "$(secs_since "$t0")" "$rc"
  (( rc == 0 )) || log "$name: exit $rc: $(grep -h '"error"' "$RAW/$name.jsonl" | tail -1) $(tail -c 300 "$RAW/$name.err" | tr '\n' ' ')"
  summary
  return $rc
}

finish() {
  info total_s "$(( $(date +%s) - T_START ))"
  info finished "$1"
  summary
  # compact on stdout (the device tool returns the output's last 12,000 characters); indented in the file
  python3 -c 'import json, sys; print(json.dumps(json.load(open(sys.argv[1])), separators=(",", ":")))' \
    "$OUT/cuda-check.json" 2>/dev/null || echo '{"ok": false, "error": "no summary written (python3 missing?)"}'
  exit 0
}

# ------------------------------------------------------------------------------------------------ environment
GPU="${CUDA_CHECK_GPU:-auto}"
if [ "$GPU" = auto ]; then
  if command -v nvidia-smi > /dev/null && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then GPU=on; else GPU=off; fi
fi
if [ "$GPU" = on ] && ! command -v nvcc > /dev/null; then
  for d in /usr/local/cuda/bin /usr/local/cuda-13*/bin; do [ -x "$d/nvcc" ] && export PATH="$d:$PATH" && break; done
fi
info mode "$([ "$GPU" = on ] && echo cuda || echo cpu-only)"
if [ "$GPU" = on ]; then
  info gpu "$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"
  info driver "$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1)"
  info gpu_memory "$(nvidia-smi --query-gpu=memory.total --format=csv,noheader 2>/dev/null | head -1)"
  info compute_cap "$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1)"
fi
info nvcc "$(nvcc --version 2>/dev/null | grep -o 'release [0-9.]*, V[0-9.]*' | head -1)"
info cmake "$(cmake --version 2>/dev/null | head -1)"
info gxx "$(g++ --version 2>/dev/null | head -1)"
info cpu "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
info nproc "$NPROC"
info python "$(python3 --version 2>&1)"
info repo_commit "$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
info steps "$STEPS"; info cpu_steps "$CPU_STEPS"; info cpu_threads "$CPU_THREADS"; info jobs "$JOBS"

if [ ! -f "$W/ggml-src/COMMIT" ]; then
  log "scripts/cuda-check/work/ggml-src is missing: run scripts/cuda-check/prepare.sh where node_modules is, and carry it"
  info error "ggml-src missing (prepare.sh not run or not carried)"
  finish 0
fi
info ggml_commit "$(cat "$W/ggml-src/COMMIT")"

# ------------------------------------------------------------------------------------------------ build ggml
# A stable copy of the sources (refreshed only when the commit changes): a carried folder arrives with new mtimes,
# which would make ninja rebuild everything on a second call.
SRC="$W/ggml-build-src"
if [ ! -f "$SRC/COMMIT" ] || ! cmp -s "$SRC/COMMIT" "$W/ggml-src/COMMIT"; then
  rm -rf "$SRC" && cp -a "$W/ggml-src" "$SRC"
fi
if [ "$GPU" = on ]; then BUILD="$W/build-cuda"; else BUILD="$W/build-cpu"; fi
BIN="$BUILD/bin"
TDIR="$BUILD/trainer"
TRAINER="$TDIR/lori-train"

cpu_feature_flags() {
  local f; f=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
  on() { local x; for x in "$@"; do [[ "$f" == *" $x "* ]] || { echo OFF; return; }; done; echo ON; }
  echo "-DGGML_SSE42=$(on sse4_2) -DGGML_AVX=$(on avx) -DGGML_AVX2=$(on avx2) -DGGML_FMA=$(on fma)" \
       "-DGGML_F16C=$(on f16c) -DGGML_BMI2=$(on bmi2) -DGGML_AVX_VNNI=$(on avx_vnni)" \
       "-DGGML_AVX512=$(on avx512f avx512cd avx512vl avx512dq avx512bw) -DGGML_AVX512_VBMI=$(on avx512vbmi)" \
       "-DGGML_AVX512_VNNI=$(on avx512_vnni) -DGGML_AVX512_BF16=$(on avx512_bf16)"
}
# GGML_NATIVE=ON is refused together with GGML_BACKEND_DL (which the trainer's backend loading needs, like
# node-llama-cpp's builds), so the CPU features of this machine are passed one by one instead.
CMAKE_OPTS=(-G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON -DGGML_BACKEND_DL=ON -DGGML_NATIVE=OFF
            -DGGML_CCACHE=OFF -DGGML_OPENMP=ON $(cpu_feature_flags))
if [ "$GPU" = on ]; then
  # GGML_CUDA_FA=OFF compiles the flash-attention kernels as stubs: the trainer never uses FLASH_ATTN_EXT (it has
  # no backward) and those 37 files are the slowest of the build (one fattn-tile instance: 209 s -> 17 s here)
  CMAKE_OPTS+=(-DGGML_CUDA=ON "-DCMAKE_CUDA_ARCHITECTURES=$ARCH" "-DGGML_CUDA_FA=${CUDA_CHECK_FA:-OFF}"
               -DGGML_CUDA_FA_ALL_QUANTS=OFF -DGGML_CUDA_NCCL=OFF -DGGML_CUDA_COMPRESSION_MODE=none)
  command -v nvcc > /dev/null && CMAKE_OPTS+=("-DCMAKE_CUDA_COMPILER=$(command -v nvcc)")
  info cuda_arch "$ARCH"
fi
# shellcheck disable=SC2206
[ -n "${CUDA_CHECK_CMAKE_EXTRA:-}" ] && CMAKE_OPTS+=(${CUDA_CHECK_CMAKE_EXTRA})
info cmake_options "${CMAKE_OPTS[*]}"

build_ggml() {
  # a build folder configured from another source path (another checkout) cannot be reused
  if [ -f "$BUILD/CMakeCache.txt" ] && ! grep -q "^CMAKE_HOME_DIRECTORY:INTERNAL=$SRC\$" "$BUILD/CMakeCache.txt"; then
    rm -rf "$BUILD"
  fi
  if [ -f "$BUILD/build.ninja" ] && [ -f "$BUILD/.lori-cmake-options" ] && [ "$(cat "$BUILD/.lori-cmake-options")" = "${CMAKE_OPTS[*]}" ]; then
    info build_resumed 1
  else
    stage ggml_configure 120 cmake -S "$SRC" -B "$BUILD" "${CMAKE_OPTS[@]}" || return 1
    echo "${CMAKE_OPTS[*]}" > "$BUILD/.lori-cmake-options"
  fi
  local limit
  if [ "$MODE" = build ]; then limit=$(( $(remaining) - 15 )); else limit=$(( $(remaining) - TEST_RESERVE )); fi
  stage ggml_build "$limit" ninja -C "$BUILD" -j "$JOBS" || return 1
  info ggml_libs "$(cd "$BIN" && ls -l lib*.so* 2>/dev/null | awk '$1 !~ /^l/ { printf "%s%s:%.1fMB", sep, $NF, $5/1048576; sep=" " }')"
}

# native/*.cpp against the fresh libraries: the flags of scripts/build-native.mjs, with $BIN instead of
# node-llama-cpp's prebuilt folder
build_trainer() {
  rm -rf "$TDIR" && mkdir -p "$TDIR/obj"
  local cflags=(-std=c++17 -O2 -ffp-contract=off -fno-fast-math -Wall -Wextra -Wno-unused-parameter -I "$SRC/ggml/include")
  # shellcheck disable=SC2016
  printf '%s\n' "$repo"/native/*.cpp | xargs -P "$JOBS" -I{} sh -c \
    'src="$1"; shift; obj="$0/$(basename "${src%.cpp}").o"; exec "${CXX:-g++}" "$@" -c "$src" -o "$obj"' "$TDIR/obj" {} "${cflags[@]}" \
  && "${CXX:-g++}" "$TDIR"/obj/*.o -o "$TRAINER" "$BIN/libggml-base.so" "$BIN/libggml.so" \
       "-Wl,-rpath,$BIN" -ldl -pthread
}

if [ "$MODE" != test ]; then
  build_ggml || { log "ggml build did not finish: rerun the same command to resume it (ninja keeps what was built)"; finish 0; }
  stage trainer_build 120 build_trainer || finish 0
fi
[ -x "$TRAINER" ] || { log "no trainer at $TRAINER: run with 'build' or 'all' first"; info error "trainer not built"; finish 0; }
[ "$MODE" = build ] && finish 1

# ------------------------------------------------------------------------------------------------ data and models
D="$W/run"
make_data() {
  set -e
  python3 "$here/make_shards.py" "$D/tiny.bin" --vocab 64 --seqs 4 --len 24 --prompt 8
  # exactly bench/train.ts's data: 16 sequences x 128 tokens, 32-token prompt
  python3 "$here/make_shards.py" "$D/bench.bin" --vocab 260 --seqs 16 --len 128 --prompt 32
  python3 "$here/make_shards.py" "$D/parity.bin" --vocab 260 --seqs 4 --len 128 --prompt 32 --seed 777
  python3 "$here/check_tools.py" make-mask "$D/tiny-mask.safetensors" --layers 2 --rank 8 \
    --dims q=32,k=16,v=16,o=32,gate=48,up=48,down=32 --density 0.5 --seed 3
  printf '{"mode":"make-model","output":"%s","seed":1}\n' "$D/tiny.gguf" > "$D/make-tiny.json"
  "$TRAINER" "$D/make-tiny.json"
  # the bench shape (src/model/tiny-model.ts BENCH_SHAPE): llama F16, d 512, 8 layers, 8/4 heads, ff 1408, vocab 260
  printf '{"mode":"make-model","output":"%s","n_vocab":260,"n_embd":512,"n_layer":8,"n_head":8,"n_head_kv":4,"n_ff":1408,"context_length":256,"weight_type":"f16","seed":1}\n' "$D/bench.gguf" > "$D/make-bench.json"
  "$TRAINER" "$D/make-bench.json"
}
stage data 60 make_data || finish 0

# backend keys: the CUDA side, and the CPU side (gpu off; the same library folder)
CUDA_BE="\"gpu\":\"cuda\",\"threads\":$NPROC,\"cpu_dir\":\"$BIN\",\"cuda_dir\":\"$BIN\""
CPU_BE="\"gpu\":\"off\",\"threads\":$CPU_THREADS,\"cpu_dir\":\"$BIN\",\"cuda_dir\":\"$BIN\""
CPU1_BE="\"gpu\":\"off\",\"threads\":1,\"cpu_dir\":\"$BIN\",\"cuda_dir\":\"$BIN\""
# "alt" is what the CPU run is compared with: CUDA, or (without a GPU, to exercise the plumbing) CPU with 1 thread
if [ "$GPU" = on ]; then ALT=cuda; ALT_BE="$CUDA_BE"; else ALT=cpu1; ALT_BE="$CPU1_BE"; fi
info alt "$ALT"
TINY="\"model\":\"$D/tiny.gguf\",\"shards\":\"$D/tiny.bin\""
BENCH="\"model\":\"$D/bench.gguf\",\"shards\":\"$D/bench.bin\""
TRAIN="\"mode\":\"train\",$BENCH,\"rank\":32,\"seed\":1,\"lr\":1e-4,\"batch\":4,\"max_len\":128"

# ------------------------------------------------------------------------------------------------ gradient checks
if ! skipped gradcheck; then
  for be in $ALT cpu; do
    if [ "$be" = cpu ]; then B="$CPU_BE"; else B="$ALT_BE"; fi
    trainer "gradcheck_${be}_tiny_lora" 60 "{\"mode\":\"gradcheck\",$TINY,$B,\"method\":\"lora\",\"seed\":5}"
    trainer "gradcheck_${be}_tiny_lori_s" 60 "{\"mode\":\"gradcheck\",$TINY,$B,\"method\":\"lori-s\",\"mask\":\"$D/tiny-mask.safetensors\",\"seed\":5}"
  done
  if ! skipped bench_gradcheck; then
    trainer "gradcheck_${ALT}_bench_lora" 90 "{\"mode\":\"gradcheck\",$BENCH,$ALT_BE,\"method\":\"lora\",\"rank\":32,\"seed\":5,\"entries\":24,\"max_len\":48}"
  fi
fi

# ------------------------------------------------------------------------------------------------ training speed
if ! skipped train; then
  trainer "train_${ALT}_lora" 150 "{$TRAIN,$ALT_BE,\"method\":\"lora\",\"steps\":$STEPS,\"output\":\"$D/${ALT}_lora.safetensors\"}"
fi

# ------------------------------------------------------------------------------------------------ parity
if ! skipped parity; then
  # the same short run on both sides (same data order, same init): per-step losses and the trained adapters
  trainer train_cpu_lora 150 "{$TRAIN,$CPU_BE,\"method\":\"lora\",\"steps\":$CPU_STEPS,\"output\":\"$D/cpu_lora_short.safetensors\"}"
  trainer "train_${ALT}_lora_short" 60 "{$TRAIN,$ALT_BE,\"method\":\"lora\",\"steps\":$CPU_STEPS,\"output\":\"$D/${ALT}_lora_short.safetensors\"}"
  if [ -f "$D/cpu_lora_short.safetensors" ] && [ -f "$D/${ALT}_lora_short.safetensors" ]; then
    python3 "$here/check_tools.py" adapter-diff "$D/${ALT}_lora_short.safetensors" "$D/cpu_lora_short.safetensors" > "$RAW/adapter_diff.json" 2>> "$RAW/summary.err"
  fi
  # logits of one adapter (the long run's when there is one) through both backends
  ADAPTER="$D/${ALT}_lora.safetensors"
  [ -f "$ADAPTER" ] || ADAPTER="$D/${ALT}_lora_short.safetensors"
  info parity_pair "logits_a=$ALT logits_b=cpu adapter=$(basename "$ADAPTER")"
  L="\"mode\":\"logits\",\"model\":\"$D/bench.gguf\",\"shards\":\"$D/parity.bin\",\"adapter\":\"$ADAPTER\",\"max_len\":128"
  trainer logits_a 60 "{$L,$ALT_BE,\"logits_out\":\"$D/logits_a.f32\"}"
  trainer logits_b 60 "{$L,$CPU_BE,\"logits_out\":\"$D/logits_b.f32\"}"
  if [ -f "$D/logits_a.f32" ] && [ -f "$D/logits_b.f32" ]; then
    python3 "$here/check_tools.py" logits-diff "$D/logits_a.f32" "$D/logits_b.f32" > "$RAW/logits_diff.json" 2>> "$RAW/summary.err"
  fi
  summary
fi

# ------------------------------------------------------------------------------------------------ more CUDA coverage
if ! skipped train && ! skipped lori_d; then
  trainer "train_${ALT}_lori_d" 150 "{$TRAIN,$ALT_BE,\"method\":\"lori-d\",\"steps\":$STEPS,\"output\":\"$D/${ALT}_lori_d.safetensors\"}"
fi

# ------------------------------------------------------------------------------------------------ PyTorch + PEFT
if ! skipped peft; then
  PEFT_ARGS=(--out "$RAW/peft.json" --steps "$PEFT_STEPS")
  [ "$GPU" = on ] || PEFT_ARGS+=(--device cpu --threads "$CPU_THREADS")
  stage peft 150 "$PY" "$here/peft_bench.py" "${PEFT_ARGS[@]}"
fi

finish 1
