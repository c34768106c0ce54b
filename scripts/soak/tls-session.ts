// One TLS connection of the load, from open to close, with its outcome: the echo checked byte
// by byte as it arrives (a wrong byte is a mismatch, and never expected; fewer bytes than sent
// is a cut, expected when chaos kills the worker or a flood is refused), whether the session
// was resumed, and when the daemon ended it.

import type tls from 'node:tls';

export type Outcome = 'ok' | 'mismatch' | 'cut' | 'refused' | 'timeout';

export interface SessionResult {
  readonly outcome: Outcome;
  readonly reused: boolean;
  /** The TLS version agreed, when the handshake completed. */
  readonly protocol: string | undefined;
  /** The session to resume with next time (TLS 1.2 and 1.3 tickets arrive as 'session' events). */
  readonly session: Buffer | undefined;
  /** The server certificate's SHA-256 fingerprint, when the handshake completed. */
  readonly fingerprint256: string | undefined;
  /** Milliseconds from the handshake (or the open, without one) to the close. */
  readonly msAfterHandshake: number;
}

export interface SessionPlan {
  /** Bytes to send after the handshake; undefined sends nothing (an idle session). */
  readonly payload?: Buffer;
  /** end() right after the payload, and still expect the whole echo (half-close). */
  readonly halfClose?: boolean;
  /** Destroy and count a timeout after this long. */
  readonly timeoutMs: number;
}

/** Runs one connection opened by `open` to its close. */
export function runSession(open: () => tls.TLSSocket, plan: SessionPlan): Promise<SessionResult> {
  return new Promise((resolve) => {
    const openedAt = performance.now();
    const socket = open();
    const payload = plan.payload;
    let handshakeAt: number | undefined;
    let received = 0;
    let mismatch = false;
    let timedOut = false;
    let session: Buffer | undefined;
    let protocol: string | undefined;
    let fingerprint256: string | undefined;
    let reused = false;
    const timer = setTimeout(() => {
      timedOut = true;
      socket.destroy();
    }, plan.timeoutMs);
    socket.on('session', (s: Buffer) => (session = s));
    socket.once('secureConnect', () => {
      handshakeAt = performance.now();
      reused = socket.isSessionReused();
      protocol = socket.getProtocol() ?? undefined;
      fingerprint256 = socket.getPeerX509Certificate()?.fingerprint256;
      if (payload === undefined) return;
      socket.write(payload);
      if (plan.halfClose) socket.end();
    });
    socket.on('data', (chunk: Buffer) => {
      if (payload === undefined || received + chunk.length > payload.length || !chunk.equals(payload.subarray(received, received + chunk.length))) {
        mismatch = true;
        socket.destroy();
        return;
      }
      received += chunk.length;
      if (received === payload.length && !plan.halfClose) socket.end();
    });
    socket.on('error', () => undefined);
    socket.once('close', () => {
      clearTimeout(timer);
      const whole = payload !== undefined && received === payload.length;
      const outcome: Outcome = mismatch ? 'mismatch' : timedOut ? 'timeout' : handshakeAt === undefined ? 'refused' : payload === undefined || whole ? 'ok' : 'cut';
      resolve({ outcome, reused, protocol, session, fingerprint256, msAfterHandshake: performance.now() - (handshakeAt ?? openedAt) });
    });
  });
}
