// `tls-echod check`: one TLS client session against an echo server. Connects, reports what
// was negotiated and who the peer claims to be, sends random bytes and verifies the echo byte
// for byte. Network and TLS failures are results (ok=false, with a message that says what to
// do), never exceptions: the CLI and scripts branch on `ok`, `code` and `reason`.
//
// One concept: running the check and saying what it found. The failure messages below belong to
// it: they read the run's stage and options, and no other code uses them. The peer certificate's
// description is in peer-certificate.ts, the client certificate's fate (mutual TLS) in
// client-cert-refusal.ts, the report for a terminal in check-report.ts.

import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import { performance } from 'node:perf_hooks';
import * as tls from 'node:tls';
import { formatHostPort } from '../config/config';
import { systemErrorCode, type ErrorCode } from '../errors';
import { CHECK_DEFAULTS, type CheckOptions } from './check-options';
import { refusalByAlert, refusalByClose, serverRequestedCertificate, type ClientCertState } from './client-cert-refusal';
import { describeCertificate, type PeerCertificateInfo } from './peer-certificate';

/** Stable failure kinds, finer than `code`; callers branch on these, never on `error` text. */
export type CheckFailureReason =
  | 'refused'
  | 'unreachable'
  | 'dns'
  | 'timeout'
  | 'reset'
  | 'closed'
  | 'not-tls'
  | 'tls-version'
  | 'alpn'
  | 'handshake'
  | 'untrusted'
  | 'expired'
  | 'not-yet-valid'
  | 'name-mismatch'
  | 'client-cert'
  | 'mismatch'
  | 'extra-bytes';

export interface CheckResult {
  /** True only when the whole payload came back byte for byte (and verification passed unless insecure). */
  readonly ok: boolean;
  /** host:port checked. */
  readonly target: string;
  /** SNI sent, or null when none. */
  readonly servername: string | null;
  readonly code: Extract<ErrorCode, 'ECHOD_CHECK_FAILED' | 'ECHOD_ECHO_MISMATCH'> | null;
  readonly reason: CheckFailureReason | null;
  /** What went wrong and what to do about it; null when ok. */
  readonly error: string | null;
  /** The underlying Node/OpenSSL code (ECONNREFUSED, DEPTH_ZERO_SELF_SIGNED_CERT, ...), if any. */
  readonly cause: string | null;
  readonly tlsVersion: string | null;
  readonly cipher: string | null;
  /** Negotiated ALPN protocol, null when none. */
  readonly alpn: string | null;
  /** Chain and name verified against `ca` (or the default store). Reported even with `insecure`. */
  readonly verified: boolean;
  /** Why verification failed (an OpenSSL or Node code), null when verified or not reached. */
  readonly verifyError: string | null;
  readonly peer: PeerCertificateInfo | null;
  /** Whether the server asked for a client certificate and which was sent; null when the handshake did not get far enough to tell. */
  readonly clientCert: ClientCertState | null;
  /** TCP connect, including DNS (ms). */
  readonly connectMs: number | null;
  /** TLS handshake after TCP connect (ms). */
  readonly handshakeMs: number | null;
  /** First byte written to last byte of the echo read (ms); null when nothing was sent. */
  readonly roundTripMs: number | null;
  readonly bytesSent: number;
  /** Bytes that came back matching, before any mismatch. */
  readonly bytesEchoed: number;
  /** Offset of the first byte that differed (or the first extra byte), null when none. */
  readonly mismatchOffset: number | null;
  readonly expectedByte: number | null;
  readonly actualByte: number | null;
  /**
   * Only with `awaitServerClose`: how the server ended the connection after the echo. 'end' for
   * an EOF (Node reports one without close_notify the same way), an error code such as
   * ECONNRESET, or 'open' when it had not ended it by the deadline.
   */
  readonly serverClose?: string;
}


/** How long a finished check waits for the server's close before destroying the socket (ms). */
const CLOSE_GRACE_MS = 1000;

/** Runs one check. Resolves with ok=false for network, TLS and echo failures; never rejects for them. */
export function runCheck(opts: CheckOptions): Promise<CheckResult> {
  return new Promise((resolve) => {
    new CheckRun(opts, resolve).start();
  });
}

type Stage = 'connect' | 'handshake' | 'echo';

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

