// One echo session: from the end of the TLS handshake to the close of the socket. Every byte
// read is written back unchanged; reads pause while the write side is backed up or the
// bandwidth cap is spent, so memory per client stays bounded by Node's stream buffers.
//
// A session costs no timer of its own for the idle timeout, and no clock read per chunk: it
// raises a flag when the client makes progress, and its server checks every session now and
// then (see checkIdle), which is when the time is read. Sessions start thousands of times a
// second and chunks arrive a hundred thousand times a second; per-socket timers were a
// measurable share of the first. For the same reason a session's socket listeners and timers
// call shared functions (one set for the process, reaching the session through the socket or the
// timer's argument) rather than closures made for each session.

import type { TLSSocket } from 'node:tls';

export type CloseReason =
  | 'peer-closed'
  | 'idle-timeout'
  | 'session-timeout'
  | 'handshake-timeout'
  | 'handshake-failed'
  | 'byte-limit'
  | 'error'
  | 'shutdown';

/** Per-session limits; a reload changes them for new sessions only. */
export interface SessionLimits {
  /** Close after this long without progress from the client (ms; data in, or our writes drained); 0 = off. */
  readonly idleTimeoutMs: number;
  /** Close after this long whatever happens (ms); 0 = unlimited. */
  readonly sessionTimeoutMs: number;
  /** Echo rate cap (bytes/s); 0 = unlimited. Enforced by pausing reads. */
  readonly bandwidthBytesPerSec: number;
  /** Close once this many bytes were echoed; 0 = unlimited. */
  readonly maxSessionBytes: number;
}

/**
 * How often sessions are checked for the idle timeout, as a share of it, and within what bounds
 * (ms). A session closes at most two check intervals after its timeout (see checkIdle).
 */
const IDLE_CHECKS_PER_TIMEOUT = 40;
const IDLE_CHECK_MIN_MS = 10;
const IDLE_CHECK_MAX_MS = 500;

/** The interval (ms) at which a server calls checkIdle on each of its sessions, for `idleTimeoutMs` (> 0). */
export function idleCheckIntervalMs(idleTimeoutMs: number): number {
  return Math.min(IDLE_CHECK_MAX_MS, Math.max(IDLE_CHECK_MIN_MS, Math.floor(idleTimeoutMs / IDLE_CHECKS_PER_TIMEOUT)));
}

/**
 * One timer for every session of a server, at the pace of the current idle timeout (an
 * EchoSession has no timer of its own). A session closes at most two intervals after its
 * timeout. start() again at a reload; one that turns the timeout off keeps the timer for the
 * sessions that still have one. stop() once every connection is gone or being closed.
 */
export class IdleCheck {
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly connections: ReadonlySet<{ readonly session: EchoSession | undefined }>) {}

  start(idleTimeoutMs: number): void {
    if (idleTimeoutMs <= 0) return;
    clearInterval(this.timer);
    this.timer = setInterval(this.check, idleCheckIntervalMs(idleTimeoutMs)).unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private readonly check = (): void => {
    const now = performance.now();
    for (const conn of this.connections) conn.session?.checkIdle(now);
  };
}

/** How long a client gets to answer our close_notify before the socket is destroyed (ms). */
const CLOSE_GRACE_MS = 1000;

/** Where a session's socket keeps its session, for the shared listeners below. */
const SESSION = Symbol('session');
type SessionSocket = TLSSocket & { [SESSION]?: EchoSession };

export class EchoSession {
  /**
   * Application bytes read from the client and written back. Every byte counted is echoed (bytes
   * read once the session is closing are dropped and not counted), so one count is both.
   */
  private echoed = 0;
  private endReason: CloseReason | undefined;
  private error: string | undefined;
  private writeBlocked = false;
  private throttled = false;
  private lifetimeTimer: NodeJS.Timeout | undefined;
  private throttleTimer: NodeJS.Timeout | undefined;
  private closeTimer: NodeJS.Timeout | undefined;
  private closing = false;
  /** Whether socketOnDrain is on the socket yet (see listenForDrain). */
  private drainListened = false;
  /** The client made progress (sent data, or read what we sent) since the last idle check. */
  private progressed = true;
  /** When an idle check last found progress (performance.now() ms): the client has been quiet since at most then. */
  private quietSince = 0;
  /** Bandwidth token bucket: bytes that may still be echoed now, and when it was last topped up. */
  private allowance = 0;
  private allowanceAt = 0;

  constructor(
    readonly socket: TLSSocket,
    private readonly limits: SessionLimits,
    /** Called once, when the socket has closed; the session's counts and reason are final then. */
    private readonly onClose: (session: EchoSession) => void,
  ) {
    (socket as SessionSocket)[SESSION] = this;
    // 'drain' is listened for from the first write that backs up (listenForDrain): most
    // sessions never need it, and each listener costs every session the time to add it.
    socket.on('data', socketOnData);
    socket.on('end', socketOnEnd);
    socket.on('error', socketOnError);
    // 'close' is emitted once: `on` spares the wrapper `once` makes.
    socket.on('close', socketOnClose);
    if (limits.sessionTimeoutMs > 0) {
      this.lifetimeTimer = setTimeout(sessionOnLifetimeTimeout, limits.sessionTimeoutMs, this);
    }
    if (limits.bandwidthBytesPerSec > 0) {
      this.allowance = this.bandwidthBurst();
      this.allowanceAt = performance.now();
    }
  }

