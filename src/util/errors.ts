/**
 * Exit codes (README "Exit codes"): 0 success; 1 a runtime failure (bad input files, I/O,
 * diverged training, ...); 2 an invalid command line (unknown flag, missing or bad flag value,
 * bad config key); 130 interrupted (SIGINT).
 */
export const EXIT = { failure: 1, usage: 2, interrupted: 130 } as const;

/** An error the user can fix: printed as one line (no stack), exit code 1 unless given. */
export class UserError extends Error {
  constructor(message: string, readonly exitCode: number = EXIT.failure) {
    super(message);
    this.name = 'UserError';
  }
}

/** An invalid command line (a flag value, a missing flag, a config key): exit code 2. */
export class UsageError extends UserError {
  constructor(message: string) {
    super(message, EXIT.usage);
    this.name = 'UsageError';
  }
}

/** Ends a command with this exit code and nothing printed (the output came from elsewhere, e.g. a re-run). */
export class SilentExit extends Error {
  constructor(readonly exitCode: number) {
    super(`exit ${exitCode}`);
    this.name = 'SilentExit';
  }
}

/** `file: problem` — the shape every bad-input message takes. */
export function fileError(file: string, problem: string): UserError {
  return new UserError(`${file}: ${problem}`);
}