class CheckRun {
  private readonly payload: Buffer;
  private readonly timeoutMs: number;
  private readonly servername: string | null;
  private readonly identity: string;
  private readonly result: Mutable<CheckResult>;
  private socket: tls.TLSSocket | undefined;
  private stage: Stage = 'connect';
  private startedAt = 0;
  private connectedAt = 0;
  private sentAt = 0;
  private received = 0;
  private finished = false;
  /** The echo matched and, with awaitServerClose, the run waits for the server to end the connection. */
  private awaitingClose = false;
  private settled = false;
  private deadline: NodeJS.Timeout | undefined;
  private closeGrace: NodeJS.Timeout | undefined;

  constructor(
    private readonly opts: CheckOptions,
    private readonly resolve: (r: CheckResult) => void,
  ) {
    this.payload = opts.payload ?? randomBytes(opts.bytes ?? CHECK_DEFAULTS.bytes);
    this.timeoutMs = opts.timeoutMs ?? CHECK_DEFAULTS.timeoutMs;
    this.servername = opts.servername ?? (isIP(opts.host) ? null : opts.host);
    this.identity = this.servername ?? opts.host;
    this.result = {
      ok: false,
      target: formatHostPort(opts.host, opts.port),
      servername: this.servername,
      code: null,
      reason: null,
      error: null,
      cause: null,
      tlsVersion: null,
      cipher: null,
      alpn: null,
      verified: false,
      verifyError: null,
      peer: null,
      clientCert: null,
      connectMs: null,
      handshakeMs: null,
      roundTripMs: null,
      bytesSent: 0,
      bytesEchoed: 0,
      mismatchOffset: null,
      expectedByte: null,
      actualByte: null,
    };
  }

  start(): void {
    const { opts } = this;
    const version = opts.tls === undefined ? undefined : opts.tls === '1.2' ? 'TLSv1.2' : 'TLSv1.3';
    this.startedAt = performance.now();
    this.deadline = setTimeout(this.onDeadline, this.timeoutMs);
    // rejectUnauthorized is off so that a certificate that fails verification can still be
    // described; the check fails right after the handshake, before any payload is sent.
    // No `session` is given, so every check is a full handshake: a resumed one would carry no
    // CertificateRequest, and the client certificate line would read `not requested`.
    const clientCert = opts.clientCert;
    const socket = tls.connect({
      host: opts.host,
      port: opts.port,
      ...(this.servername === null ? {} : { servername: this.servername }),
      ...(opts.ca === undefined ? {} : { ca: opts.ca }),
      rejectUnauthorized: false,
      ...(version === undefined ? {} : { minVersion: version, maxVersion: version }),
      ...(opts.alpn !== undefined && opts.alpn.length > 0 ? { ALPNProtocols: [...opts.alpn] } : {}),
      ...(clientCert === undefined ? {} : { cert: clientCert.cert, key: clientCert.key }),
    });
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('connect', this.socketOnConnect);
    socket.on('keylog', this.socketOnKeylog);
    socket.on('secureConnect', this.socketOnSecureConnect);
    socket.on('data', this.socketOnData);
    socket.on('error', this.socketOnError);
    socket.on('close', this.socketOnClose);
  }

  private readonly socketOnConnect = (): void => {
    this.connectedAt = performance.now();
    this.result.connectMs = round3(this.connectedAt - this.startedAt);
    this.stage = 'handshake';
  };

  // A TLS 1.2 server that refuses our certificate closes before 'secureConnect', and by the
  // 'error' that follows the TLS state is gone. The handshake's key log line is written after
  // the CertificateRequest has been read, so it is the last moment to look. The line (a secret)
  // is not kept.
  private readonly socketOnKeylog = (): void => {
    this.noteCertificateRequest();
  };

