// Reads a connection's PROXY protocol header off its raw TCP socket, before any TLS server has
// it. Bounded in bytes (the parser gives up past its bounds: 107 bytes for v1, 2 KiB for v2) and
// in time (the caller's), since whoever connects may send anything or nothing.
//
// Read by daemon/read-before-tls.ts, as the ClientHello is. Afterwards the socket is paused with no
// listeners of ours, and `rest` holds the bytes read past the header in the chunk that completed
// it (often the start of the ClientHello, sent in the same TCP segment). Put them back before
// handing the socket on in this process:
//
//   socket.unshift(rest);
//   tlsServer.emit('connection', socket);
//
// A socket sent to another process needs more care: pause() only stops 'data' events, and Node
// keeps reading the handle into the socket's buffer (a stream reads ahead, up to its high-water
// mark, even paused), which stays behind when the handle goes. So in the same turn as the send,
// takeBuffered() stops the handle and returns that buffer: send `rest` and it along, and unshift
// them there. The kernel keeps anything later for whoever reads the descriptor next.

import type net from 'node:net';
import { readBeforeTls } from '../daemon/read-before-tls';
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
  // The parser decides within 2 KiB, so at most that plus one chunk is held.
  return readBeforeTls<ReadProxyHeaderResult>(socket, timeoutMs, (head) => {
    const result = parseProxyHeader(head);
    if (result.kind === 'need-more') return undefined;
    if (result.kind === 'invalid') return result;
    const { version, command, client, headerLength } = result;
    // A copy: the reader's buffer is not ours to keep, and the rest may wait a while to be read.
    const rest = head.length > headerLength ? Buffer.from(head.subarray(headerLength)) : EMPTY;
    return { kind: 'header', header: { version, command, client }, rest };
  });
}

/**
 * Stops `socket`'s handle reading and returns what the socket has buffered (empty if nothing),
 * in one turn: call it right before the socket is sent to another process, in the same turn as
 * the send. Leans on Node's net internals: `_handle.reading` and `readStop()`, the pair
 * net.Socket itself uses when its buffer is full (a later read() would start the handle again,
 * which is why it must be the same turn: the stream's read-ahead runs on the next tick).
 */
export function takeBuffered(socket: net.Socket): Buffer {
  const buffered = socket.readableLength > 0 ? (socket.read() as Buffer | null) : null;
  const handle = (socket as unknown as { _handle?: { reading?: boolean; readStop?: () => number } | null })._handle;
  if (handle?.reading === true && typeof handle.readStop === 'function') {
    handle.reading = false;
    handle.readStop();
  }
  return buffered ?? EMPTY;
}
