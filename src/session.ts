// One echo session: from the end of the TLS handshake to the close of the socket. Every byte
// read is written back unchanged; reads pause while the write side is backed up or the
// bandwidth cap is spent, so memory per client stays bounded by Node's stream buffers.
//
// A session costs no timer of its own for the idle timeout, and no clock read per chunk: it
// raises a flag when the client makes progress, and its server checks every session now and
// then (see checkIdle), which is when the time is read. Sessions start thousands of times a
// second and chunks arrive a hundred thousand times a second; per-socket timers were a
// measurable share of the first.

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

/** How long a client gets to answer our close_notify before the socket is destroyed (ms). */
const CLOSE_GRACE_MS = 1000;

export interface SessionSummary {
  readonly reason: CloseReason;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly errorCode: string | undefined;
}

export class EchoSession {
  private bytesIn = 0;
  private bytesOut = 0;
  private reason: CloseReason | undefined;
  private errorCode: string | undefined;
  private writeBlocked = false;
  private throttled = false;
  private lifetimeTimer: NodeJS.Timeout | undefined;
  private throttleTimer: NodeJS.Timeout | undefined;
  private closeTimer: NodeJS.Timeout | undefined;
  private closing = false;
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
    private readonly onClose: (summary: SessionSummary) => void,
  ) {
    socket.on('data', this.socketOnData);
    socket.on('drain', this.socketOnDrain);
    socket.on('end', this.socketOnEnd);
    socket.on('error', this.socketOnError);
    socket.once('close', this.socketOnClose);
    if (limits.sessionTimeoutMs > 0) {
      this.lifetimeTimer = setTimeout(this.lifetimeOnTimeout, limits.sessionTimeoutMs);
    }
    if (limits.bandwidthBytesPerSec > 0) {
      this.allowance = this.bandwidthBurst();
      this.allowanceAt = performance.now();
    }
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
    this.reason ??= reason;
    if (this.closing) return;
    this.closing = true;
    this.socket.end();
    this.closeTimer = setTimeout(() => this.socket.destroy(), CLOSE_GRACE_MS);
    // Keep reading (and dropping) so the client's close reaches us even if it was backed up.
    this.throttled = false;
    this.writeBlocked = false;
    this.socket.resume();
  }

  private readonly socketOnData = (chunk: Buffer): void => {
    if (this.closing) return;
    let data = chunk;
    const max = this.limits.maxSessionBytes;
    if (max > 0 && this.bytesIn + data.length >= max) {
      // Echo up to the cap, then end cleanly so the client sees exactly max bytes come back.
      data = data.subarray(0, max - this.bytesIn);
      this.bytesIn += data.length;
      this.bytesOut += data.length;
      this.reason ??= 'byte-limit';
      this.socket.write(data);
      this.close('byte-limit');
      return;
    }
    this.bytesIn += data.length;
    this.bytesOut += data.length;
    this.progressed = true;
    if (!this.socket.write(data)) {
      this.writeBlocked = true;
      this.socket.pause();
    }
    if (this.limits.bandwidthBytesPerSec > 0) this.spendBandwidth(data.length);
  };

  private readonly socketOnDrain = (): void => {
    this.writeBlocked = false;
    this.progressed = true;
    if (!this.throttled) this.socket.resume();
  };

  // Half-close: everything the client sent has been read and written back by now; ending
  // our side flushes those writes before the FIN.
  private readonly socketOnEnd = (): void => {
    this.reason ??= 'peer-closed';
    this.socket.end();
  };

  // Some errors (ERR_TLS_RENEGOTIATION_DISABLED) are emitted without destroying the socket:
  // any error ends the session.
  private readonly socketOnError = (err: NodeJS.ErrnoException): void => {
    this.reason ??= 'error';
    this.errorCode ??= err.code ?? err.message;
    this.socket.destroy();
  };

  private readonly lifetimeOnTimeout = (): void => this.close('session-timeout');

  private readonly socketOnClose = (): void => {
    clearTimeout(this.lifetimeTimer);
    clearTimeout(this.throttleTimer);
    clearTimeout(this.closeTimer);
    this.onClose({
      reason: this.reason ?? 'peer-closed',
      bytesIn: this.bytesIn,
      bytesOut: this.bytesOut,
      errorCode: this.errorCode,
    });
  };

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
    this.throttleTimer = setTimeout(this.throttleOnTimeout, Math.ceil((-this.allowance * 1000) / rate));
  }

  private readonly throttleOnTimeout = (): void => {
    this.throttled = false;
    this.throttleTimer = undefined;
    if (!this.writeBlocked && !this.socket.destroyed) this.socket.resume();
  };
}