  private readonly socketOnSecureConnect = (): void => {
    const socket = this.socket!;
    this.noteCertificateRequest();
    const now = performance.now();
    if (this.connectedAt === 0) this.connectedAt = now;
    this.result.handshakeMs = round3(now - this.connectedAt);
    this.result.tlsVersion = socket.getProtocol() ?? null;
    this.result.cipher = socket.getCipher()?.standardName ?? socket.getCipher()?.name ?? null;
    this.result.alpn = typeof socket.alpnProtocol === 'string' ? socket.alpnProtocol : null;
    const cert = socket.getPeerCertificate();
    // An empty object when the server sent none (see DESIGN: don't trust `authorized` alone).
    const hasCert = cert !== null && typeof cert === 'object' && typeof cert.fingerprint256 === 'string';
    if (hasCert) this.result.peer = describeCertificate(cert);
    const verifyError = !hasCert ? 'NO_PEER_CERTIFICATE' : socket.authorized ? null : String(socket.authorizationError ?? 'UNKNOWN');
    this.result.verified = verifyError === null;
    this.result.verifyError = verifyError;
    if (verifyError !== null && this.opts.insecure !== true) {
      this.fail(verificationFailure(verifyError, this.opts, this.identity, this.result.peer));
      return;
    }
    this.stage = 'echo';
    if (this.payload.length === 0) {
      this.succeed();
      return;
    }
    this.sentAt = performance.now();
    this.result.bytesSent = this.payload.length;
    socket.write(this.payload);
  };

  private readonly socketOnData = (chunk: Buffer): void => {
    if (this.finished) return;
    const expected = this.payload;
    const offset = this.received;
    const n = chunk.length;
    const fits = Math.min(n, expected.length - offset);
    if (fits > 0 && expected.compare(chunk, 0, fits, offset, offset + fits) !== 0) {
      let i = 0;
      while (chunk[i] === expected[offset + i]) i++;
      this.result.bytesEchoed = offset + i;
      this.result.mismatchOffset = offset + i;
      this.result.expectedByte = expected[offset + i]!;
      this.result.actualByte = chunk[i]!;
      this.fail({
        code: 'ECHOD_ECHO_MISMATCH',
        reason: 'mismatch',
        error: `echo mismatch at byte ${offset + i} of ${expected.length}: sent ${hexByte(expected[offset + i]!)}, got ${hexByte(chunk[i]!)} (the server or something between us altered the data)`,
      });
      return;
    }
    if (fits < n) {
      this.result.bytesEchoed = expected.length;
      this.result.mismatchOffset = expected.length;
      this.result.actualByte = chunk[fits]!;
      const extra = n - fits;
      this.fail({
        code: 'ECHOD_ECHO_MISMATCH',
        reason: 'extra-bytes',
        error: `echo mismatch at byte ${expected.length}: the server sent at least ${extra} byte(s) more than the ${expected.length} sent (it is not a plain echo server)`,
      });
      return;
    }
    this.received += n;
    this.result.bytesEchoed = this.received;
    if (this.received === expected.length) {
      this.result.roundTripMs = round3(performance.now() - this.sentAt);
      if (this.opts.awaitServerClose === true) this.awaitingClose = true;
      else this.succeed();
    }
  };

  private readonly socketOnError = (err: Error): void => {
    if (this.finished) return;
    if (this.awaitingClose) {
      this.serverClosed(systemErrorCode(err) ?? 'UNKNOWN');
      return;
    }
    this.noteCertificateRequest();
    const code = systemErrorCode(err) ?? 'UNKNOWN';
    const refusal = this.clientCertRefusal(code);
    if (refusal !== undefined) {
      this.fail({ code: 'ECHOD_CHECK_FAILED', reason: 'client-cert', error: refusal, cause: code });
      return;
    }
    this.fail(networkFailure(err, this.stage, this.opts, this.result.target, this.received, this.payload.length));
  };

  private readonly socketOnClose = (): void => {
    if (this.finished) {
      this.settle();
      return;
    }
    if (this.awaitingClose) {
      this.serverClosed('end');
      return;
    }
    const refusal = this.clientCertRefusal(null);
    if (refusal !== undefined) {
      this.fail({ code: 'ECHOD_CHECK_FAILED', reason: 'client-cert', error: refusal });
      return;
    }
    const what =
      this.stage === 'echo'
        ? `after echoing ${this.received} of ${this.payload.length} bytes (check the server's session limits: --max-session-bytes, --idle-timeout)`
        : `during the TLS ${this.stage === 'connect' ? 'connect' : 'handshake'} (is ${this.result.target} a TLS server that admits this client?)`;
    this.fail({ code: 'ECHOD_CHECK_FAILED', reason: 'closed', error: `the server closed the connection ${what}` });
  };

