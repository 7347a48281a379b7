#!/usr/bin/env bash
# The GPU checks, prepared to spend a lent GPU machine in one call of under 10 minutes:
#   1. the CUDA tests (pock on CUDA against the CPU, the GAN step without host syncs);
#   2. bench_pock.py on CUDA, on the same CIFAR-10 test / Imagenette val images as the CPU benchmark,
#      with pock.spectral timed at several batch sizes;
#   3. short training runs on CUDA with --amp: plain, spectral (band cache built on the GPU), colour
#      spectral (vectorial TV), the dissertation's on-the-fly decomposition (--no-cache), and test_pt.py.
# Here, once:   python -m experiments.device_data        (slim archives in the git-ignored device_data/)
# There:        bash experiments/gpu_check.sh             (carry ["device_data"]; results land in $OUT)
# Then here:    python bench_pock.py --report results/bench/bench_cpu.json results/bench/bench_cuda.json
set -uo pipefail
export PYTHONUNBUFFERED=1
out=${OUT:-runs/gpu-check}
data=${DEVICE_DATA:-device_data}
work=$(mktemp -d)
mkdir -p "$out"
py=${PYTHON:-python3}

{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    "$py" -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, torch.cuda.get_device_name())"
    nproc
} 2>&1 | tee "$out/machine.txt"

echo "== CUDA tests"
timeout 150 "$py" -m pytest -q -p no:cacheprovider tests/test_pock.py tests/test_gan.py tests/test_classify.py \
    -k cuda 2>&1 | tee "$out/tests.log"

echo "== bench_pock.py on CUDA"
timeout 240 "$py" bench_pock.py --device cuda --data-root "$data" --threads 1 --spectral-batches 1,20,128,1024 \
    --output-dir "$out" 2>&1 | tee "$out/bench.log"

echo "== training on CUDA"
train() {   # name, script, flags...
    local name=$1 script=$2
    shift 2
    local t0=$SECONDS
    timeout 60 "$py" "$script" --data-dir "$data/cifar10.zip" --subset 5000 --epochs 2 --batch-size 128 \
        --device cuda --amp --no-progress --cache-dir "$work/cache" --output-dir "$work/$name" "$@" > "$work/$name.log" 2>&1
    local rc=$?
    echo "$name: exit $rc, $((SECONDS - t0)) s; last epoch: $(tail -n 1 "$work/$name/metrics.jsonl" 2>/dev/null)"
    [ $rc -eq 0 ] || tail -n 20 "$work/$name.log"
}
{
    train plain train_pt.py
    train spectral train_pt_aug.py --spectral-mode replace --spectral-prob 0.5
    train color-spectral train_pt_aug.py --color --spectral-mode replace --spectral-prob 0.5
    train no-cache train_pt_aug.py --no-cache --spectral-mode replace --spectral-prob 0.5
    timeout 60 "$py" test_pt.py --data-dir "$data/cifar10.zip" --checkpoint "$work/spectral/checkpoint.pt" \
        --device cuda --no-progress --cache-dir "$work/cache" --output-dir "$work/test" 2>&1 | tail -n 5
} 2>&1 | tee "$out/train.log"
