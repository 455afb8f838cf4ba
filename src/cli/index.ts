// fastkvzip command line: one subcommand per pipeline stage, each in its own file.
import { Command, CommanderError } from 'commander';
import { UserError, SilentExit, EXIT } from '../util/errors.js';
import { generateCommand } from './generate.js';
import { convertCommand } from './convert.js';
import { extractCommand } from './extract.js';
import { trainCommand } from './train.js';
import { exportCommand } from './export.js';
import { runCommand } from './run.js';
import { mergeCommand } from './merge.js';
import { evalCommand } from './eval.js';
import { TOOL_VERSION } from '../version.js';
import { redact } from '../util/redact.js';
import { systemError } from '../util/system-error.js';
import { memoryError } from '../util/memory-error.js';
import { addEnvAndExitHelp } from './env-help.js';
import { EXIT_CODES_HELP } from './exit-codes.js';

export function buildProgram(): Command {
  const program = new Command('fastkvzip')
    .description('Train Fast KVzip gates (KV-cache eviction) for Hugging Face LLMs with ONNX Runtime')
    .version(TOOL_VERSION)
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText('after', EXIT_CODES_HELP)
    .exitOverride();
  for (const make of [runCommand, extractCommand, mergeCommand, trainCommand, exportCommand, evalCommand, generateCommand, convertCommand]) {
    program.addCommand(addEnvAndExitHelp(make()).exitOverride());
  }
  return program;
}

/** Parse argv and run; returns the process exit code. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    // a command may have set a failing exit code without throwing (e.g. a failed check it reported)
    return Number(process.exitCode ?? 0);
  } catch (e) {
    // --help / --version end with code 0; every other commander error is a bad command line
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : EXIT.usage;
    if (e instanceof SilentExit) return e.exitCode;
    const err = e instanceof UserError ? e : (systemError(e) ?? memoryError(e));
    if (err) {
      process.stderr.write(`fastkvzip: ${redact(err.message)}\n`);
      return err.exitCode;
    }
    process.stderr.write(`fastkvzip: internal error: ${redact(String((e as Error).stack ?? e))}\n`);
    return 1;
  }
}
