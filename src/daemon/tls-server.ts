// The TLS transport of one worker (or of the supervisor itself with --workers 0): a
// tls.Server that never listens. The supervisor hands it raw, admitted sockets; it runs the
// handshake, starts an EchoSession, and reports each connection's end exactly once, whatever
// way it ended, so the supervisor's slot and per-IP counts stay exact.

import tls from 'node:tls';
import type { RawSocket } from './handle-socket';
import { EchoSession, IdleCheck, type CloseReason, type SessionLimits } from './session';
import { ConnectionLine, SampledLog, type Logger } from '../ops/logger';
import { peerCertificate } from '../certs/inspect';
import type { ClientAuthPolicy } from '../mtls/client-auth';
import { clientCertProblem, isMissingClientCert } from '../mtls/refusal';

/** What the supervisor knows of a connection when it hands it over. */
export interface ConnectionMeta {
  readonly id: number;
  /** Normalised client address (IPv4-mapped IPv6 shown as IPv4). */
  readonly ip: string;
  /** Client port, for the log (read where the address was: no second getpeername). */
  readonly port: number;
  /** With --proxy-protocol: the proxy the connection came through (ip and port are the client's, from its header). */
  readonly proxyAddress?: string;
}

/** Reported once per connection, when its socket has closed. */
export interface ConnectionClosed {
  readonly id: number;
  readonly reason: CloseReason;
  /** Handshake time (ms), or undefined when no session was established. */
  readonly handshakeMs: number | undefined;
  readonly durationMs: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  /** The handshake failed because the client certificate was missing or did not verify. */
  readonly clientCertRefused?: true;
}

export interface TlsSettings extends SessionLimits {
  readonly minTls: 'TLSv1.2' | 'TLSv1.3';
  readonly handshakeTimeoutMs: number;
}

export interface ServerIdentity {
  readonly key: string;
  readonly cert: string;
  /** 48 bytes shared by every worker so a ticket from one resumes on any other. */
  readonly ticketKeys: Buffer;
  /** Whether and how client certificates are asked for and checked. */
  readonly clientAuth: ClientAuthPolicy;
}

export interface TlsEchoServerEvents {
  /** A handshake completed (ms since the socket was handed over). */
  onOpen(id: number, handshakeMs: number): void;
  onClosed(report: ConnectionClosed): void;
}

interface Connection {
  readonly owner: TlsEchoServer;
  readonly meta: ConnectionMeta;
  readonly socket: RawSocket;
  readonly acceptedAt: number;
  reason: CloseReason | undefined;
  handshakeMs: number | undefined;
  session: EchoSession | undefined;
  /** What the handshake agreed, kept for the log line (a closed socket no longer says); undefined when not logging. */
  tlsVersion: string | null | undefined;
  cipher: string | undefined;
  sni: string | undefined;
  alpn: string | undefined;
  /** Set on a resumed session, for the log. */
  resumed: true | undefined;
  /** The verified client certificate's subject and fingerprint, for the log. */
  clientSubject: string | undefined;
  clientFingerprint256: string | undefined;
  clientCertRefused: boolean;
}

// tls.Server wraps the raw socket in a TLSSocket whose `_parent` is that raw socket: the only
// link from the TLS events back to the connection record we attached on hand-over.
const CONNECTION = Symbol('connection');
type HandedOver = RawSocket & { [CONNECTION]?: Connection };
type WrappedSocket = tls.TLSSocket & { _parent?: HandedOver };

export class TlsEchoServer {
  private server: tls.Server;
  private readonly connections = new Set<Connection>();
  private readonly handshakeLog: SampledLog;
  /** The line each session ends with (#2's fields), at info. */
  private readonly sessionLine: ConnectionLine;
  private settings: TlsSettings;
  private identity: ServerIdentity;
  /**
   * Sessions keep the idle timeout they started with: after a reload they are checked at the new
   * pace, so one with a shorter timeout may close up to a second late (61 s at most with the
   * default 60 s).
   */
  private readonly idleCheck = new IdleCheck(this.connections);

  constructor(
    settings: TlsSettings,
    identity: ServerIdentity,
    private readonly events: TlsEchoServerEvents,
    logger: Logger,
  ) {
    this.settings = settings;
    this.identity = identity;
    this.handshakeLog = new SampledLog(logger);
    this.sessionLine = new ConnectionLine(logger, 'info', 'session ended');
    this.server = this.createServer();
    this.idleCheck.start(settings.idleTimeoutMs);
  }

