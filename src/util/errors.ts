/** An error the user can fix: printed as one line (no stack), exit code 2. */
export class UserError extends Error {
  constructor(message: string, readonly exitCode = 2) {
    super(message);
    this.name = 'UserError';
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
