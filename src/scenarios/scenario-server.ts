// The scenario listener's connection path (issue 15): read the ClientHello's server name off the
// raw socket before any TLS, pick the scenario it names, and hand the connection (with the bytes
// read) to that scenario's tls.Server, or answer with an alert. Each connection is reported once
// when it has closed, so the supervisor's counts can stay exact as they do for the main listener.
// Not wired into `serve` yet: the supervisor, its admission and the config come next.

import type net from 'node:net';
import tls from 'node:tls';
import { EchoSession, type CloseReason, type SessionLimits } from '../daemon/session';
import { HANDSHAKE_FAILURE, UNRECOGNIZED_NAME, alertRecord } from './alert';
import { BEHAVIOURS, runBehaviour, type Behaviour } from './behaviour';
import { scenarioForServerName } from './catalogue';
import { readClientHello } from './peek-hello';

export interface ScenarioServerOptions {
  /** Server names are `<scenario>.<domain>`. */
  readonly domain: string;
  /** slow-handshake's wait before answering the ClientHello, and slow-echo's per chunk (ms). */
  readonly delayMs: number;
  /** Longest time from accept to an established session (ms): the ClientHello, any delay, the handshake. */
  readonly handshakeTimeoutMs: number;
  /** Each scenario's tls.Server options (scenario-tls.ts). */
  readonly tls: ReadonlyMap<string, tls.TlsOptions>;
  readonly limits: SessionLimits;
}

export interface ScenarioServerEvents {
  /** A scenario's handshake completed (ms since accept). */
  onOpen(scenario: string, handshakeMs: number): void;
  /** The connection has closed; `scenario` is undefined when no scenario was recognised. */
  onClosed(scenario: string | undefined, reason: CloseReason): void;
}

interface Connection {
  readonly socket: net.Socket;
  readonly acceptedAt: number;
  scenario: string | undefined;
  reason: CloseReason | undefined;
  established: boolean;
  reported: boolean;
  timer: NodeJS.Timeout | undefined;
}

const CONNECTION = Symbol('scenario connection');
type Owned = net.Socket & { [CONNECTION]?: Connection };

export class ScenarioServer {
  private readonly servers = new Map<string, tls.Server>();
  private readonly connections = new Set<Connection>();

  constructor(
    private readonly options: ScenarioServerOptions,
    private readonly events: ScenarioServerEvents,
  ) {
    for (const [name, tlsOptions] of options.tls) {
      const server = tls.createServer({ ...tlsOptions, ALPNCallback: ({ protocols }) => protocols[0] });
      server.on('secureConnection', (socket: tls.TLSSocket) => this.onSecure(name, socket));
      server.on('tlsClientError', (_err: Error, socket: tls.TLSSocket) => {
        const conn = (socket as tls.TLSSocket & { _parent?: Owned })._parent?.[CONNECTION];
        if (conn !== undefined) conn.reason ??= 'handshake-failed';
        socket.destroy();
      });
      this.servers.set(name, server);
    }
  }

  /** Connections accepted and not yet closed. */
  get size(): number {
    return this.connections.size;
  }

  /** Takes an admitted raw socket (paused or not) and serves whatever scenario its ClientHello names. */
  accept(socket: net.Socket): void {
    const conn: Connection = { socket, acceptedAt: performance.now(), scenario: undefined, reason: undefined, established: false, reported: false, timer: undefined };
    this.connections.add(conn);
    (socket as Owned)[CONNECTION] = conn;
    socket.on('error', () => socket.destroy());
    // One deadline for everything before the session: the hello, a delay, the handshake.
    conn.timer = setTimeout(() => {
      if (conn.established) return;
      conn.reason ??= 'handshake-timeout';
      socket.destroy();
    }, this.options.handshakeTimeoutMs);
    // A session reports from its own close, which comes after the raw socket's; this reports the
    // connections that never got one, a turn later (Node names a refused client certificate late).
    socket.once('close', () => {
      if (!conn.established) setImmediate(() => this.report(conn, conn.reason ?? 'handshake-failed'));
    });
    void this.route(conn);
  }

  /** Ends every connection now with `reason`. */
  closeAll(reason: CloseReason): void {
    for (const conn of this.connections) {
      conn.reason ??= reason;
      conn.socket.destroy();
    }
  }

  private async route(conn: Connection): Promise<void> {
    const { socket } = conn;
    const hello = await readClientHello(socket, { timeoutMs: this.options.handshakeTimeoutMs });
    if (hello.kind === 'timeout') {
      conn.reason ??= 'handshake-timeout';
      socket.destroy();
      return;
    }
    if (hello.kind !== 'hello') {
      socket.destroy();
      return;
    }
    const scenario = scenarioForServerName(hello.serverName, this.options.domain);
    if (scenario === undefined) {
      // A typo, or no SNI at all, never passes silently.
      socket.end(alertRecord(UNRECOGNIZED_NAME));
      return;
    }
    conn.scenario = scenario.name;
    switch (scenario.name) {
      case 'handshake-alert':
        socket.end(alertRecord(HANDSHAKE_FAILURE));
        return;
      case 'stall-handshake':
        // Never answer: the deadline closes it.
        return;
      case 'slow-handshake':
        setTimeout(() => this.handOver(conn, hello.head), this.options.delayMs).unref();
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

  private onSecure(scenario: string, socket: tls.TLSSocket): void {
    const conn = (socket as tls.TLSSocket & { _parent?: Owned })._parent?.[CONNECTION];
    if (conn === undefined || conn.reason !== undefined) {
      socket.destroy();
      return;
    }
    conn.established = true;
    clearTimeout(conn.timer);
    this.events.onOpen(scenario, performance.now() - conn.acceptedAt);
    if (isBehaviour(scenario)) {
      // The session is the scenario's misbehaviour; the idle and lifetime limits don't apply to it.
      runBehaviour(scenario, socket, { delayMs: this.options.delayMs, onClose: () => this.report(conn, conn.reason ?? 'peer-closed') });
      return;
    }
    new EchoSession(socket, this.options.limits, (session) => this.report(conn, session.reason ?? 'peer-closed'));
  }

  private report(conn: Connection, reason: CloseReason): void {
    if (conn.reported) return;
    conn.reported = true;
    clearTimeout(conn.timer);
    this.connections.delete(conn);
    this.events.onClosed(conn.scenario, reason);
  }
}

function isBehaviour(name: string): name is Behaviour {
  return (BEHAVIOURS as readonly string[]).includes(name);
}