  // The server never listens: it only turns handed-over sockets into TLS sessions. A reload
  // builds a new one (Node can't change a server's handshakeTimeout); sockets already handed
  // to the old one keep reporting to the same handlers.
  private createServer(): tls.Server {
    const server = tls.createServer({
      ...TlsEchoServer.contextOptions(this.settings, this.identity),
      // No allowHalfOpen here: a TLSSocket takes it from the raw socket it wraps (false, for a
      // net.Server's sockets and a HandleSocket alike), never from this server. Nothing is lost
      // by that: 'end' comes only after every byte before the client's FIN was echoed.
      handshakeTimeout: this.settings.handshakeTimeoutMs,
      // An echo peer for client tests: agree to the first protocol the client offers.
      ALPNCallback: ({ protocols }) => protocols[0],
      // Under `require`, OpenSSL refuses a client that sends no certificate with an alert
      // (certificate_required in TLS 1.3), and Node closes one whose certificate does not verify
      // as soon as the handshake is done, before 'secureConnection'. Under `request` both get
      // this far and serverOnSecureConnection refuses a certificate that was sent and did not verify.
      requestCert: this.identity.clientAuth.mode !== 'off',
      rejectUnauthorized: this.identity.clientAuth.mode === 'require',
    });
    server.on('secureConnection', this.serverOnSecureConnection);
    server.on('tlsClientError', this.serverOnTlsClientError);
    return server;
  }

  private static contextOptions(settings: TlsSettings, identity: ServerIdentity): tls.SecureContextOptions {
    const { ca, crl, context } = identity.clientAuth;
    return { key: identity.key, cert: identity.cert, minVersion: settings.minTls, ticketKeys: identity.ticketKeys, ca, crl, sessionIdContext: context };
  }

  /** Connections handed over and not yet closed. */
  get size(): number {
    return this.connections.size;
  }

  /** Takes over an admitted raw socket (paused) and starts its handshake. */
  accept(socket: RawSocket, meta: ConnectionMeta): void {
    const conn: Connection = { owner: this, meta, socket, acceptedAt: performance.now(), reason: undefined, handshakeMs: undefined, session: undefined, tlsVersion: undefined, cipher: undefined, sni: undefined, alpn: undefined, resumed: undefined, clientSubject: undefined, clientFingerprint256: undefined, clientCertRefused: false };
    this.connections.add(conn);
    (socket as HandedOver)[CONNECTION] = conn;
    // 'close' is emitted once: `on` spares the wrapper `once` makes.
    socket.on('close', TlsEchoServer.rawSocketOnClose);
    // A socket that died on its way here (e.g. reset while queued) still gets its one report.
    if (socket.destroyed) return;
    // TCP_NODELAY was set on the fd by the supervisor's listener and travels with it.
    this.server.emit('connection', socket);
  }

  /** New certificate, key, ticket keys or client-certificate policy for connections from now on; sessions keep theirs. */
  setIdentity(identity: ServerIdentity): void {
    const modeChanged = identity.clientAuth.mode !== this.identity.clientAuth.mode;
    this.identity = identity;
    // Whether a certificate is asked for is the server's, not its context's: a new mode needs a new server.
    if (modeChanged) this.server = this.createServer();
    else this.server.setSecureContext(TlsEchoServer.contextOptions(this.settings, identity));
  }

  /** Rotates ticket keys only (no new context: cheap). */
  setTicketKeys(keys: Buffer): void {
    this.identity = { ...this.identity, ticketKeys: keys };
    this.server.setTicketKeys(keys);
  }

  /** Limits, timeouts and minimum TLS version for connections from now on (a reload). */
  setSettings(settings: TlsSettings): void {
    this.settings = settings;
    this.server = this.createServer();
    this.idleCheck.start(settings.idleTimeoutMs);
  }

  /** Stops the idle check; call once every connection is gone (or being closed). */
  stop(): void {
    this.idleCheck.stop();
  }

  /** Ends every connection now with `reason`. */
  closeAll(reason: CloseReason): void {
    for (const conn of this.connections) {
      conn.reason ??= reason;
      if (conn.session) conn.session.close(reason);
      else conn.socket.destroy();
    }
  }

  private readonly serverOnSecureConnection = (socket: WrappedSocket): void => {
    const conn = socket._parent?.[CONNECTION];
    if (conn === undefined) {
      socket.destroy();
      return;
    }
    socket.disableRenegotiation();
    conn.handshakeMs = performance.now() - conn.acceptedAt;
    if (conn.reason !== undefined) {
      // closeAll ran while this handshake was in flight.
      socket.destroy();
      return;
    }
    // Under `request`: the client sent a certificate and it did not verify. (With no certificate
    // there is an authorizationError too, and nothing to refuse.) Refused before any echo.
    if (socket.authorizationError && peerCertificate(socket) !== undefined) {
      this.refuseClientCert(conn, socket, String(socket.authorizationError));
      socket.destroy();
      return;
    }
    if (this.sessionLine.enabled()) {
      conn.tlsVersion = socket.getProtocol();
      const cipher = socket.getCipher();
      conn.cipher = cipher.standardName ?? cipher.name;
      conn.sni = socket.servername || undefined;
      conn.alpn = socket.alpnProtocol || undefined;
      // A resumed session keeps the client certificate of the session it resumes.
      if (socket.isSessionReused()) conn.resumed = true;
      if (socket.authorized) {
        const peer = peerCertificate(socket);
        conn.clientSubject = peer?.subject;
        conn.clientFingerprint256 = peer?.fingerprint256;
      }
    }
    conn.session = new EchoSession(socket, this.settings, this.sessionOnClose);
    this.events.onOpen(conn.meta.id, conn.handshakeMs);
  };

