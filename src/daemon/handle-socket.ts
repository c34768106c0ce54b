// Accepted connections as bare TCP handles, for the inline server (--workers 0).
//
// A net.Server makes a full net.Socket (a Duplex stream with both of its states, timers,
// listeners) for every connection it accepts, and tls.Server then makes a second one, the
// TLSSocket, which takes the first one's handle and does all the reading and writing. The first
// socket only ever waits for its handle to close. Here the supervisor takes the accepted handle
// straight from the listener and gives tls.Server a HandleSocket instead: the few fields and
// the close path that Node's TLSSocket uses of the socket it wraps, and nothing else. At full
// ECDSA handshake load that was about 10 % more handshakes per second on this machine
// (docs/benchmark.md, "Eighth pass").
//
// This leans on Node internals, each checked where it is used or covered by the tests that run
// the inline server (every behavioural test does):
//   - net.Server's listening handle calls `onconnection(status, clientHandle)`; acceptHandles()
//     only installs itself when that hook is there, and the listener falls back to ordinary
//     'connection' events otherwise;
//   - the client handle (Node's TCPWrap) has getpeername(), setNoDelay(), reset() and close();
//   - TLSSocket takes over `_handle` of a socket that is `instanceof net.Socket`, reads its
//     `allowHalfOpen`, `connecting`, `readableLength` and `writableLength`, walks `_parent`
//     to refresh timeouts, listens for its 'close', and, to close, calls its destroy() and
//     waits for that 'close' unless `_handle` is already null.
// Worker processes keep receiving ordinary sockets: a HandleSocket can't cross Node's IPC.

import { EventEmitter } from 'node:events';
import net from 'node:net';
import { getSystemErrorName } from 'node:util';

/** The calls made on the handle of an accepted TCP connection (Node's internal TCPWrap). */
interface TcpHandle {
  getpeername(out: { address?: string; port?: number }): number;
  setNoDelay(enable: boolean): number;
  /** Closes with a reset (SO_LINGER 0): returns a libuv error code, nonzero if it could not. */
  reset(callback: () => void): number;
  close(callback: () => void): void;
}

/** What net.Server's listening handle calls for each accepted connection, or a failed accept. */
type OnConnection = (status: number, clientHandle: TcpHandle | undefined) => void;

/**
 * The raw socket of a connection before TLS: what the supervisor admits, queues and hands over.
 * With workers, a net.Socket (it crosses IPC); inline, a HandleSocket where acceptHandles() applies.
 */
export type RawSocket = net.Socket | HandleSocket;

/**
 * An accepted connection's handle with what Node's TLSSocket needs of the socket it wraps.
 * Not a stream: nothing reads or writes it but the TLSSocket, through the handle.
 */
export class HandleSocket extends EventEmitter {
  /** Read (and taken over) by TLSSocket; null once closed, which TLSSocket also checks. */
  _handle: TcpHandle | null;

  constructor(
    handle: TcpHandle,
    private readonly peerAddress: string,
    private readonly peerPort: number,
  ) {
    super();
    this._handle = handle;
  }

  // Accessors rather than fields: net.Socket.prototype, which this inherits (below), defines
  // them as getters, and a field could not be assigned over a getter.
  get remoteAddress(): string {
    return this.peerAddress;
  }

  get remotePort(): number {
    return this.peerPort;
  }

  get destroyed(): boolean {
    return this._handle === null;
  }

  /** As net.Server's own sockets (the default); the TLSSocket copies it. */
  get allowHalfOpen(): boolean {
    return false;
  }

  get connecting(): boolean {
    return false;
  }

  /** Nothing was ever read or written here: there is nothing buffered to hand over. */
  get readableLength(): number {
    return 0;
  }

  get writableLength(): number {
    return 0;
  }

  /** The end of the chain TLSSocket walks to refresh timeouts. */
  get _parent(): null {
    return null;
  }

  /** Closes the connection; 'close' follows once the handle is closed. Safe to call twice. */
  destroy(): this {
    const handle = this._handle;
    if (handle === null) return this;
    this._handle = null;
    handle.close(() => this.emit('close', false));
    return this;
  }

  /** Closes with a TCP reset (a refusal); 'close' follows. Safe to call twice. */
  resetAndDestroy(): this {
    const handle = this._handle;
    if (handle === null) return this;
    this._handle = null;
    const closed = (): void => void this.emit('close', false);
    if (handle.reset(closed) !== 0) handle.close(closed);
    return this;
  }
}
// Instances pass TLSSocket's `instanceof net.Socket`, which decides that it takes over the handle
// (anything else it would wrap as a JavaScript stream). The constructor stays EventEmitter's.
Object.setPrototypeOf(HandleSocket.prototype, net.Socket.prototype);

/**
 * Makes `server` (listening on TCP) pass each accepted connection to `onSocket` as a HandleSocket,
 * with its peer address and TCP_NODELAY set, instead of emitting 'connection' with a net.Socket.
 * A connection gone before its address could be read is closed and not passed on; a failed
 * accept (EMFILE, say) goes to `onError`. Returns false, changing nothing, where this Node or
 * this listener doesn't have the hook: the server's 'connection' listener keeps serving then.
 * Call from the 'listening' callback: no connection can have been accepted before it runs.
 */
export function acceptHandles(server: net.Server, onSocket: (socket: HandleSocket) => void, onError: (err: Error) => void): boolean {
  const listening = (server as unknown as { _handle?: { onconnection?: unknown } | null })._handle;
  if (listening === null || listening === undefined || typeof listening.onconnection !== 'function') return false;
  // A Unix socket (systemd may hand over one) has no peer address to admit by.
  if (typeof server.address() !== 'object') return false;
  const onConnection: OnConnection = (status, clientHandle) => {
    if (status < 0 || clientHandle === undefined) {
      onError(new Error(`accept failed: ${status < 0 ? getSystemErrorName(status) : 'no handle'}`));
      return;
    }
    const peer: { address?: string; port?: number } = {};
    if (clientHandle.getpeername(peer) !== 0 || peer.address === undefined) {
      // Reset in the accept backlog: nothing to admit or account for.
      clientHandle.close(() => {});
      return;
    }
    clientHandle.setNoDelay(true);
    onSocket(new HandleSocket(clientHandle, peer.address, peer.port ?? 0));
  };
  listening.onconnection = onConnection;
  return true;
}
