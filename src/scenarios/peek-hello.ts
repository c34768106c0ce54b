// Reads a connection's ClientHello off its raw TCP socket, before any TLS server has it, so
// that its server name can pick the tls.Server that will. Bounded in bytes (the parser's
// bound) and in time (the caller's), since anyone can connect and send anything or nothing.
//
// Handing over afterwards: the socket comes back paused with no listeners of ours, and `head`
// holds every byte read, the hello and anything sent after it. Put them back and give the
// socket to a tls.Server that never listens:
//
//   socket.unshift(head);
//   tlsServer.emit('connection', socket);
//
// That works because the TLSSocket takes over the net.Socket's handle and, on its first read,
// feeds it whatever the net.Socket has buffered (Node's initRead: `socket.readableLength`,
// then `socket.read()` into the TLS engine) before reading the handle itself. Only a
// net.Socket will do: the inline server's HandleSocket has nothing to read or put back.

import type net from 'node:net';
import { CLIENT_HELLO_MAX_BYTES, parseClientHello } from './client-hello';

/** Room for a typical hello (about 2 KiB with post-quantum key shares) without growing. */
const INITIAL_BUFFER_BYTES = 4096;

export interface ReadClientHelloOptions {
  /** Most bytes read for the hello (default and ceiling CLIENT_HELLO_MAX_BYTES). */
  readonly maxBytes?: number;
  /** How long the whole hello may take to arrive (ms), from the call. */
  readonly timeoutMs: number;
}

export type PeekResult =
  | { readonly kind: 'hello'; readonly serverName: string | undefined; readonly head: Buffer }
  | { readonly kind: 'invalid'; readonly why: string; readonly head: Buffer }
  /** Nothing decided within timeoutMs. */
  | { readonly kind: 'timeout' }
  /** The client closed, ended or reset the connection before the hello was complete. */
  | { readonly kind: 'closed' };

/**
 * Reads from `socket` until its ClientHello is complete or refused, `timeoutMs` passes, or it
 * closes. Afterwards the socket is paused and every listener this added is gone: the caller
 * owns it again, 'error' events included, and destroys it unless it hands it on.
 */
export function readClientHello(socket: net.Socket, opts: ReadClientHelloOptions): Promise<PeekResult> {
  const maxBytes = Math.min(opts.maxBytes ?? CLIENT_HELLO_MAX_BYTES, CLIENT_HELLO_MAX_BYTES);
  if (!(maxBytes > 0) || !(opts.timeoutMs > 0)) {
    return Promise.reject(new RangeError(`readClientHello: maxBytes ${opts.maxBytes} and timeoutMs ${opts.timeoutMs} must be positive`));
  }
  if (socket.destroyed || socket.readableEnded) return Promise.resolve({ kind: 'closed' });
  return new Promise((resolve) => {
    // Everything read, in one buffer that doubles as it fills: a client sending a byte at a
    // time costs a copy of each byte once or twice, not of everything so far on each chunk.
    let buffer = Buffer.alloc(0);
    let bytesRead = 0;

    const finish = (result: PeekResult): void => {
      clearTimeout(timer);
      socket.off('data', socketOnData);
      socket.off('end', socketOnEnd);
      socket.off('close', socketOnEnd);
      socket.off('error', socketOnError);
      socket.pause();
      resolve(result);
    };

    const socketOnData = (chunk: Buffer): void => {
      // One chunk (at most 64 KiB from net) may take us past maxBytes; the parser looks no further.
      if (bytesRead + chunk.length > buffer.length) {
        const grown = Buffer.allocUnsafe(Math.max(bytesRead + chunk.length, 2 * buffer.length, INITIAL_BUFFER_BYTES));
        buffer.copy(grown, 0, 0, bytesRead);
        buffer = grown;
      }
      chunk.copy(buffer, bytesRead);
      bytesRead += chunk.length;
      const head = buffer.subarray(0, bytesRead);
      const result = parseClientHello(head, maxBytes);
      if (result.kind === 'hello') finish({ kind: 'hello', serverName: result.serverName, head });
      else if (result.kind === 'invalid') finish({ kind: 'invalid', why: result.why, head });
    };
    const socketOnEnd = (): void => finish({ kind: 'closed' });
    const socketOnError = (): void => finish({ kind: 'closed' });
    const timer = setTimeout(() => finish({ kind: 'timeout' }), opts.timeoutMs);

    socket.on('data', socketOnData);
    socket.on('end', socketOnEnd);
    socket.on('close', socketOnEnd);
    socket.on('error', socketOnError);
    // A socket accepted with pauseOnConnect (as the daemon's are) doesn't start flowing on a 'data' listener alone.
    socket.resume();
  });
}
