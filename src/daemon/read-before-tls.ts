// Reading the first bytes of a connection off its raw TCP socket before any TLS server has it:
// the PROXY protocol header (proxy/read-proxy-header.ts) and the ClientHello's server name
// (scenarios/peek-hello.ts). Bounded in time here (the caller's timeout) and in bytes by the
// caller's parser, which must decide within its bound; whoever connects may send anything or
// nothing.
//
// Afterwards the socket is paused with no listeners of ours. The caller owns it again, 'error'
// events included, and destroys it unless it hands it on.

import type net from 'node:net';

/** Room for a typical first flight (a ClientHello with post-quantum key shares is about 2 KiB) without growing. */
const INITIAL_BUFFER_BYTES = 4096;

export type ReadBeforeTlsResult<T> =
  | T
  /** `decide` did not decide within timeoutMs. */
  | { readonly kind: 'timeout' }
  /** The peer closed, ended or reset the connection before `decide` decided. */
  | { readonly kind: 'closed' };

/**
 * Reads `socket` until `decide` returns a result for the bytes read so far (it is called with all
 * of them after each chunk; undefined means "need more"), `timeoutMs` passes, or the socket
 * closes. The bytes passed to `decide` are a view of a buffer this owns: copy what must outlive
 * the call.
 */
export function readBeforeTls<T>(socket: net.Socket, timeoutMs: number, decide: (head: Buffer) => T | undefined): Promise<ReadBeforeTlsResult<T>> {
  if (!(timeoutMs > 0)) return Promise.reject(new RangeError(`readBeforeTls: timeoutMs ${timeoutMs} must be positive`));
  if (socket.destroyed || socket.readableEnded) return Promise.resolve({ kind: 'closed' });
  return new Promise((resolve) => {
    // Everything read, in one buffer that doubles as it fills: a client sending a byte at a
    // time costs a copy of each byte once or twice, not of everything so far on each chunk.
    let buffer = Buffer.alloc(0);
    let bytesRead = 0;

    const finish = (result: ReadBeforeTlsResult<T>): void => {
      clearTimeout(timer);
      socket.off('data', socketOnData);
      socket.off('end', socketOnEnd);
      socket.off('close', socketOnEnd);
      socket.off('error', socketOnEnd);
      socket.pause();
      resolve(result);
    };

    const socketOnData = (chunk: Buffer): void => {
      if (bytesRead + chunk.length > buffer.length) {
        const grown = Buffer.allocUnsafe(Math.max(bytesRead + chunk.length, 2 * buffer.length, INITIAL_BUFFER_BYTES));
        buffer.copy(grown, 0, 0, bytesRead);
        buffer = grown;
      }
      chunk.copy(buffer, bytesRead);
      bytesRead += chunk.length;
      const result = decide(buffer.subarray(0, bytesRead));
      if (result !== undefined) finish(result);
    };
    const socketOnEnd = (): void => finish({ kind: 'closed' });
    const timer = setTimeout(() => finish({ kind: 'timeout' }), timeoutMs);

    socket.on('data', socketOnData);
    socket.on('end', socketOnEnd);
    socket.on('close', socketOnEnd);
    socket.on('error', socketOnEnd);
    // A socket accepted with pauseOnConnect (as the daemon's are) doesn't start flowing on a 'data' listener alone.
    socket.resume();
  });
}
