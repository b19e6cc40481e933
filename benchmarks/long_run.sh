#!/usr/bin/env bash
# The long CPU training run of issue 9, in resumable pieces (docs/training-notes.md, "The long run").
#
#   bash benchmarks/long_run.sh STAGE        # start or resume STAGE (a: 64 px, b: 128 px from a, c: b's best at a lower LR,
#                                            # d: the GAN at 128 px from c's best, e: d without the GAN), niced, in the background
#   bash benchmarks/long_run.sh STAGE --save # copy the run's last.pt to models/resume/ (to commit)
#
# A piece runs until the session ends or the stage's epochs are done. It resumes from
# runs/long-STAGE/last.pt when that exists (same machine), else from models/resume/STAGE.pt (the copy
# committed at the end of a session: a fresh machine continues from there). The HAM10000 lesion-id
# split is re-made (deterministic, seed 0) when missing.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
stage="${1:?stage a or b}"
py=.venv/bin/python
run="runs/long-$stage"
saved="models/resume/$stage.pt"
if [ "${2:-}" = "--save" ]; then
  mkdir -p models/resume
  cp "$run/last.pt" "$saved.tmp" && mv "$saved.tmp" "$saved"
  echo "saved $run/last.pt -> $saved"; exit 0
fi
[ -d runs/ham10000-split/train ] || "$py" -m dermaseg_app.ml.splits /work/shared/data/ham10000 \
  --out runs/ham10000-split --groups HAM10000_metadata.csv --group-column lesion_id --image-column image_id --val 0.1
mkdir -p "$run"
# With the kernel's autogroup scheduling on (the default of many distributions), nice only ranks
# processes within one session: another shell's jobs (tests, builds) then take an equal share of
# the cores whatever their nice, which starved this run in sessions 3-4. Turned off when the
# script may (root), said otherwise; DERMASEG_LONG_AUTOGROUP=keep leaves it alone.
autogroup=/proc/sys/kernel/sched_autogroup_enabled
if [ "$(cat "$autogroup" 2>/dev/null)" = 1 ] && [ "${DERMASEG_LONG_AUTOGROUP:-off}" != keep ]; then
  if { echo 0 >"$autogroup"; } 2>/dev/null; then
    echo "note: kernel autogroup scheduling turned off, so that nice ranks this run above other sessions' jobs"
  else
    echo "warning: kernel autogroup scheduling is on: nice does not rank this run above other sessions' jobs" \
         "(as root: echo 0 > $autogroup)" >&2
  fi
