// The load generator's connection drivers, one per mode: each keeps at most one connection
// open, runs the mode's operation on it (a handshake, a ping-pong message, a stream window, an
// idle hold), verifies every echoed byte, and reports operations and errors to its run.

import { randomFillSync } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type * as tls from 'node:tls';
import { systemErrorCode } from '../errors';
import { refusalByAlert, serverRequestedCertificate } from './client-cert-refusal';
import type { ResolvedLoadOptions } from './load-options';

/** After a failed connection, wait this long before the next attempt so a dead server isn't spun on (ms). */
const RETRY_DELAY_MS = 10;
/** Stream mode pattern: a fixed pseudo-random block, repeated (grown to --size when larger). */
export const PATTERN_BYTES = 64 * 1024;
/** Stream mode: unechoed bytes allowed per connection, between these bounds (scaled from --size). */
const MIN_STREAM_WINDOW_BYTES = 64 * 1024;
const MAX_STREAM_WINDOW_BYTES = 4 * 1024 * 1024;
/** Stream mode: unechoed writes allowed per connection (bounds the timestamp ring). */
const MAX_STREAM_PENDING_WRITES = 4096;

/** What a driver needs from the run it belongs to (one process's share of the load). */
export interface DriverRun {
  readonly opts: ResolvedLoadOptions;
  /** The run is ending: no new connections or operations. */
  readonly stopping: boolean;
  /** Stream mode: the pseudo-random bytes every connection writes and checks. */
  readonly pattern: Buffer;
  /** Idle mode: connections that echoed once and are held. */
  established: number;
  /** Idle mode: held connections that still echoed at the check. */
  stillAlive: number;
  /** Opens a connection with the run's shared TLS options. */
  connect(): tls.TLSSocket;
  recordOp(startedAt: number, endedAt: number, bytes: number): void;
  noteError(kind: string, message: string): void;
  /** A timer the run owns (cleared when it stops). */
  later(fn: () => void, ms: number): void;
}

/** What the run's watchdog and shutdown see of a driver. */
export interface LoadWorker {
  /** performance.now() when the current connect or echo began; 0 when nothing is in flight. */
  opStartedAt: number;
  onTimeout(): void;
  /** The run is ending: close the connection now if idle, else after the current operation. */
  drain(): void;
}

/**
 * A worker with at most one connection at a time. Subclasses say what happens once it is
 * secure and when data arrives; this class owns connecting, failure, reconnecting and closing.
 */
export abstract class PersistentWorker implements LoadWorker {
  opStartedAt = 0;
  protected socket: tls.TLSSocket | undefined;
  protected connected = false;
  private openSettle: (() => void) | undefined;

  constructor(
    protected readonly run: DriverRun,
    private readonly reconnects: boolean,
  ) {}

  /** Connects; resolves once the first attempt has succeeded (as the subclass defines) or failed. */
  open(): Promise<void> {
    return new Promise((resolve) => {
      this.openSettle = resolve;
      this.connect();
    });
  }

  protected readonly connect = (): void => {
    if (this.run.stopping) {
      this.settleOpen();
      return;
    }
    this.onConnecting();
    const socket = this.run.connect();
    this.socket = socket;
    this.connected = false;
    this.opStartedAt = performance.now();
    socket.on('secureConnect', () => {
      if (socket !== this.socket) return;
      this.connected = true;
      this.onSecure();
    });
    socket.on('data', (chunk: Buffer) => {
      if (socket === this.socket) this.onData(chunk);
    });
    socket.on('error', (err: Error) => this.fail(socket, errorKind(err), errorMessage(socket, err, this.run.opts)));
    socket.on('close', () => this.fail(socket, 'CLOSED', 'the server closed the connection'));
  };

  protected settleOpen(): void {
    const settle = this.openSettle;
    this.openSettle = undefined;
    settle?.();
  }

