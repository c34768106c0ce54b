// The scenario listener's connection path (issue 15): read the ClientHello's server name off the
// raw socket before any TLS, pick the scenario it names, and hand the connection (with the bytes
// read) to that scenario's tls.Server, or answer with an alert. It runs in the supervisor, which
// admits each connection first and holds a session slot for it; every connection is reported
// once, when it has closed, so the supervisor's counts stay exact as they do for the workers.

import type net from 'node:net';
import tls from 'node:tls';
import { EchoSession, IdleCheck, type CloseReason, type SessionLimits } from '../daemon/session';
import type { ConnectionClosed, ConnectionMeta } from '../daemon/tls-server';
import { isMissingClientCert } from '../mtls/refusal';
import { ConnectionLine, SampledLog, type Logger } from '../ops/logger';
import { HANDSHAKE_FAILURE, UNRECOGNIZED_NAME, alertRecord } from './alert';
import { BEHAVIOURS, runBehaviour, type Behaviour } from './behaviour';
import { scenarioForServerName } from './catalogue';
import { readClientHello } from './peek-hello';

export interface ScenarioSettings {
  /** Server names are `<scenario>.<domain>`. */
  readonly domain: string;
  /** slow-handshake's wait before answering the ClientHello, and slow-echo's per chunk (ms). */
  readonly delayMs: number;
  /** Longest time from accept to an established session (ms): the ClientHello, any delay, the handshake. */
  readonly handshakeTimeoutMs: number;
  /** The echo scenarios' limits; the behaviour scenarios keep the idle and lifetime ones. */
  readonly limits: SessionLimits;
}

export interface ScenarioServerEvents {
  /** The ClientHello named `scenario`. */
  onScenario(scenario: string): void;
  /** A scenario's handshake completed (ms since accept). */
  onOpen(handshakeMs: number, scenario: string): void;
  /** The connection has closed; reported once. `scenario` is undefined when none was recognised. */
  onClosed(report: ConnectionClosed, scenario: string | undefined): void;
}

interface Connection {
  readonly socket: net.Socket;
  readonly meta: ConnectionMeta;
  readonly acceptedAt: number;
  scenario: string | undefined;
  reason: CloseReason | undefined;
  handshakeMs: number | undefined;
  session: EchoSession | undefined;
  clientCertRefused: boolean;
  reported: boolean;
  timer: NodeJS.Timeout | undefined;
  /** slow-handshake's wait before the hand-over; cleared with the connection like `timer`. */
  delay: NodeJS.Timeout | undefined;
}

const CONNECTION = Symbol('scenario connection');
type Owned = net.Socket & { [CONNECTION]?: Connection };
type Wrapped = tls.TLSSocket & { _parent?: Owned };

export class ScenarioServer {
  private servers = new Map<string, tls.Server>();
  private readonly connections = new Set<Connection>();
  private readonly sessionLine: ConnectionLine;
  private readonly handshakeLog: SampledLog;
  private settings: ScenarioSettings;
  /** The echo scenarios' idle timeout. */
  private readonly idleCheck = new IdleCheck(this.connections);

  constructor(
    settings: ScenarioSettings,
    tlsOptions: ReadonlyMap<string, tls.TlsOptions>,
    private readonly events: ScenarioServerEvents,
    logger: Logger,
  ) {
    this.settings = settings;
    this.sessionLine = new ConnectionLine(logger, 'info', 'session ended');
    this.handshakeLog = new SampledLog(logger);
    this.setTlsOptions(tlsOptions);
    this.idleCheck.start(settings.limits.idleTimeoutMs);
  }

  /** Connections accepted and not yet closed. */
  get size(): number {
    return this.connections.size;
  }

