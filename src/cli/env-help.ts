// The environment variables each command honours, for its --help (one list, so help and code
// agree: test/cli/help.test.ts checks that every variable the sources read is listed here).
import type { Command } from 'commander';
import { EXIT_CODES_HELP } from './exit-codes.js';

export const ENV_VARS = {
  HF_TOKEN: 'hub token for gated/private models and datasets and for --push (never printed or stored; also HUGGING_FACE_HUB_TOKEN, or the file at HF_TOKEN_PATH / HF_HOME/token)',
  HF_ENDPOINT: 'hub URL (default https://huggingface.co)',
  HF_HUB_OFFLINE: '1: use the local hub cache only, never the network',
  HF_HOME: 'hub home folder (default ~/.cache/huggingface; also XDG_CACHE_HOME)',
  HF_HUB_CACHE: 'hub cache folder (default $HF_HOME/hub; also HUGGINGFACE_HUB_CACHE)',
  FASTKVZIP_CACHE: 'where built ONNX graphs and converted weights go (default ~/.cache/fastkvzip)',
  FASTKVZIP_HOST_MALLOC: 'auto|on|off: re-run once with glibc keeping freed memory (auto: with --device cuda; README "GPUs")',
  FASTKVZIP_ORT_LOG_LEVEL: "0..4: ONNX Runtime's log level (2 shows nodes placed off the chosen execution provider; default 3)",
  FASTKVZIP_ORT_PROFILE: "PREFIX: write ONNX Runtime's per-node profile of every session to PREFIX*.json",
  FASTKVZIP_GQA: "flash|sink: how graphs call GroupQueryAttention (default sink on --device webgpu, where it avoids a kernel lavapipe gets wrong; flash elsewhere; same softmax)",
  SLURM_ARRAY_TASK_ID: '--shard auto: the part of a Slurm job array (with SLURM_ARRAY_TASK_COUNT, or SLURM_ARRAY_TASK_MIN/MAX)',
  JOB_COMPLETION_INDEX: '--shard auto: the part of a Kubernetes Indexed Job (the count: --shard-count or FASTKVZIP_SHARD_COUNT)',
  FASTKVZIP_SHARD_COUNT: "--shard auto: the part count of a Kubernetes Indexed Job (its completions)",
  RANK: '--shard auto: the part, with WORLD_SIZE the count (torchrun and MPI-style launchers)',
  CUDA_VISIBLE_DEVICES: '--gpus all: the GPUs to use (else the ones nvidia-smi -L lists)',
} as const;

export type EnvVar = keyof typeof ENV_VARS;

const HUB: EnvVar[] = ['HF_TOKEN', 'HF_ENDPOINT', 'HF_HUB_OFFLINE', 'HF_HOME', 'HF_HUB_CACHE'];
const ORT: EnvVar[] = ['FASTKVZIP_ORT_LOG_LEVEL', 'FASTKVZIP_ORT_PROFILE', 'FASTKVZIP_GQA'];
const SHARD: EnvVar[] = ['SLURM_ARRAY_TASK_ID', 'JOB_COMPLETION_INDEX', 'FASTKVZIP_SHARD_COUNT', 'RANK', 'CUDA_VISIBLE_DEVICES'];

/** Which variables each command reads. */
export const COMMAND_ENV: Record<string, EnvVar[]> = {
  run: [...HUB, 'FASTKVZIP_CACHE', 'FASTKVZIP_HOST_MALLOC', ...ORT],
  extract: [...HUB, 'FASTKVZIP_CACHE', 'FASTKVZIP_HOST_MALLOC', ...ORT, ...SHARD],
  'merge-features': [],
  train: [...ORT, 'CUDA_VISIBLE_DEVICES'],
  export: ['HF_TOKEN', 'HF_ENDPOINT'],
  eval: [...HUB, 'FASTKVZIP_CACHE', ...ORT],
  generate: [...HUB, 'FASTKVZIP_CACHE', ...ORT],
  'convert-llama2c': [],
};

export function envHelp(command: string): string {
  const vars = COMMAND_ENV[command] ?? [];
  if (vars.length === 0) return '';
  const width = Math.max(...vars.map((v) => v.length));
  return '\nEnvironment:\n' + vars.map((v) => `  ${v.padEnd(width)}  ${ENV_VARS[v]}`).join('\n') + '\n';
}

/** Environment variables and exit codes at the end of a command's --help. */
export function addEnvAndExitHelp(cmd: Command): Command {
  return cmd.addHelpText('after', envHelp(cmd.name()) + EXIT_CODES_HELP);
}
