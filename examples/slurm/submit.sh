#!/usr/bin/env bash
# Submits the whole recipe to Slurm: an array of FKZ_PARTS extraction tasks, and a job that runs
# merge -> train -> export once all of them succeeded. Settings: fastkvzip.env (or FKZ_ENV=file).
# Prints the two job ids; logs go to $FKZ_WORK/logs/.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=fastkvzip.env
source "${FKZ_ENV:-$here/fastkvzip.env}"
mkdir -p "$FKZ_WORK/logs"
common=(--export=ALL ${FKZ_PARTITION:+--partition="$FKZ_PARTITION"} ${FKZ_ACCOUNT:+--account="$FKZ_ACCOUNT"} --time="$FKZ_TIME")
extract=(--array="0-$((FKZ_PARTS - 1))" --cpus-per-task="$FKZ_CPUS_PER_TASK" ${FKZ_MEM:+--mem="$FKZ_MEM"} --output="$FKZ_WORK/logs/extract-%A_%a.out")
finish=(--cpus-per-task="$FKZ_FINISH_CPUS" ${FKZ_FINISH_MEM:+--mem="$FKZ_FINISH_MEM"} --output="$FKZ_WORK/logs/finish-%j.out")
[ "$FKZ_GPUS_PER_TASK" -gt 0 ] && extract+=(--gres="gpu:$FKZ_GPUS_PER_TASK")
[ "$FKZ_FINISH_GPUS" -gt 0 ] && finish+=(--gres="gpu:$FKZ_FINISH_GPUS")
array=$(sbatch --parsable "${common[@]}" "${extract[@]}" "$here/extract.sbatch")
array=${array%%;*} # "jobid;cluster" on multi-cluster setups
after=$(sbatch --parsable "${common[@]}" "${finish[@]}" --dependency="afterok:$array" --kill-on-invalid-dep=yes "$here/finish.sbatch")
after=${after%%;*}
echo "extract: job array $array ($FKZ_PARTS tasks) -> $FKZ_WORK/parts"
echo "merge -> train -> export: job $after (starts when every extract task succeeded) -> $FKZ_WORK/export"
echo "$array $after" > "$FKZ_WORK/logs/jobs"