  /** Counts an error, drops the connection and (unless the run is ending) reconnects shortly. */
  protected fail(socket: tls.TLSSocket, kind: string, message: string): void {
    if (socket !== this.socket) return;
    this.socket = undefined;
    this.connected = false;
    this.opStartedAt = 0;
    socket.destroy();
    if (!this.run.stopping) {
      this.run.noteError(kind, message);
      this.onLost();
      if (this.reconnects) this.run.later(this.connect, RETRY_DELAY_MS);
    }
    this.settleOpen();
  }

  /** Ends the connection politely (close_notify, FIN) and forgets it. */
  protected close(): void {
    const socket = this.socket;
    if (socket === undefined) return;
    this.socket = undefined;
    this.connected = false;
    this.opStartedAt = 0;
    socket.end();
  }

  onTimeout(): void {
    if (this.socket !== undefined) {
      this.fail(this.socket, 'TIMEOUT', `no answer within ${this.run.opts.timeoutMs} ms (${this.connected ? 'echo' : 'connect and handshake'})`);
    }
  }

  drain(): void {
    if (this.socket === undefined) return;
    if (!this.connected) {
      const socket = this.socket;
      this.socket = undefined;
      this.opStartedAt = 0;
      socket.destroy();
      this.settleOpen();
    } else if (this.opStartedAt === 0) {
      this.close();
    }
  }

  /**
   * Checks an echoed chunk against `message` from offset `received` while an echo is in
   * flight. Returns the new count of bytes received, or -1 after reporting a mismatch.
   */
  protected verifyEcho(message: Buffer, received: number, chunk: Buffer): number {
    if (this.opStartedAt === 0) {
      this.mismatch(0, 'data nobody asked for (nothing was in flight)');
      return -1;
    }
    if (!verifyAt(message, received, chunk)) {
      this.mismatch(firstDifference(message, received, chunk));
      return -1;
    }
    return received + chunk.length;
  }

  protected mismatch(offset: number, of = 'a message'): void {
    if (this.socket !== undefined) this.fail(this.socket, 'ECHO_MISMATCH', `echo mismatch at byte ${offset} of ${of}`);
  }

  protected abstract onSecure(): void;
  protected abstract onData(chunk: Buffer): void;
  /** Before each connection attempt. */
  protected onConnecting(): void {}
  /** After a counted failure dropped the connection. */
  protected onLost(): void {}
}

/** Handshake mode: connect, full handshake, one echo of sizeBytes, close; repeat. */
export class HandshakeWorker extends PersistentWorker {
  private readonly message: Buffer;
  private received = 0;
  private sequence = 0;

  constructor(run: DriverRun) {
    super(run, true);
    this.message = makeMessage(run.opts.sizeBytes);
  }

  start(): void {
    this.connect();
  }

  protected override onConnecting(): void {
    stamp(this.message, ++this.sequence);
    this.received = 0;
  }

  protected onSecure(): void {
    if (this.message.length === 0) {
      this.complete();
      return;
    }
    this.socket!.write(this.message);
  }

  protected onData(chunk: Buffer): void {
    if (!verifyAt(this.message, this.received, chunk)) {
      this.mismatch(firstDifference(this.message, this.received, chunk));
      return;
    }
    this.received += chunk.length;
    if (this.received === this.message.length) this.complete();
  }

  private complete(): void {
    this.run.recordOp(this.opStartedAt, performance.now(), this.message.length);
    this.close();
    if (!this.run.stopping) this.connect();
  }
}

/** Pingpong mode: one long-lived connection, one message in flight, the next sent when its echo is complete. */
export class PingpongWorker extends PersistentWorker {
  private readonly message: Buffer;
  private received = 0;
  private sequence = 0;
  private running = false;

  constructor(run: DriverRun) {
    super(run, true);
    this.message = makeMessage(run.opts.sizeBytes);
  }

  start(): void {
    this.running = true;
    if (this.connected) this.send();
  }

  protected onSecure(): void {
    this.opStartedAt = 0;
    this.settleOpen();
    if (this.running) this.send();
  }

  private send(): void {
    if (this.run.stopping) {
      this.close();
      return;
    }
    stamp(this.message, ++this.sequence);
    this.received = 0;
    this.opStartedAt = performance.now();
    this.socket!.write(this.message);
  }