  private readonly onDeadline = (): void => {
    this.deadline = undefined;
    if (this.finished) return;
    if (this.awaitingClose) {
      this.serverClosed('open');
      return;
    }
    const error =
      this.stage === 'echo'
        ? `echo incomplete after ${this.timeoutMs} ms: ${this.received} of ${this.payload.length} bytes came back (the server is stalled or slow: raise --timeout, or send fewer --bytes)`
        : `no ${this.stage === 'connect' ? 'TCP connection' : 'TLS handshake'} within ${this.timeoutMs} ms to ${this.result.target}: check the address and firewalls, or raise --timeout`;
    this.fail({ code: 'ECHOD_CHECK_FAILED', reason: 'timeout', error, cause: 'ETIMEDOUT' });
  };

  /** Records whether the server asked for a client certificate, while the socket can still tell. */
  private noteCertificateRequest(): void {
    const requested = serverRequestedCertificate(this.socket!);
    // Once asked stays asked: later reads may find the TLS state gone.
    if (requested === undefined || this.result.clientCert?.requested === true) return;
    this.result.clientCert = { requested, sent: requested ? (this.opts.clientCert?.name ?? null) : null };
  }

  /**
   * What a failure means for the client certificate: a server's alert about it (`code`), or,
   * when the server asked for one, a reset or close (`code` null) before anything was echoed.
   * Undefined when the failure says nothing about it.
   */
  private clientCertRefusal(code: string | null): string | undefined {
    const state = this.result.clientCert;
    const sent = state?.sent ?? null;
    if (code !== null) {
      const byAlert = refusalByAlert(code, state?.requested, sent);
      if (byAlert !== undefined) return byAlert;
    }
    const closed = code === null || code === 'ECONNRESET' || code === 'EPIPE';
    if (!closed || state?.requested !== true || this.received > 0 || this.stage === 'connect') return undefined;
    return refusalByClose(this.stage === 'echo', sent);
  }

  /** The echo had matched; how the server then ended the connection (awaitServerClose). */
  private serverClosed(how: string): void {
    this.result.serverClose = how;
    this.result.ok = true;
    this.finish(false);
  }

  private succeed(): void {
    this.result.ok = true;
    this.finish(true);
  }

  private fail(f: Failure): void {
    this.result.ok = false;
    this.result.code = f.code;
    this.result.reason = f.reason;
    this.result.error = f.error;
    this.result.cause = f.cause ?? null;
    this.finish(false);
  }

  /** Closes the socket (politely after success) and resolves once it is closed. */
  private finish(graceful: boolean): void {
    if (this.finished) return;
    this.finished = true;
    if (this.deadline !== undefined) clearTimeout(this.deadline);
    this.deadline = undefined;
    const socket = this.socket!;
    if (socket.closed) {
      this.settle();
    } else if (graceful) {
      socket.end();
      this.closeGrace = setTimeout(() => socket.destroy(), CLOSE_GRACE_MS);
    } else {
      socket.destroy();
    }
  }

  private settle(): void {
    if (this.settled) return;
    this.settled = true;
    if (this.closeGrace !== undefined) clearTimeout(this.closeGrace);
    this.closeGrace = undefined;
    this.resolve({ ...this.result });
  }
}

interface Failure {
  readonly code: 'ECHOD_CHECK_FAILED' | 'ECHOD_ECHO_MISMATCH';
  readonly reason: CheckFailureReason;
  readonly error: string;
  readonly cause?: string;
}

const UNTRUSTED = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'INVALID_CA',
  'CERT_REJECTED',
]);

