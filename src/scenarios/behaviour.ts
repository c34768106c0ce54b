// The behaviour scenarios (issue 15) that start after a correct handshake: the scenario listener
// hands the established socket here instead of to an EchoSession. Each runs one way a server can
// misbehave once connected; every one ends in the socket's single 'close', which clears what was
// set up and calls onClose once. What a client observes for each is measured in
// test/scenarios/behaviour.test.ts.

import net from 'node:net';
import type { TLSSocket } from 'node:tls';

export const BEHAVIOURS = ['no-close-notify', 'reset-after-echo', 'close-after-handshake', 'no-echo', 'slow-echo', 'small-records'] as const;
export type Behaviour = (typeof BEHAVIOURS)[number];

export interface BehaviourOptions {
  /** slow-echo's delay before each chunk is echoed (ms). */
  readonly delayMs: number;
  /** Called once, when the socket has closed. */
  readonly onClose: () => void;
}

/** The largest TLS record small-records sends (plaintext bytes; TLS 1.3 adds 17 on the wire). */
export const SMALL_RECORD_BYTES = 512;

/** How long close-after-handshake waits for the client to answer its close_notify before destroying (ms). */
const CLOSE_GRACE_MS = 1000;

/** A server-side TLSSocket keeps the net.Socket it wraps here (an undocumented Node property, stable since v0.11). */
type WrappingSocket = TLSSocket & { _parent?: unknown };

/** Runs `behaviour` on an established server-side TLS socket; `opts.onClose` is called once when the socket has closed. */
export function runBehaviour(behaviour: Behaviour, socket: TLSSocket, opts: BehaviourOptions): void {
  let timer: NodeJS.Timeout | undefined;
  socket.on('error', function socketOnError() {
    // Clients of these scenarios reset and time out by design; any error ends the socket.
    socket.destroy();
  });
  socket.on('close', function socketOnClose() {
    clearTimeout(timer);
    timer = undefined;
    opts.onClose();
  });

  switch (behaviour) {
    case 'no-close-notify':
      // destroy() closes the TCP handle without SSL_shutdown: a FIN and no close_notify
      // (end() would send the close_notify). Only after the write callback: by then the echo is
      // in the kernel's send buffer, which close() still sends before the FIN.
      socket.once('data', (chunk: Buffer) => {
        socket.pause();
        socket.write(chunk, () => socket.destroy());
      });
      socket.on('end', () => socket.destroy());
      return;

    case 'reset-after-echo':
      socket.once('data', (chunk: Buffer) => {
        socket.pause();
        socket.write(chunk, () => resetConnection(socket));
      });
      socket.on('end', () => socket.destroy());
      return;

    case 'close-after-handshake':
      // close_notify and FIN now; keep reading (and dropping) so the client's close reaches us.
      socket.end();
      socket.resume();
      timer = setTimeout(() => socket.destroy(), CLOSE_GRACE_MS);
      return;

    case 'no-echo':
      // Nothing is ever answered; the client's close (or the listener's idle timeout) ends it.
      socket.resume();
      socket.on('end', () => socket.end());
      return;

    case 'slow-echo':
      slowEcho(socket, opts.delayMs, (t) => (timer = t));
      return;

    case 'small-records':
      // One record per write up to 16 KiB is what Node does otherwise; this caps every record,
      // including those of a single large write.
      socket.setMaxSendFragment(SMALL_RECORD_BYTES);
      echoWithBackpressure(socket);
      return;
  }
}

/**
 * A TCP RST. resetAndDestroy() throws on the TLSSocket itself (its handle is the TLS wrap, not
 * TCP); on the net.Socket it wraps it sets SO_LINGER 0 and closes, and the TLSSocket follows.
 */
function resetConnection(socket: WrappingSocket): void {
  const raw = socket._parent;
  if (!(raw instanceof net.Socket) || raw.destroyed) {
    socket.destroy();
    return;
  }
  // A raw socket already without its handle reports ERR_SOCKET_CLOSED as an error instead.
  raw.on('error', () => socket.destroy());
  raw.resetAndDestroy();
}

/** The plain echo, reads paused while writes are backed up. */
function echoWithBackpressure(socket: TLSSocket): void {
  socket.on('data', (chunk: Buffer) => {
    if (!socket.write(chunk)) socket.pause();
  });
  socket.on('drain', () => socket.resume());
  // Half-close: what was read has been written; end() flushes it before the close_notify.
  socket.on('end', () => socket.end());
}

/**
 * Each chunk echoed `delayMs` after it arrived, in order. Reads pause while a chunk waits (and
 * while writes are backed up), so at most one chunk is held: memory stays bounded.
 */
function slowEcho(socket: TLSSocket, delayMs: number, setTimer: (timer: NodeJS.Timeout | undefined) => void): void {
  let pending: Buffer | undefined;
  let ended = false;
  let writeBlocked = false;
  // A server made with allowHalfOpen false (Node's default) ends our side as soon as the client's
  // FIN is read, which would drop the chunk still waiting; 'end' below ends it after that chunk.
  socket.allowHalfOpen = true;

  const resumeIfIdle = (): void => {
    if (pending === undefined && !writeBlocked && !socket.destroyed) socket.resume();
  };
  const echoPending = (): void => {
    setTimer(undefined);
    const chunk = pending!;
    pending = undefined;
    if (socket.destroyed) return;
    if (!socket.write(chunk)) writeBlocked = true;
    if (ended) socket.end();
    else resumeIfIdle();
  };

  socket.on('data', (chunk: Buffer) => {
    // pause() stops further 'data' events at once, so a second chunk never overwrites the first.
    socket.pause();
    pending = chunk;
    setTimer(setTimeout(echoPending, delayMs));
  });
  socket.on('drain', () => {
    writeBlocked = false;
    resumeIfIdle();
  });
  socket.on('end', () => {
    ended = true;
    if (pending === undefined) socket.end();
  });
}