  protected onData(chunk: Buffer): void {
    const received = this.verifyEcho(this.message, this.received, chunk);
    if (received < 0) return;
    this.received = received;
    if (this.received === this.message.length) {
      this.run.recordOp(this.opStartedAt, performance.now(), this.message.length);
      this.opStartedAt = 0;
      this.send();
    }
  }
}

/**
 * Stream mode: writes sizeBytes slices of the shared pattern while fewer than `window` bytes are
 * unechoed, and checks the echo against the pattern at a running offset. An operation is one
 * write's bytes coming back in full; its latency is measured from the write.
 */
export class StreamWorker extends PersistentWorker {
  private readonly window: number;
  private readonly startOffset: number;
  private sent = 0;
  private received = 0;
  private running = false;
  /** Ring of pending writes: end offset and time written. */
  private readonly ringEnds: Float64Array;
  private readonly ringTimes: Float64Array;
  private ringHead = 0;
  private ringSize = 0;
  /** Stream offset where the last fully echoed write ended. */
  private completedEnd = 0;

  constructor(run: DriverRun, index: number) {
    super(run, true);
    const size = run.opts.sizeBytes;
    this.window = Math.min(MAX_STREAM_WINDOW_BYTES, Math.max(MIN_STREAM_WINDOW_BYTES, size * 16));
    // Connections start at different places in the pattern, so crossed streams don't verify.
    this.startOffset = (index * 7919) % PATTERN_BYTES;
    const capacity = Math.min(MAX_STREAM_PENDING_WRITES, Math.ceil(this.window / size) + Math.ceil(this.window / PATTERN_BYTES) + 2);
    this.ringEnds = new Float64Array(capacity);
    this.ringTimes = new Float64Array(capacity);
  }

  start(): void {
    this.running = true;
    if (this.connected) this.pump();
  }

  protected onSecure(): void {
    this.opStartedAt = 0;
    this.sent = 0;
    this.received = 0;
    this.ringHead = 0;
    this.ringSize = 0;
    this.completedEnd = 0;
    this.settleOpen();
    if (this.running) this.pump();
  }

  private pump(): void {
    const pattern = this.run.pattern;
    const size = this.run.opts.sizeBytes;
    const capacity = this.ringEnds.length;
    const socket = this.socket!;
    while (!this.run.stopping && this.sent - this.received < this.window && this.ringSize < capacity) {
      const pos = (this.startOffset + this.sent) % pattern.length;
      const end = Math.min(pos + size, pattern.length);
      socket.write(pattern.subarray(pos, end));
      this.sent += end - pos;
      const slot = (this.ringHead + this.ringSize) % capacity;
      this.ringEnds[slot] = this.sent;
      this.ringTimes[slot] = performance.now();
      this.ringSize++;
    }
    if (this.ringSize > 0) this.opStartedAt = this.ringTimes[this.ringHead]!;
  }

  protected onData(chunk: Buffer): void {
    const pattern = this.run.pattern;
    const n = chunk.length;
    if (this.received + n > this.sent) {
      this.mismatch(this.sent, 'the stream (more bytes came back than were sent)');
      return;
    }
    let pos = (this.startOffset + this.received) % pattern.length;
    for (let k = 0; k < n; ) {
      const m = Math.min(n - k, pattern.length - pos);
      if (pattern.compare(chunk, k, k + m, pos, pos + m) !== 0) {
        this.mismatch(this.received + k + firstDifference(pattern, pos, chunk.subarray(k, k + m)) - pos, 'the stream');
        return;
      }
      k += m;
      pos = 0;
    }
    this.received += n;
    const now = performance.now();
    const capacity = this.ringEnds.length;
    while (this.ringSize > 0 && this.ringEnds[this.ringHead]! <= this.received) {
      const end = this.ringEnds[this.ringHead]!;
      this.run.recordOp(this.ringTimes[this.ringHead]!, now, end - this.completedEnd);
      this.completedEnd = end;
      this.ringHead = (this.ringHead + 1) % capacity;
      this.ringSize--;
    }
    this.opStartedAt = this.ringSize > 0 ? this.ringTimes[this.ringHead]! : 0;
    if (this.run.stopping) {
      if (this.received === this.sent) this.close();
    } else {
      this.pump();
    }
  }
}