  private readonly serverOnTlsClientError = (err: NodeJS.ErrnoException, socket: WrappedSocket): void => {
    const conn = socket._parent?.[CONNECTION];
    const reason: CloseReason = err.code === 'ERR_TLS_HANDSHAKE_TIMEOUT' ? 'handshake-timeout' : 'handshake-failed';
    if (conn !== undefined) conn.reason ??= reason;
    // Node only reports the timeout; closing the socket is ours to do.
    socket.destroy();
    // Under `require`: OpenSSL refused a missing certificate, or Node closed the socket because
    // the one sent did not verify (it reports that as a hang-up, with the verify error on the socket).
    const certError = socket.authorizationError ? String(socket.authorizationError) : isMissingClientCert(err.code) ? err.code : undefined;
    if (conn !== undefined && certError !== undefined) {
      this.refuseClientCert(conn, socket, certError);
      return;
    }
    this.handshakeLog.log('info', reason, 'handshake failed', {
      sessionId: conn?.meta.id,
      remoteAddress: conn?.meta.ip,
      reason,
      error: err.code ?? err.message,
    });
  };

  private refuseClientCert(conn: Connection, socket: tls.TLSSocket, error: string): void {
    conn.reason ??= 'handshake-failed';
    conn.clientCertRefused = true;
    const peer = peerCertificate(socket);
    this.handshakeLog.log('info', 'client-cert', 'client certificate refused', {
      sessionId: conn.meta.id,
      remoteAddress: conn.meta.ip,
      reason: 'handshake-failed',
      problem: clientCertProblem(error),
      error,
      clientSubject: peer?.subject,
    });
  }

  // One function for every raw socket (not a closure each). An established session reports from
  // its own close (which comes after the raw socket's); this reports the connections that never
  // got one. It waits a turn of the event loop: when Node closes a connection whose client
  // certificate did not verify, it says so (tlsClientError) only after the raw socket has closed.
  private static rawSocketOnClose(this: HandedOver): void {
    const conn = this[CONNECTION];
    if (conn !== undefined && conn.session === undefined) setImmediate(TlsEchoServer.finishUnestablished, conn);
  }

  private static finishUnestablished(conn: Connection): void {
    if (conn.session === undefined) conn.owner.finish(conn);
  }

  // One function for every session (not a closure each): the connection is found from the socket.
  private readonly sessionOnClose = (session: EchoSession): void => {
    // Always found: a session is only made for a socket whose connection was found this way.
    const conn = (session.socket as WrappedSocket)._parent?.[CONNECTION];
    if (conn === undefined) return;
    const durationMs = performance.now() - conn.acceptedAt;
    this.logSession(conn, session, durationMs);
    this.finish(conn, durationMs);
  };

  private finish(conn: Connection, durationMs = performance.now() - conn.acceptedAt): void {
    if (!this.connections.delete(conn)) return;
    const session = conn.session;
    const report: ConnectionClosed = {
      id: conn.meta.id,
      reason: session?.reason ?? conn.reason ?? (session ? 'peer-closed' : 'handshake-failed'),
      handshakeMs: session ? conn.handshakeMs : undefined,
      durationMs,
      bytesIn: session?.bytesIn ?? 0,
      bytesOut: session?.bytesOut ?? 0,
    };
    // The rare case gets its own object, so the common one keeps one shape (and a short IPC message).
    this.events.onClosed(conn.clientCertRefused ? { ...report, clientCertRefused: true } : report);
  }

  private logSession(conn: Connection, session: EchoSession, durationMs: number): void {
    if (conn.tlsVersion === undefined) return;
    this.sessionLine.write({
      sessionId: conn.meta.id,
      remoteAddress: conn.meta.ip,
      remotePort: conn.meta.port,
      proxyAddress: conn.meta.proxyAddress,
      tlsVersion: conn.tlsVersion,
      cipher: conn.cipher,
      sni: conn.sni,
      alpn: conn.alpn,
      resumed: conn.resumed,
      clientSubject: conn.clientSubject,
      clientFingerprint256: conn.clientFingerprint256,
      bytesIn: session.bytesIn,
      bytesOut: session.bytesOut,
      handshakeMs: round(conn.handshakeMs),
      durationMs: round(durationMs),
      reason: session.reason,
      error: session.errorCode,
    });
  }
}

function round(ms: number | undefined): number | undefined {
  return ms === undefined ? undefined : Math.round(ms * 10) / 10;
}
