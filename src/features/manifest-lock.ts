// Shard writers record their shard in manifest.json themselves, from worker threads, as soon as
// the shard is on disk: the main thread may sit for minutes in an ONNX Runtime run, and a shard
// recorded only after that run returns is lost (extracted again) if the process is killed in
// between. Read-modify-write of the manifest by several threads of one process is serialized by
// this lock over a SharedArrayBuffer (other processes are kept out by the store's lock file).
// Waiting is asynchronous (Atomics.waitAsync), so a thread never blocks on a holder that runs
// on its own event loop.

// Node has Atomics.waitAsync (V8 >= 8.7); TypeScript types it from lib es2024 on only.
type WaitAsync = (word: Int32Array, index: number, value: number) => { async: boolean; value: Promise<string> | string };
const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync;

/** A lock word shared by every thread that writes one store's manifest (0 free, 1 held). */
export function newManifestLock(): SharedArrayBuffer {
  return new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT);
}

/** Runs `fn` holding the lock. */
export async function withManifestLock<T>(lock: SharedArrayBuffer, fn: () => Promise<T>): Promise<T> {
  const word = new Int32Array(lock);
  while (Atomics.compareExchange(word, 0, 0, 1) !== 0) {
    const wait = waitAsync(word, 0, 1);
    if (wait.async) await wait.value;
  }
  try {
    return await fn();
  } finally {
    Atomics.store(word, 0, 0);
    Atomics.notify(word, 0, 1);
  }
}
