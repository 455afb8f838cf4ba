// The exit-code convention, shown at the end of every --help (README "Exit codes").
export const EXIT_CODES_HELP =
  '\nExit codes: 0 success, 1 runtime failure (bad input file, I/O, diverged training), 2 invalid command line (unknown flag, bad flag or --set value), 130 interrupted.';
