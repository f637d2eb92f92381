#!/usr/bin/env bash
# One device call that measures the STCG engine against the shared bare-BLIP-2 anchor, side by side,
# on the full-size flan-t5-xl architecture with random bfloat16 weights (issue: engine benchmark).
#
#   bash benchmarks/gpu_session.sh prepare        # here, once per session: anchor + transformers wheel into .gpu/
#   device run:  command "bash benchmarks/gpu_session.sh run"   carry [".gpu"]   timeout_s 540
#   DEVICE=cpu PYTHON=.venv/bin/python OUT=/tmp bash benchmarks/gpu_session.sh run   # dry run here (tiny models)
#
# A second device call measures the attribution methods (docs/attribution.md, "Peak memory") on the
# same full-size architecture in bfloat16 on CUDA: torch.cuda.max_memory_allocated and time of each
# method relative to attention, batches 1, 8, 32 -> $OUT/attribution_memory_cuda.json. It does not
# fit in the same call as `run` (540 s); with a 15-minute device budget, run one or the other:
#   device run:  command "bash benchmarks/gpu_session.sh attribution"   carry [".gpu"]   timeout_s 420
#   DEVICE=cpu PYTHON=.venv/bin/python OUT=/tmp bash benchmarks/gpu_session.sh attribution   # dry run (tiny224)
#
# A third call measures the model families side by side (docs/families.md): the whole llava-1.5-7b,
# blip2-flan-t5-xl, instructblip-vicuna-7b and Qwen2.5-VL-7B architectures (built one at a time) with random
# bfloat16 weights, STCG build vs bare generate and the peak CUDA memory of the STCG build, batches 1 and 8
# -> $OUT/families_device_cuda[_FAMILIES].json. FAMILIES (model-name prefixes) splits it over two calls:
#   device run:  command "FAMILIES=llava,blip2 bash benchmarks/gpu_session.sh families"   carry [".gpu"]   timeout_s 480
#   device run:  command "FAMILIES=instructblip,qwen bash benchmarks/gpu_session.sh families"   carry [".gpu"]   timeout_s 480
#   DEVICE=cpu PYTHON=.venv/bin/python OUT=/tmp bash benchmarks/gpu_session.sh families   # dry run (tiny models)
#
# The GPU machine has torch and an older transformers but reaches no package index, so `prepare`
# downloads the transformers wheel this project runs with (pure Python, installed there with --no-deps
# into /tmp/site). Results go to $OUT (the device tool brings them back) or benchmarks/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

case "${1:-}" in
prepare)
    grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
    mkdir -p .gpu/whl
    install -m 0644 "${ANCHOR:-../shared/bench/blip2_bare_anchor.py}" .gpu/blip2_bare_anchor.py
    version=$(.venv/bin/python -c "import transformers; print(transformers.__version__)")
    rm -f .gpu/whl/*.whl
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .gpu/whl "transformers==$version"
    du -sh .gpu
    ;;
run|attribution|families)
    out=${OUT:-benchmarks/results}
    device=${DEVICE:-cuda}
    export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
    if compgen -G ".gpu/whl/*.whl" > /dev/null && [ "$device" = cuda ]; then
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl
        export PYTHONPATH=/tmp/site:$PWD
    fi
    "$PYTHON" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())"
    [ "$device" = cuda ] && nvidia-smi --query-gpu=name,memory.total,clocks.sm --format=csv || true
    if [ "$1" = families ]; then
        tag=${FAMILIES:+_${FAMILIES//,/_}}
        timeout 440 "$PYTHON" benchmarks/bench_families.py --part device --device "$device" --batches 1,8 --reps 3 \
            ${FAMILIES:+--families "$FAMILIES"} --out "$out/families_device_$device$tag.json" 2>&1 \
            | tee "$out/families_device_$device$tag.log" || echo "families step failed or timed out"
        exit 0
    fi
    if [ "$1" = attribution ]; then
        # 3. every attribution method on the full-size architecture (39 ViT-g, 12 Q-Former, 24 + 24 T5 layers,
        #    random bf16 weights, answers forced to 3 steps): peak CUDA memory over the model, median time of
        #    3 calls, both relative to attention. On CPU a dry run of the script on tiny224 (torch meter).
        if [ "$device" = cuda ]; then am=(--device-model xl:39,12,24,24 --batches 1,8,32 --reps 3); else am=(--device-model tiny224 --batches 1,2 --reps 1); fi
        timeout 380 "$PYTHON" benchmarks/bench_attribution_memory.py --device "$device" "${am[@]}" \
            --out "$out/attribution_memory_$device.json" 2>&1 | tee "$out/attribution_memory_$device.log" || echo "attribution step failed or timed out"
        exit 0
    fi
    tiny=(); anchor_env=(DEV="$device"); anchor_timeout=200
    if [ "$device" = cpu ]; then tiny=(--tiny); anchor_env+=(TINY=1); anchor_timeout=30; fi  # a dry run: the script, not numbers
    # 1. the shared anchor (all-eager bare generate, generate with attentions, teacher-forced with hooks)
    env "${anchor_env[@]}" timeout "$anchor_timeout" "$PYTHON" .gpu/blip2_bare_anchor.py 2>&1 | tee "$out/anchor_$device.log" || echo "anchor failed or timed out"
    # 2. this project's engine vs bare generate (SDPA pixels given, SDPA from images, eager), batches 1 and 32
    timeout 300 "$PYTHON" benchmarks/bench_stcg_engine.py --device "$device" "${tiny[@]}" --batches 1,32 --reps 5 \
        --out "$out/stcg_engine_${tiny:+tiny_}${device}.jsonl" 2>&1 | tee "$out/stcg_engine_$device.log"
    ;;
*)
    echo "usage: bash benchmarks/gpu_session.sh prepare|run|attribution" >&2
    exit 2
    ;;
esac