  /** New certificates (a renewal): connections from now on get new servers, open ones keep theirs. */
  setTlsOptions(tlsOptions: ReadonlyMap<string, tls.TlsOptions>): void {
    const servers = new Map<string, tls.Server>();
    for (const [name, options] of tlsOptions) {
      const server = withoutWeakDhWarning(() => tls.createServer({ ...options, ALPNCallback: ({ protocols }) => protocols[0] }));
      server.on('secureConnection', (socket: Wrapped) => this.onSecure(name, socket));
      server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: Wrapped) => this.onTlsClientError(name, err, socket));
      servers.set(name, server);
    }
    this.servers = servers;
  }

  /** Delay, timeouts and limits for connections from now on (a reload). */
  setSettings(settings: ScenarioSettings): void {
    this.settings = settings;
    this.idleCheck.start(settings.limits.idleTimeoutMs);
  }

  /** Stops the idle check; call once every connection is gone (or being closed). */
  stop(): void {
    this.idleCheck.stop();
  }

  /** Takes an admitted raw socket (paused or not) and serves whatever scenario its ClientHello names. */
  accept(socket: net.Socket, meta: ConnectionMeta): void {
    const conn: Connection = {
      socket,
      meta,
      acceptedAt: performance.now(),
      scenario: undefined,
      reason: undefined,
      handshakeMs: undefined,
      session: undefined,
      clientCertRefused: false,
      reported: false,
      timer: undefined,
      delay: undefined,
    };
    this.connections.add(conn);
    (socket as Owned)[CONNECTION] = conn;
    socket.on('error', () => socket.destroy());
    // One deadline for everything before the session: the hello, a delay, the handshake.
    conn.timer = setTimeout(() => {
      if (conn.reason === undefined) {
        conn.reason = 'handshake-timeout';
        this.logHandshakeFailure(conn, 'handshake-timeout');
      }
      socket.destroy();
    }, this.settings.handshakeTimeoutMs);
    // An established connection reports from its session's close, which comes after the raw
    // socket's; this reports the others, a turn later (Node names a refused client certificate late).
    socket.once('close', () => {
      if (conn.handshakeMs === undefined) setImmediate(() => this.report(conn));
    });
    void this.route(conn);
  }

  /** Ends every connection now with `reason`. */
  closeAll(reason: CloseReason): void {
    for (const conn of this.connections) {
      conn.reason ??= reason;
      if (conn.session) conn.session.close(reason);
      else conn.socket.destroy();
    }
  }

  private async route(conn: Connection): Promise<void> {
    const { socket } = conn;
    const hello = await readClientHello(socket, { timeoutMs: this.settings.handshakeTimeoutMs });
    if (hello.kind === 'timeout') {
      if (conn.reason === undefined) {
        conn.reason = 'handshake-timeout';
        this.logHandshakeFailure(conn, 'handshake-timeout: no complete ClientHello');
      }
      socket.destroy();
      return;
    }
    if (hello.kind !== 'hello') {
      this.logHandshakeFailure(conn, hello.kind === 'invalid' ? `not a TLS ClientHello: ${hello.why}` : 'closed before the ClientHello');
      socket.destroy();
      return;
    }
    const scenario = scenarioForServerName(hello.serverName, this.settings.domain);
    if (scenario === undefined) {
      // A typo, or no SNI at all, never passes silently.
      this.logHandshakeFailure(conn, 'unrecognized_name', hello.serverName ?? '(no SNI)');
      socket.end(alertRecord(UNRECOGNIZED_NAME));
      return;
    }
    conn.scenario = scenario.name;
    this.events.onScenario(scenario.name);
    switch (scenario.name) {
      case 'handshake-alert':
        this.logHandshakeFailure(conn, 'handshake_failure alert sent (the scenario)');
        socket.end(alertRecord(HANDSHAKE_FAILURE));
        return;
      case 'stall-handshake':
        // Never answer: the deadline closes it.
        socket.resume();
        return;
      case 'slow-handshake':
        conn.delay = setTimeout(() => this.handOver(conn, hello.head), this.settings.delayMs);
        return;
      default:
        this.handOver(conn, hello.head);
    }
  }

  private handOver(conn: Connection, head: Buffer): void {
    const server = this.servers.get(conn.scenario!);
    if (server === undefined || conn.socket.destroyed) {
      conn.socket.destroy();
      return;
    }
    // The bytes read go back in front of the stream; the TLSSocket reads them first.
    conn.socket.unshift(head);
    server.emit('connection', conn.socket);
  }

  private onSecure(scenario: string, socket: Wrapped): void {
    const conn = socket._parent?.[CONNECTION];
    if (conn === undefined || conn.reason !== undefined) {
      socket.destroy();
      return;
    }
    socket.disableRenegotiation();
    conn.handshakeMs = performance.now() - conn.acceptedAt;
    clearTimeout(conn.timer);
    this.events.onOpen(conn.handshakeMs, scenario);
    const fields = this.sessionLine.enabled() ? sessionFields(socket) : undefined;
    const { limits, delayMs } = this.settings;
    if (isBehaviour(scenario)) {
      // The session is the scenario's misbehaviour; only the idle and lifetime limits bound it.
      boundBehaviour(socket, conn, limits);
      runBehaviour(scenario, socket, {
        delayMs,
        onClose: () => {
          this.logSession(conn, fields, undefined);
          this.report(conn);
        },
      });
      return;
    }
    conn.session = new EchoSession(socket, limits, (session) => {
      this.logSession(conn, fields, session.bytesIn);
      this.report(conn);
    });
  }

  private onTlsClientError(scenario: string, err: NodeJS.ErrnoException, socket: Wrapped): void {
    const conn = socket._parent?.[CONNECTION];
    socket.destroy();
    if (conn === undefined) return;
    conn.reason ??= 'handshake-failed';
    // client-cert-required refusing a missing or unverified certificate is a client-cert failure, as on the main listener.
    if (scenario === 'client-cert-required' && (socket.authorizationError || isMissingClientCert(err.code))) conn.clientCertRefused = true;
    // Most scenarios exist to fail handshakes: these lines are for debugging a client, sampled like the main listener's.
    this.logHandshakeFailure(conn, err.code ?? err.message);
  }

  private logHandshakeFailure(conn: Connection, error: string, serverName?: string): void {
    this.handshakeLog.log('info', `scenario:${conn.scenario ?? 'unknown'}`, 'handshake failed', {
      sessionId: conn.meta.id,
      remoteAddress: conn.meta.ip,
      scenario: conn.scenario,
      sni: serverName,
      reason: 'handshake-failed',
      error,
    });
  }

  /** `bytes` echoed, or undefined for a behaviour scenario (it doesn't count them). */
  private logSession(conn: Connection, fields: SessionFields | undefined, bytes: number | undefined): void {
    if (fields === undefined) return;
    const durationMs = performance.now() - conn.acceptedAt;
    this.sessionLine.write({
      sessionId: conn.meta.id,
      remoteAddress: conn.meta.ip,
      remotePort: conn.meta.port,
      proxyAddress: conn.meta.proxyAddress,
      scenario: conn.scenario,
      ...fields,
      bytesIn: bytes,
      bytesOut: bytes,
      handshakeMs: round(conn.handshakeMs),
      durationMs: round(durationMs),
      reason: conn.session?.reason ?? conn.reason ?? 'peer-closed',
      error: conn.session?.errorCode,
    });
  }

  private report(conn: Connection): void {
    if (conn.reported) return;
    conn.reported = true;
    clearTimeout(conn.timer);
    clearTimeout(conn.delay);
    this.connections.delete(conn);
    const session = conn.session;
    const established = conn.handshakeMs !== undefined;
    const report: ConnectionClosed = {
      id: conn.meta.id,
      reason: session?.reason ?? conn.reason ?? (established ? 'peer-closed' : 'handshake-failed'),
      handshakeMs: conn.handshakeMs,
      durationMs: performance.now() - conn.acceptedAt,
      bytesIn: session?.bytesIn ?? 0,
      bytesOut: session?.bytesOut ?? 0,
    };
    this.events.onClosed(conn.clientCertRefused ? { ...report, clientCertRefused: true } : report, conn.scenario);
  }
}