fi
isic=/work/shared/data/isic2017
compile=(--compile)
case "$stage" in
  # Stage a: 64 px, supervised (pixel BCE + 0.1 L1 + 0.5 soft Jaccard), ISIC 2017 train with the
  # HAM10000 lesion-id training split mixed half and half into every batch.
  a) args=(--data "$isic/train" --mix runs/ham10000-split/train --mix-share 0.5 --val "$isic/val"
           --input-size 64 --epochs 30 --supervised --lr 1e-3 --beta1 0.9 --lr-schedule cosine --ema 0.999
           --name slsnet_isic2017 --version 0.2-cpu-64);;
  # Stage b: 128 px (the paper's size), G started from stage a's best model, same data and loss,
  # a lower learning rate; continued over sessions until its validation curve flattens.
  #    (started in session 3 from stage a's epoch-20 model, val JSC 0.758, copied to
  #    runs/long-b/init-a-e20.safetensors; later pieces resumed from last.pt / models/resume/b.pt, removed when stage c replaced it)
  b) init="${DERMASEG_STAGE_B_INIT:-runs/long-b/init-a-e20.safetensors}"
     [ -f "$init" ] || [ -f "$run/last.pt" ] || [ -f "$saved" ] \
       || { echo "stage b starts from a stage a model ($init)" >&2; exit 2; }
     args=(--init "$init" --data "$isic/train" --mix runs/ham10000-split/train --mix-share 0.5
           --val "$isic/val" --input-size 128 --epochs 20 --supervised --lr 3e-4 --beta1 0.9 --lr-schedule cosine
           --ema 0.999 --name slsnet_isic2017 --version 0.2-cpu-128);;
  # Stage c: 128 px from stage b's best epoch (models/resume/b-best.safetensors, val JSC 0.767):
  # stage b's curve dipped at lr 3e-4 (0.767, 0.757, 0.738, 0.755), so the low-LR end of the
  # schedule, lr 1e-4 cosine over 5 epochs, same data and loss (started in session 4). Eager: with
  # --compile this start from a model file gave a nan loss at step 2 (eager does not; under study).
  c) init="${DERMASEG_STAGE_C_INIT:-models/resume/b-best.safetensors}"
     [ -f "$init" ] || [ -f "$run/last.pt" ] || [ -f "$saved" ] \
       || { echo "stage c starts from stage b's best model ($init)" >&2; exit 2; }
     args=(--init "$init" --data "$isic/train" --mix runs/ham10000-split/train --mix-share 0.5
           --val "$isic/val" --input-size 128 --epochs 5 --supervised --lr 1e-4 --beta1 0.9 --lr-schedule cosine
           --ema 0.999 --name slsnet_isic2017 --version 0.3-cpu-128)
     compile=();;
  # Stage d: the paper's conditional GAN at 128 px, stabilised as measured at 64 px (session 3:
  # adversarial term x0.1, pixel BCE kept), from stage c's best (shipped as 0.3-cpu-interim, val
  # JSC 0.772; stage c's curve was flat at 0.764-0.772 over its 5 epochs), Adam 2e-4 betas
  # (0.5, 0.999) as the paper, a cosine over 12 epochs (session 5). --compile: on an AMX CPU the
  # engine runs bf16 eagerly instead (cpu_speed.compiled_autocast).
  d) init="${DERMASEG_STAGE_D_INIT:-runs/long-d/init-c-e1.safetensors}"
     if [ ! -f "$init" ] && [ ! -f "$run/last.pt" ] && [ ! -f "$saved" ]; then
       mkdir -p "$(dirname "$init")"
       # the model shipped as 0.3-cpu-interim (commit 9da9742 and later, until 0.4 replaces it)
       git show 9da9742:models/slsnet_isic2017.safetensors >"$init.tmp" && mv "$init.tmp" "$init"
     fi
     args=(--init "$init" --data "$isic/train" --mix runs/ham10000-split/train --mix-share 0.5
           --val "$isic/val" --input-size 128 --epochs 12 --adv-weight 0.1 --gan-bce 1 --lr 2e-4 --beta1 0.5
           --lr-schedule cosine --ema 0.999 --name slsnet_isic2017 --version 0.4-cpu-128-gan);;
  # Stage e: stage d's comparison without the GAN, side by side on the other core (session 5): the
  # same start, data, schedule (cosine over 12 epochs from 2e-4) and EMA, supervised (pixel BCE +
  # 0.1 L1 + 0.5 soft Jaccard) with Adam betas (0.9, 0.999) as stages a-c.
  e) init="${DERMASEG_STAGE_E_INIT:-runs/long-e/init-c-e1.safetensors}"
     if [ ! -f "$init" ] && [ ! -f "$run/last.pt" ] && [ ! -f "$saved" ]; then
       mkdir -p "$(dirname "$init")"
       git show 9da9742:models/slsnet_isic2017.safetensors >"$init.tmp" && mv "$init.tmp" "$init"
     fi
     args=(--init "$init" --data "$isic/train" --mix runs/ham10000-split/train --mix-share 0.5
           --val "$isic/val" --input-size 128 --epochs 12 --supervised --lr 2e-4 --beta1 0.9
           --lr-schedule cosine --ema 0.999 --name slsnet_isic2017 --version 0.4-cpu-128-sup);;
  *) echo "unknown stage $stage" >&2; exit 2;;
esac
resume=()
if [ -f "$run/last.pt" ]; then resume=(--resume "$run/last.pt")
elif [ -f "$saved" ]; then resume=(--resume "$saved"); fi
if [ ${#resume[@]} -gt 0 ]; then args=("${resume[@]}" --run-dir "$run"); fi
nohup nice -n "${DERMASEG_LONG_NICE:-15}" "$py" -m dermaseg_app train "${args[@]}" --out "$run/model.safetensors" --run-dir "$run" \
  --threads "${DERMASEG_LONG_THREADS:-1}" --checkpoint-every 100 --precision auto --channels-last "${compile[@]}" >>"$run/train.log" 2>&1 &
echo "stage $stage running (pid $!); log $run/train.log"
