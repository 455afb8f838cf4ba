// One request, one reply, with a worker thread: the pattern both the shard writers and the
// context runners use (each worker handles one message at a time).
import type { Worker } from 'node:worker_threads';

/** Posts `msg` (moving `transfer`'s buffers, not copying them) and resolves with the worker's next message. */
export function request<T>(worker: Worker, msg: unknown, transfer: ArrayBuffer[] = []): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (reply: T) => {
      worker.off('error', onError);
      resolve(reply);
    };
    const onError = (e: Error) => {
      worker.off('message', onMessage);
      reject(e);
    };
    worker.once('message', onMessage);
    worker.once('error', onError);
    worker.postMessage(msg, transfer);
  });
}

/** The distinct buffers under some typed arrays: a postMessage transfer list. */
export function buffersOf(arrays: ArrayBufferView[]): ArrayBuffer[] {
  return [...new Set(arrays.map((a) => a.buffer as ArrayBuffer))];
}