  /** Application bytes read from the client. */
  get bytesIn(): number {
    return this.echoed;
  }

  /** Application bytes written back to the client. */
  get bytesOut(): number {
    return this.echoed;
  }

  /** Why the session ended, once it has (the first reason recorded wins). */
  get reason(): CloseReason | undefined {
    return this.endReason;
  }

  /** The error that ended the session, when its reason is `error`. */
  get errorCode(): string | undefined {
    return this.error;
  }

  /**
   * Called every so often with performance.now(): closes the session with reason idle-timeout
   * once the client has made no progress for at least the idle timeout. Never early; late by
   * at most two intervals between checks (progress just before a check counts from that check).
   */
  checkIdle(now: number): void {
    const limit = this.limits.idleTimeoutMs;
    if (limit <= 0 || this.closing) return;
    if (this.progressed) {
      this.progressed = false;
      this.quietSince = now;
    } else if (now - this.quietSince >= limit) {
      this.close('idle-timeout');
    }
  }

  /**
   * Ends the session with `reason` (the first reason recorded wins): a close_notify and FIN,
   * so the client sees a clean end, then a hard close if it has not closed within
   * CLOSE_GRACE_MS. Safe to call twice.
   */
  close(reason: CloseReason): void {
    this.endReason ??= reason;
    if (this.closing) return;
    this.closing = true;
    this.socket.end();
    this.closeTimer = setTimeout(sessionOnCloseGrace, CLOSE_GRACE_MS, this);
    // Keep reading (and dropping) so the client's close reaches us even if it was backed up.
    this.throttled = false;
    this.writeBlocked = false;
    this.socket.resume();
  }

  // What the shared socket listeners at the end of this file call; not for other callers.

  onData(chunk: Buffer): void {
    if (this.closing) return;
    let data = chunk;
    const max = this.limits.maxSessionBytes;
    if (max > 0 && this.echoed + data.length >= max) {
      // Echo up to the cap, then end cleanly so the client sees exactly max bytes come back.
      data = data.subarray(0, max - this.echoed);
      this.echoed += data.length;
      this.endReason ??= 'byte-limit';
      this.socket.write(data);
      this.close('byte-limit');
      return;
    }
    this.echoed += data.length;
    this.progressed = true;
    if (!this.socket.write(data)) {
      this.writeBlocked = true;
      this.listenForDrain();
      this.socket.pause();
    }
    if (this.limits.bandwidthBytesPerSec > 0) this.spendBandwidth(data.length);
  }

  onDrain(): void {
    this.writeBlocked = false;
    this.progressed = true;
    if (!this.throttled) this.socket.resume();
  }

  // Half-close: everything the client sent has been read and written back by now; ending
  // our side flushes those writes before the FIN.
  onEnd(): void {
    this.endReason ??= 'peer-closed';
    this.socket.end();
  }

  // Some errors (ERR_TLS_RENEGOTIATION_DISABLED) are emitted without destroying the socket:
  // any error ends the session.
  onError(err: NodeJS.ErrnoException): void {
    this.endReason ??= 'error';
    this.error ??= err.code ?? err.message;
    this.socket.destroy();
  }

  onSocketClose(): void {
    clearTimeout(this.lifetimeTimer);
    clearTimeout(this.throttleTimer);
    clearTimeout(this.closeTimer);
    this.endReason ??= 'peer-closed';
    this.onClose(this);
  }

  private listenForDrain(): void {
    if (this.drainListened) return;
    this.drainListened = true;
    this.socket.on('drain', socketOnDrain);
  }

  private bandwidthBurst(): number {
    // One second's worth, but at least one TLS record so a low cap still makes progress.
    return Math.max(this.limits.bandwidthBytesPerSec, 16_384);
  }

  private spendBandwidth(bytes: number): void {
    const rate = this.limits.bandwidthBytesPerSec;
    const now = performance.now();
    this.allowance = Math.min(this.bandwidthBurst(), this.allowance + ((now - this.allowanceAt) * rate) / 1000) - bytes;
    this.allowanceAt = now;
    if (this.allowance >= 0 || this.throttled) return;
    this.throttled = true;
    this.socket.pause();
    this.throttleTimer = setTimeout(sessionOnThrottleTimeout, Math.ceil((-this.allowance * 1000) / rate), this);
  }

  /** The bandwidth cap's pause is over (called by its timer). */
  onThrottleTimeout(): void {
    this.throttled = false;
    this.throttleTimer = undefined;
    if (!this.writeBlocked && !this.socket.destroyed) this.socket.resume();
  }
}

// The listeners of every session's socket: Node calls them with the socket as `this`.
function socketOnData(this: SessionSocket, chunk: Buffer): void {
  this[SESSION]!.onData(chunk);
}

function socketOnDrain(this: SessionSocket): void {
  this[SESSION]!.onDrain();
}

function socketOnEnd(this: SessionSocket): void {
  this[SESSION]!.onEnd();
}

function socketOnError(this: SessionSocket, err: NodeJS.ErrnoException): void {
  this[SESSION]!.onError(err);
}

function socketOnClose(this: SessionSocket): void {
  this[SESSION]!.onSocketClose();
}

function sessionOnLifetimeTimeout(session: EchoSession): void {
  session.close('session-timeout');
}

function sessionOnCloseGrace(session: EchoSession): void {
  session.socket.destroy();
}

function sessionOnThrottleTimeout(session: EchoSession): void {
  session.onThrottleTimeout();
}