function verificationFailure(code: string, opts: CheckOptions, identity: string, peer: PeerCertificateInfo | null): Failure {
  const skip = 'or --insecure to skip verification';
  const base = { code: 'ECHOD_CHECK_FAILED' as const, cause: code };
  if (code === 'NO_PEER_CERTIFICATE') {
    return { ...base, reason: 'untrusted', error: `the server sent no certificate: nothing to verify (${skip})` };
  }
  if (code === 'CERT_HAS_EXPIRED') {
    return { ...base, reason: 'expired', error: `certificate expired on ${peer?.notAfter ?? '?'} (${code}): renew the server's certificate, ${skip}` };
  }
  if (code === 'CERT_NOT_YET_VALID') {
    return { ...base, reason: 'not-yet-valid', error: `certificate not valid until ${peer?.notBefore ?? '?'} (${code}): check the clocks of both machines, ${skip}` };
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    const names = peer !== null && peer.sans.length > 0 ? peer.sans.join(', ') : `no SANs; subject ${peer?.subject ?? '?'}`;
    return {
      ...base,
      reason: 'name-mismatch',
      error: `certificate is not valid for ${identity} (it names ${names}): connect by one of those names or pass --servername <name>, ${skip}`,
    };
  }
  const detail = `${code}${peer !== null ? `, issuer ${peer.issuer}` : ''}`;
  if (UNTRUSTED.has(code) && opts.ca === undefined) {
    return { ...base, reason: 'untrusted', error: `certificate not trusted (${detail}): pass --ca certs/ca.pem, ${skip}` };
  }
  const against = opts.ca === undefined ? 'the default CA store' : `--ca ${opts.caLabel ?? '(given CA)'}`;
  return {
    ...base,
    reason: 'untrusted',
    error: `certificate not trusted by ${against} (${detail}): pass --ca with the CA that signed the server's certificate, ${skip}`,
  };
}

function networkFailure(err: Error, stage: Stage, opts: CheckOptions, target: string, received: number, total: number): Failure {
  const code = systemErrorCode(err) ?? 'UNKNOWN';
  const base = { code: 'ECHOD_CHECK_FAILED' as const, cause: code };
  switch (code) {
    case 'ECONNREFUSED':
      return { ...base, reason: 'refused', error: `connection refused by ${target}: nothing listens there (start it with: tls-echod serve --listen ${target}, or check the port)` };
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EAI_FAIL':
    case 'EAI_NONAME':
      return { ...base, reason: 'dns', error: `cannot resolve ${opts.host} (${code}): check the host name, or give an IP address` };
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'EADDRNOTAVAIL':
      return { ...base, reason: 'unreachable', error: `${target} is unreachable (${code}): check the address and the network route` };
    case 'ETIMEDOUT':
      return { ...base, reason: 'timeout', error: `connection to ${target} timed out (${code}): check the address and firewalls` };
    case 'ERR_SSL_WRONG_VERSION_NUMBER':
    case 'ERR_SSL_PACKET_LENGTH_TOO_LONG':
    case 'ERR_SSL_HTTP_REQUEST':
    case 'ERR_SSL_RECORD_LAYER_FAILURE':
      return { ...base, reason: 'not-tls', error: `${target} did not answer with TLS (${code}): is this a TLS port? (plain TCP or HTTP answers there)` };
    case 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION':
    case 'ERR_SSL_UNSUPPORTED_PROTOCOL':
    case 'ERR_SSL_NO_PROTOCOLS_AVAILABLE':
      return {
        ...base,
        reason: 'tls-version',
        error:
          opts.tls === undefined
            ? `no TLS version in common with ${target} (${code}): the server needs a version Node won't offer`
            : `${target} does not accept TLS ${opts.tls} (${code}): drop --tls, or pin the other version`,
      };
    case 'ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL':
      return { ...base, reason: 'alpn', error: `${target} accepts none of --alpn ${(opts.alpn ?? []).join(', ')} (${code}): offer a protocol it speaks, or drop --alpn` };
    case 'ECONNRESET':
    case 'EPIPE':
      if (stage === 'echo') {
        return { ...base, reason: 'reset', error: `connection reset after echoing ${received} of ${total} bytes (${code}): the server ended the session (check its limits: --max-session-bytes, --bandwidth)` };
      }
      return { ...base, reason: 'reset', error: `connection reset during the TLS ${stage} (${code}): the server dropped us (is ${target} a TLS server? does its --allow/--deny or rate limit admit this client?)` };
    default:
      if (stage === 'echo') {
        return { ...base, reason: 'reset', error: `connection failed after echoing ${received} of ${total} bytes: ${err.message} (${code})` };
      }
      return { ...base, reason: stage === 'connect' ? 'unreachable' : 'handshake', error: `TLS ${stage} with ${target} failed: ${err.message} (${code})` };
  }
}

function hexByte(b: number): string {
  return '0x' + b.toString(16).padStart(2, '0');
}

function round3(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
