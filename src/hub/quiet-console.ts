// downloadFileToCacheDir announces each download with console.debug, which goes to stdout;
// stdout belongs to the command's real output, so those lines are muted while it runs.
let depth = 0;
let saved: { debug: typeof console.debug; info: typeof console.info } | null = null;

export async function withQuietConsole<T>(fn: () => Promise<T>): Promise<T> {
  if (depth++ === 0) {
    saved = { debug: console.debug, info: console.info };
    console.debug = () => {};
    console.info = () => {};
  }
  try {
    return await fn();
  } finally {
    if (--depth === 0 && saved) {
      console.debug = saved.debug;
      console.info = saved.info;
      saved = null;
    }
  }
}
