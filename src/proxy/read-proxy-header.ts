// Reads a connection's PROXY protocol header off its raw TCP socket, before any TLS server has
// it. Bounded in bytes (the parser gives up past its bounds: 107 bytes for v1, 2 KiB for v2) and
// in time (the caller's), since whoever connects may send anything or nothing.
//
// The same technique as scenarios/peek-hello.ts. Afterwards the socket is paused with no
// listeners of ours and its handle no longer reading, and `rest` holds every byte read past the
// header (often the start of the ClientHello, sent in the same TCP segment). Put them back
// before handing the socket on:
//
//   socket.unshift(rest);
//   tlsServer.emit('connection', socket);
//
// or send them along when the socket goes to another process, and unshift them there.
//
// Why the handle stops: pause() only stops 'data' events; Node keeps reading the handle into the
// socket's buffer until that is full, and a socket sent to a worker process leaves its buffer
// behind. With the handle stopped, nothing past `rest` is read here: the kernel keeps it for
// whoever reads the descriptor next. (It leans on Node's net internals: `_handle.reading` and
// `readStop()`, the pair net.Socket itself uses when its buffer is full; a later read() starts
// the handle again.)

import type net from 'node:net';
import { parseProxyHeader, type ProxyClient } from './proxy-header';

export interface ProxyHeader {
  readonly version: 1 | 2;
  readonly command: 'proxy' | 'local';
  /** The client the header names; undefined when the connection's own peer is the client (LOCAL, UNKNOWN, UNSPEC). */
  readonly client: ProxyClient | undefined;
}

export type ReadProxyHeaderResult =
  | { readonly kind: 'header'; readonly header: ProxyHeader; readonly rest: Buffer }
  | { readonly kind: 'invalid'; readonly why: string }
  /** No complete header within timeoutMs. */
  | { readonly kind: 'timeout' }
  /** The peer closed, ended or reset the connection before the header was complete. */
  | { readonly kind: 'closed' };

const EMPTY = Buffer.alloc(0);

/**
 * Reads from `socket` until its PROXY header is complete or refused, `timeoutMs` (ms, from the
 * call) passes, or it closes. Afterwards the socket is paused and every listener this added is
 * gone: the caller owns it again, 'error' events included, and destroys it unless it hands it on.
 */
export function readProxyHeader(socket: net.Socket, timeoutMs: number): Promise<ReadProxyHeaderResult> {
  if (!(timeoutMs > 0)) return Promise.reject(new RangeError(`readProxyHeader: timeoutMs ${timeoutMs} must be positive`));
  if (socket.destroyed || socket.readableEnded) return Promise.resolve({ kind: 'closed' });
  return new Promise((resolve) => {
    // The parser decides within 2 KiB, so this holds at most that plus one chunk.
    let buffer: Buffer = EMPTY;

    const stop = (): void => {
      clearTimeout(timer);
      socket.off('data', socketOnData);
      socket.off('end', socketOnEnd);
      socket.off('close', socketOnEnd);
      socket.off('error', socketOnEnd);
      socket.pause();
    };
    const finish = (result: ReadProxyHeaderResult): void => {
      stop();
      resolve(result);
    };

    // Chunks read but not yet emitted (pausing in a 'data' handler can leave some), then the
    // handle stopped, in one turn: nothing can arrive in between.
    const takeRest = (after: Buffer): Buffer => {
      const buffered = socket.readableLength > 0 ? (socket.read() as Buffer | null) : null;
      stopReading(socket);
      if (buffered === null) return after.length === 0 ? EMPTY : Buffer.from(after);
      return Buffer.concat([after, buffered]);
    };

    const socketOnData = (chunk: Buffer): void => {
      // Usually the whole header comes in the first chunk: no copy then.
      buffer = buffer.length === 0 ? chunk : Buffer.concat([buffer, chunk]);
      const result = parseProxyHeader(buffer);
      if (result.kind === 'need-more') return;
      if (result.kind === 'invalid') {
        finish(result);
        return;
      }
      const { version, command, client, headerLength } = result;
      stop();
      // A copy: the rest may be a slice of a pooled chunk, and it may wait a while to be read.
      resolve({ kind: 'header', header: { version, command, client }, rest: takeRest(buffer.subarray(headerLength)) });
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

/** Stops `socket`'s handle reading, as net.Socket does when its buffer is full (see the top of this file). */
function stopReading(socket: net.Socket): void {
  const handle = (socket as unknown as { _handle?: { reading?: boolean; readStop?: () => number } | null })._handle;
  if (handle?.reading !== true || typeof handle.readStop !== 'function') return;
  handle.reading = false;
  handle.readStop();
}
