// Reads a connection's ClientHello off its raw TCP socket, before any TLS server has it, so
// that its server name can pick the tls.Server that will. Bounded in bytes (the parser's
// bound) and in time (the caller's): daemon/read-before-tls.ts reads, client-hello.ts parses.
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
import { readBeforeTls } from '../daemon/read-before-tls';
import { CLIENT_HELLO_MAX_BYTES, parseClientHello } from './client-hello';

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
  // One chunk (at most 64 KiB from net) may take the bytes read past maxBytes; the parser looks no further.
  return readBeforeTls<PeekResult>(socket, opts.timeoutMs, (head) => {
    const result = parseClientHello(head, maxBytes);
    if (result.kind === 'hello') return { kind: 'hello', serverName: result.serverName, head };
    if (result.kind === 'invalid') return { kind: 'invalid', why: result.why, head };
    return undefined;
  });
}