interface SessionFields {
  readonly tlsVersion: string | null;
  readonly cipher: string;
  readonly sni: string | undefined;
  readonly alpn: string | undefined;
}

function sessionFields(socket: tls.TLSSocket): SessionFields {
  const cipher = socket.getCipher();
  return { tlsVersion: socket.getProtocol(), cipher: cipher.standardName ?? cipher.name, sni: socket.servername || undefined, alpn: socket.alpnProtocol || undefined };
}

/**
 * The idle and lifetime limits on a behaviour session, so that a client that never closes a
 * no-echo session doesn't hold its slot for good. Per-socket timers: scenarios are for tests, not load.
 */
function boundBehaviour(socket: tls.TLSSocket, conn: Connection, limits: SessionLimits): void {
  if (limits.idleTimeoutMs > 0) {
    socket.setTimeout(limits.idleTimeoutMs, () => {
      conn.reason ??= 'idle-timeout';
      socket.destroy();
    });
  }
  if (limits.sessionTimeoutMs > 0) {
    const lifetime = setTimeout(() => {
      conn.reason ??= 'session-timeout';
      socket.destroy();
    }, limits.sessionTimeoutMs);
    socket.once('close', () => clearTimeout(lifetime));
  }
}

/**
 * Runs `make` without the SecurityWarning Node prints on stderr for a DH group under 2048 bits:
 * dh-1024 offers one on purpose, and the daemon's output is its log. Other warnings pass.
 */
function withoutWeakDhWarning<T>(make: () => T): T {
  const emitWarning = process.emitWarning;
  process.emitWarning = function filtered(this: NodeJS.Process, warning: string | Error, ...rest: unknown[]): void {
    if (String(warning).startsWith('DH parameter is less than 2048 bits')) return;
    (emitWarning as (...args: unknown[]) => void).call(process, warning, ...rest);
  } as typeof process.emitWarning;
  try {
    return make();
  } finally {
    process.emitWarning = emitWarning;
  }
}

function isBehaviour(name: string): name is Behaviour {
  return (BEHAVIOURS as readonly string[]).includes(name);
}

function round(ms: number | undefined): number | undefined {
  return ms === undefined ? undefined : Math.round(ms * 10) / 10;
}