/** Idle mode: open, echo once, hold without traffic, then check it still echoes. */
export class IdleWorker extends PersistentWorker {
  private readonly message: Buffer;
  private received = 0;
  private sequence = 0;
  private startedAt = 0;
  private held = false;
  private checkSettle: (() => void) | undefined;

  constructor(run: DriverRun) {
    super(run, false);
    this.message = makeMessage(Math.max(1, run.opts.sizeBytes));
  }

  protected onSecure(): void {
    this.send();
  }

  private send(): void {
    stamp(this.message, ++this.sequence);
    this.received = 0;
    this.startedAt = this.opStartedAt === 0 ? performance.now() : this.opStartedAt;
    this.opStartedAt = this.startedAt;
    this.socket!.write(this.message);
  }

  /** Echoes once more on a held connection; resolves when done or failed. */
  check(): Promise<void> {
    if (!this.held || this.socket === undefined || this.run.stopping) return Promise.resolve();
    return new Promise((resolve) => {
      this.checkSettle = resolve;
      this.opStartedAt = 0;
      this.send();
    });
  }

  protected onData(chunk: Buffer): void {
    const received = this.verifyEcho(this.message, this.received, chunk);
    if (received < 0) return;
    this.received = received;
    if (this.received < this.message.length) return;
    this.opStartedAt = 0;
    if (!this.held) {
      this.held = true;
      this.run.established++;
      this.run.recordOp(this.startedAt, performance.now(), this.message.length);
      this.settleOpen();
    } else {
      this.run.stillAlive++;
      this.close();
      this.settleCheck();
    }
  }

  protected override onLost(): void {
    this.held = false;
    this.settleCheck();
  }

  override drain(): void {
    super.drain();
    this.settleCheck();
  }

  private settleCheck(): void {
    const settle = this.checkSettle;
    this.checkSettle = undefined;
    settle?.();
  }
}

export function errorKind(err: unknown): string {
  return systemErrorCode(err) ?? 'ERROR';
}

/** The error's message; for a server's alert about the client certificate, what it likely means. */
function errorMessage(socket: tls.TLSSocket, err: Error, opts: ResolvedLoadOptions): string {
  const code = systemErrorCode(err);
  if (code === undefined || !code.startsWith('ERR_SSL_')) return err.message;
  const requested = serverRequestedCertificate(socket);
  const sent = requested === false ? null : (opts.clientCert?.name ?? null);
  return refusalByAlert(code, requested, sent) ?? err.message;
}

/** Offset in `expected` of the first byte of `chunk` (placed at `offset`) that differs, or the end of `expected`. */
function firstDifference(expected: Buffer, offset: number, chunk: Buffer): number {
  let i = 0;
  while (i < chunk.length && offset + i < expected.length && chunk[i] === expected[offset + i]) i++;
  return offset + i;
}

/** Compares `chunk` with `expected` at `offset`; false when it differs or runs past the end. */
function verifyAt(expected: Buffer, offset: number, chunk: Buffer): boolean {
  const n = chunk.length;
  return offset + n <= expected.length && expected.compare(chunk, 0, n, offset, offset + n) === 0;
}

function makeMessage(size: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  randomFillSync(b);
  return b;
}

/** Puts a sequence number in the first bytes so a replayed or stale echo doesn't verify. */
function stamp(message: Buffer, sequence: number): void {
  if (message.length >= 4) message.writeUInt32LE(sequence >>> 0, 0);
  else if (message.length > 0) message[0] = sequence & 0xff;
}

/** The same bytes in every process (xorshift32, fixed seed), so any of them can check any echo. */
export function makePattern(size: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  let x = 0x9e3779b9;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}
