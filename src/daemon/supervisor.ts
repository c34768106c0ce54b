// The supervisor: the daemon's main process. It owns the listening sockets, decides admission
// before any TLS work, keeps every count that must be exact across the daemon (sessions per
// IP, sessions in all), the pending queue, the ticket keys, the certificates, reload and
// shutdown. Workers (or the inline server) only run handshakes and echo.

import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { Admission, type RefuseReason } from './admission';
import { AdminServer } from '../ops/admin-server';
import { acceptHandles, type HandleSocket, type RawSocket } from './handle-socket';
import { needsRenewal } from '../certs/local-ca';
import type { TlsMaterial } from '../certs/tls-material';
import { CidrList, normalizeAddress } from '../config/cidr';
import { formatHostPort, type Config, type HostPort } from '../config/config';
import { loadClientAuth, refreshLocalCrl, type LoadedClientAuth } from '../mtls/client-auth';
import { loadClientAuthPolicy, loadTlsMaterial } from './serving-material';
import { describeListenError, ListenError } from '../errors';
import { SampledLog, type Logger } from '../ops/logger';
import { Metrics } from '../ops/metrics';
import { PendingQueue } from './pending-queue';
import { readProxyHeader } from '../proxy/read-proxy-header';
import { SdNotifier } from '../ops/systemd';
import type { ConnectionClosed, ServerIdentity, TlsSettings } from './tls-server';
import { WorkerPool } from './worker-pool';
import { SCENARIOS } from '../scenarios/catalogue';
import type { ScenarioMaterial } from '../scenarios/scenario-cert-process';
import type { ScenarioServer, ScenarioSettings } from '../scenarios/scenario-server';
import type { SharedLimits, SharedLimitsSettings, SharedVerdict } from '../shared-limits/shared-limits';

const TICKET_KEYS_BYTES = 48;
const SWEEP_INTERVAL_MS = 10_000;
/** How often systemd's STATUS= line is refreshed (ms), when there is a NOTIFY_SOCKET. */
const STATUS_INTERVAL_MS = 5_000;
/** After the drain deadline, how long closed sessions get to report before we exit anyway (ms). */
const FINAL_CLOSE_GRACE_MS = 2000;
/**
 * Scenario certificates are made again once they are this old (ms): well before not-yet-valid's
 * leaf, which starts 30 days after they were made, would become valid.
 */
const SCENARIO_RENEW_AFTER_MS = 7 * 86_400_000;

export interface SupervisorOptions {
  /** Builds a fresh Config from the same sources (flags, env, file): used by reload. */
  readonly reloadConfig: () => Config;
  /** Listening descriptors from systemd socket activation; --listen is ignored when given. */
  readonly listenFds?: readonly number[] | undefined;
  readonly version: string;
  /** Wall clock for certificate renewal decisions; tests move it forward. Default: real time. */
  readonly clock?: () => Date;
}

interface Held {
  readonly ip: string;
  /** What the connection counts against in admission (see Admission.clientKey). */
  readonly key: string;
  readonly port: number;
  readonly socket: RawSocket;
  /** It holds a lease of the shared limits (--redis) too: release both. */
  readonly leased: boolean;
  /** With --proxy-protocol: who the connection came through, and what it sent after its header. */
  readonly proxied?: Proxied;
}

/** The client a PROXY header named (or the proxy itself), for a connection from a trusted proxy. */
interface Proxied {
  /** Normalised client address: the header's, or the proxy's own (LOCAL, UNKNOWN, UNSPEC). */
  readonly ip: string;
  readonly port: number;
  /** The proxy's address (normalised). */
  readonly proxyAddress: string;
  /** Bytes read past the header (the start of the ClientHello, often): whoever reads the socket next gets them first. */
  readonly rest: Buffer;
}

export function tlsSettingsOf(config: Config): TlsSettings {
  return {
    minTls: config.minTls,
    handshakeTimeoutMs: config.handshakeTimeoutMs,
    idleTimeoutMs: config.idleTimeoutMs,
    sessionTimeoutMs: config.sessionTimeoutMs,
    bandwidthBytesPerSec: config.bandwidthBytesPerSec,
    maxSessionBytes: config.maxSessionBytes,
  };
}

export function scenarioSettingsOf(config: Config): ScenarioSettings {
  return { domain: config.scenarioDomain, delayMs: config.scenarioDelayMs, handshakeTimeoutMs: config.handshakeTimeoutMs, limits: tlsSettingsOf(config) };
}

export class Supervisor {
  private config: Config;
  private material!: TlsMaterial;
  private clientAuth!: LoadedClientAuth;
  private ticketKeys = randomBytes(TICKET_KEYS_BYTES);
  private readonly admission: Admission;
  private readonly pending: PendingQueue<Held>;
  private pool: WorkerPool | undefined;
  private readonly listeners: net.Server[] = [];
  /** The test-peer scenarios (--scenarios): served here, whatever --workers is. */
  private scenarioServer: ScenarioServer | undefined;
  private scenarioListener: net.Server | undefined;
  private scenarioMaterial: ScenarioMaterial | undefined;
  private scenarioModules: ScenarioModules | undefined;
  /** --scenario-domain as at start: the certificates name it, so a reload can't change it. */
  private scenarioDomain = '';
  /** --proxy-protocol as at start: it picks the listeners' accept path, so a reload can't change it. */
  private readonly proxyProtocol: boolean;
  /** --trusted-proxy: who may connect with --proxy-protocol (a reload may change it). */
  private trustedProxies: CidrList;
  /** Connections from a trusted proxy whose header is being read: bounded, and closed at shutdown. */
  private readonly readingHeaders = new Set<net.Socket>();
  private readonly refusalLog: SampledLog;
  private readonly notifier: SdNotifier;
  readonly metrics: Metrics;
  private admin: AdminServer | undefined;
  private adminBound: HostPort | undefined;
  private readonly timers: NodeJS.Timeout[] = [];
  /** Connections handed to a worker and not yet closed (id → client address): the session slots in use. */
  private readonly held = new Map<number, string>();
  /** --redis: the limits shared with other instances; undefined when off. */
  private shared: SharedLimits | undefined;
  /** Ids in `held` that also hold a shared lease (main listener, --redis). */
  private readonly leased = new Set<number>();
  /** Connections, paused, waiting for the shared limits' answer (each at most --redis-timeout). */
  private readonly awaitingShared = new Set<RawSocket>();
  private sharedWaiter: (() => void) | undefined;
  private readonly redisLog: SampledLog;
  private nextId = 1;
  private ready = false;
  private draining = false;
  private stopped: Promise<void> | undefined;
  private drainWaiter: (() => void) | undefined;
  private starting: Promise<void> | undefined;
  /** Reloads and renewals, one at a time (both replace the certificates); see serialized(). */
  private refreshing: Promise<unknown> = Promise.resolve();
  private queuedReload: Promise<boolean> | undefined;
  private resolveDone!: () => void;
  /** Settles when shutdown has finished. */
  readonly done = new Promise<void>((resolve) => (this.resolveDone = resolve));

  constructor(
    config: Config,
    private readonly logger: Logger,
    private readonly options: SupervisorOptions,
  ) {
    this.config = config;
    this.proxyProtocol = config.proxyProtocol;
    this.trustedProxies = new CidrList(config.trustedProxy);
    this.admission = new Admission(config);
    this.pending = new PendingQueue<Held>(config.maxPending, config.pendingTimeoutMs, (h) => this.refuseHeld(h, 'pending-timeout'));
    this.refusalLog = new SampledLog(logger);
    this.redisLog = new SampledLog(logger);
    this.notifier = new SdNotifier(process.env, logger);
    this.metrics = new Metrics({
      sessionsActive: () => this.held.size,
      connectionsPending: () => this.pending.length,
      workersReady: () => this.pool?.readyCount ?? 0,
      clientEntries: () => this.admission.clients,
      version: options.version,
    });
  }

  /** Addresses actually listened on (after start), for logs and tests. */
  get addresses(): HostPort[] {
    return this.listeners.map((l) => {
      const a = l.address() as net.AddressInfo;
      return { host: a.address, port: a.port };
    });
  }

  /** Where the scenario listener listens (after start), or undefined when scenarios are off. */
  get scenarioAddress(): HostPort | undefined {
    const a = this.scenarioListener?.address() as net.AddressInfo | null | undefined;
    return a ? { host: a.address, port: a.port } : undefined;
  }

  get adminAddress(): HostPort | undefined {
    return this.adminBound;
  }

  get tls(): TlsMaterial {
    return this.material;
  }

  /** Counts for tests and STATUS=: sessions in slots, waiting, and IPs tracked. */
  get counts(): { sessions: number; pending: number; ipsHeld: number; workersReady: number } {
    return { sessions: this.held.size, pending: this.pending.length, ipsHeld: this.admission.clients.holding, workersReady: this.pool?.readyCount ?? 0 };
  }

  /** Loads certificates, starts the workers and the admin listener, then listens. Runs once. */
  start(): Promise<void> {
    this.starting ??= this.runStart();
    return this.starting;
  }

  private async runStart(): Promise<void> {
    this.material = await loadTlsMaterial(this.config, this.logger, this.options.clock?.());
    this.clientAuth = await loadClientAuthPolicy(this.config, this.material, this.logger, this.options.clock?.());
    this.logClientAuth('start');
    this.updateCertificateMetrics();
    if (this.config.scenarios !== undefined) await this.startScenarios();
    const pool = new WorkerPool(
      {
        workers: this.config.workers,
        settings: tlsSettingsOf(this.config),
        identity: this.identity(),
        logLevel: this.config.logLevel,
        logFormat: this.config.logFormat,
      },
      {
        onOpen: (_id, handshakeMs) => this.metrics.handshakeCompleted(handshakeMs),
        onClosed: this.poolOnClosed,
        onCapacity: () => this.dispatchPending(),
        onWorkerRestart: () => this.metrics.workerRestarted(),
        onFatal: (err) => {
          this.logger.error(err.message, { code: (err as { code?: string }).code });
          process.exitCode = 1;
          void this.shutdown('fatal');
        },
      },
      this.logger,
    );
    this.pool = pool;
    await pool.start();
    if (this.config.redis !== undefined) await this.openSharedLimits(this.config.redis);
    if (this.config.admin !== undefined) {
      this.admin = new AdminServer({
        address: this.config.admin,
        metrics: this.metrics,
        isReady: () => this.ready && !this.draining && this.redisReady(),
        logger: this.logger,
        scenarioDomain: this.scenarioServer === undefined ? undefined : this.scenarioDomain,
      });
      this.adminBound = await this.admin.listen();
    }
    await this.listen();
    if (this.scenarioServer !== undefined) await this.listenForScenarios(this.config.scenarios!);
    this.startTimers();
    this.ready = true;
    this.notifier.ready(this.statusText());
    this.notifier.startWatchdog();
  }

  private identity(): ServerIdentity {
    return { key: this.material.key, cert: this.material.cert, ticketKeys: this.ticketKeys, clientAuth: this.clientAuth.policy };
  }

  /**
   * Logs the client-certificate policy in force and what brought it in: the start (nothing when
   * off), a reload that changed it (earlier tickets no longer resume), or a re-signed CRL.
   */
  private logClientAuth(event: 'start' | 'reload' | 'crl-resigned'): void {
    const { policy, caFile, crlFile, crls } = this.clientAuth;
    if (policy.mode === 'off' && event === 'start') return;
    const nextUpdates = crls.flatMap((crl) => (crl.nextUpdate === undefined ? [] : [crl.nextUpdate.getTime()]));
    this.logger.info('client certificates', {
      event,
      clientAuth: policy.mode,
      clientCa: caFile,
      clientCrl: crlFile,
      revoked: crlFile === undefined ? undefined : crls.reduce((n, crl) => n + crl.revoked.length, 0),
      crlNextUpdate: nextUpdates.length === 0 ? undefined : new Date(Math.min(...nextUpdates)).toISOString(),
    });
  }

  private async listen(): Promise<void> {
    const targets: Array<{ fd: number } | { host: string; port: number }> =
      this.options.listenFds && this.options.listenFds.length > 0 ? this.options.listenFds.map((fd) => ({ fd })) : [this.config.listen];
    for (const target of targets) {
      // With --proxy-protocol, its own path: with it off, the hot path is the same code.
      const server = net.createServer({ pauseOnConnect: true, noDelay: true }, this.proxyProtocol ? this.proxiedOnConnection : this.serverOnConnection);
      await this.listenOn(server, { ...target, backlog: 4096 }, (err) => listenError(target, err));
      // Inline, connections come as bare handles, without the net.Socket a worker needs for
      // IPC and the inline server doesn't (see handle-socket.ts). Not with --proxy-protocol:
      // the header is read off a net.Socket.
      if (this.config.workers === 0 && !this.proxyProtocol) acceptHandles(server, this.handleSocketOnAccept, this.listenerOnError);
      this.listeners.push(server);
    }
  }

  /** Listens, rejecting with `failure(err)`; once listening, later errors (failed accepts) go to listenerOnError. */
  private listenOn(server: net.Server, options: net.ListenOptions, failure: (err: Error) => ListenError): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      server.once('error', (err) => reject(failure(err)));
      server.listen(options, () => {
        server.removeAllListeners('error');
        server.on('error', this.listenerOnError);
        resolve();
      });
    });
  }

  /** Makes the scenario certificates (in a child) and the server that serves them. */
  private async startScenarios(): Promise<void> {
    this.scenarioDomain = this.config.scenarioDomain;
    // Loaded only with --scenarios: a daemon without them keeps none of it (docs/architecture.md, "What serving loads").
    this.scenarioModules = await loadScenarioModules();
    this.scenarioMaterial = await this.makeScenarioMaterial(this.options.clock?.() ?? new Date());
    this.scenarioServer = new this.scenarioModules.ScenarioServer(
      scenarioSettingsOf(this.config),
      this.scenarioModules.tlsOptionsOf(this.scenarioMaterial),
      {
        onScenario: (scenario) => this.metrics.scenarioSession(scenario),
        onOpen: (handshakeMs) => this.metrics.handshakeCompleted(handshakeMs),
        onClosed: this.poolOnClosed,
      },
      this.logger,
    );
    this.metrics.scenariosServed(SCENARIOS.map((s) => s.name));
  }

  private async makeScenarioMaterial(now: Date): Promise<ScenarioMaterial> {
    const material = await this.scenarioModules!.makeScenarioMaterial(this.config.certDir, this.scenarioDomain, now);
    if (!material.intermediateAllowed) {
      this.logger.warn(
        'the local CA allows no intermediate below it (pathlen:0), so clients refuse the `intermediate` scenario too; `tls-echod cert generate --force` makes a CA that allows one (clients must trust the new ca.pem)',
        { certDir: this.config.certDir },
      );
    }
    return material;
  }

  // Its own listener, never the inline HandleSocket path: reading the ClientHello before any TLS
  // server has the connection needs a net.Socket (scenarios/peek-hello.ts).
  private async listenForScenarios(address: HostPort): Promise<void> {
    const onConnection = this.proxyProtocol ? this.scenarioProxiedOnConnection : this.scenarioOnConnection;
    const server = net.createServer({ pauseOnConnect: true, noDelay: true }, onConnection);
    await this.listenOn(
      server,
      { host: address.host, port: address.port, backlog: 511 },
      (err) => new ListenError(`--scenarios ${formatHostPort(address.host, address.port)}: ${describeListenError(err, '--scenarios')}`, { cause: err }),
    );
    this.scenarioListener = server;
  }

  // The same admission and session slots as the main listener; no waiting for a slot, though:
  // the pending queue hands connections to workers, and scenarios are served here.
  private readonly scenarioOnConnection = (socket: net.Socket): void => {
    if (socket.remoteAddress === undefined) {
      socket.destroy();
      return;
    }
    this.admitScenario(socket, normalizeAddress(socket.remoteAddress), socket.remotePort ?? 0, undefined);
  };

  private readonly scenarioProxiedOnConnection = (socket: net.Socket): void => {
    void this.readProxied(socket, (proxied) => this.admitScenario(socket, proxied.ip, proxied.port, proxied));
  };

  private admitScenario(socket: net.Socket, ip: string, port: number, proxied: Proxied | undefined): void {
    const key = this.admitted(socket, ip, proxied);
    if (key === undefined) return;
    if (this.held.size >= this.config.maxSessions) {
      this.admission.release(key);
      this.refuse(socket, ip, 'pool-full', proxied?.proxyAddress);
      return;
    }
    this.metrics.connectionAccepted();
    const id = this.nextId++;
    this.held.set(id, key);
    if (proxied === undefined) {
      this.scenarioServer!.accept(socket, { id, ip, port });
      return;
    }
    // The scenario server reads the ClientHello off the socket: the bytes read with the header come first.
    if (proxied.rest.length > 0) socket.unshift(proxied.rest);
    this.scenarioServer!.accept(socket, { id, ip, port, proxyAddress: proxied.proxyAddress });
  }

  private startTimers(): void {
    const every = (ms: number, fn: () => void): void => {
      const t = setInterval(fn, ms);
      t.unref();
      this.timers.push(t);
    };
    every(this.config.ticketRotationSec * 1000, () => this.rotateTicketKeys());
    every(SWEEP_INTERVAL_MS, () => this.admission.sweep());
    every(this.config.renewCheckSec * 1000, () => void this.renewIfDue());
    if (this.notifier.enabled) every(STATUS_INTERVAL_MS, () => this.notifier.status(this.statusText()));
  }

  private readonly serverOnConnection = (socket: net.Socket): void => {
    // Gone before we looked (reset in the accept backlog): nothing to admit or account for.
    if (socket.remoteAddress === undefined) {
      socket.destroy();
      return;
    }
    this.admit(socket, normalizeAddress(socket.remoteAddress), socket.remotePort ?? 0);
  };

  private readonly handleSocketOnAccept = (socket: HandleSocket): void => {
    this.admit(socket, normalizeAddress(socket.remoteAddress), socket.remotePort);
  };

  private readonly proxiedOnConnection = (socket: net.Socket): void => {
    void this.readProxied(socket, (proxied) => this.admit(socket, proxied.ip, proxied.port, proxied));
  };

  /**
   * --proxy-protocol: refuses a connection from outside --trusted-proxy, reads the PROXY header
   * of one from inside (bounded in bytes, and in time by --handshake-timeout), refuses it if
   * that fails, and otherwise passes on the client the header names. No admission yet: the
   * limits are the client's, not the proxy's.
   */
  private async readProxied(socket: net.Socket, then: (proxied: Proxied) => void): Promise<void> {
    if (socket.remoteAddress === undefined) {
      socket.destroy();
      return;
    }
    const proxyAddress = normalizeAddress(socket.remoteAddress);
    if (this.draining) {
      this.refuse(socket, proxyAddress, 'shutdown');
      return;
    }
    if (!this.trustedProxies.contains(proxyAddress)) {
      this.refuse(socket, proxyAddress, 'proxy-untrusted');
      return;
    }
    // Headers in flight hold no slot yet, so they get a bound of their own: as many as there
    // can be connections held.
    if (this.readingHeaders.size >= this.config.maxSessions + this.config.maxPending) {
      this.refuse(socket, proxyAddress, 'pool-full');
      return;
    }
    this.readingHeaders.add(socket);
    const result = await readProxyHeader(socket, this.config.handshakeTimeoutMs);
    this.readingHeaders.delete(socket);
    switch (result.kind) {
      case 'header': {
        // Its stream has started: unlike a socket never read, it reads ahead even paused (while
        // it waits for a slot, say), and a reset then is an 'error' event that, unheard, would
        // crash the daemon. The socket is destroyed by it, and a queued one is let go as destroyed.
        socket.on('error', ignoreSocketError);
        const client = result.header.client;
        if (client === undefined) then({ ip: proxyAddress, port: socket.remotePort ?? 0, proxyAddress, rest: result.rest });
        else then({ ip: normalizeAddress(client.address), port: client.port, proxyAddress, rest: result.rest });
        return;
      }
      case 'closed':
        // Gone (a balancer's plain TCP check, or closed at shutdown): nothing to refuse.
        socket.destroy();
        return;
      case 'invalid':
      case 'timeout':
        this.refuse(socket, proxyAddress, 'proxy-header-invalid', undefined, result.kind === 'timeout' ? `no complete header within ${this.config.handshakeTimeoutMs} ms` : result.why);
        return;
    }
  }

  // Failed accepts (EMFILE in a descriptor flood, say) come as fast as connections do: sampled.
  private readonly listenerOnError = (err: Error): void => {
    this.refusalLog.log('error', 'listener-error', 'listener error', { error: err.message });
  };

  // The hot path. Admission comes first and costs no TLS work: a refused client gets a reset.
  // `ip` (normalised) and `port` are the client's: the peer's, or with --proxy-protocol those
  // its header named (`proxied` then carries the proxy and the bytes read past the header).
  private admit(socket: RawSocket, ip: string, port: number, proxied?: Proxied): void {
    const key = this.admitted(socket, ip, proxied);
    if (key === undefined) return;
    if (this.shared !== undefined) {
      this.admitShared(this.shared, socket, ip, key, port, proxied);
      return;
    }
    this.accept(socket, ip, key, port, false, proxied);
  }

  /** An admitted connection: into a free slot, or the pending queue. */
  private accept(socket: RawSocket, ip: string, key: string, port: number, leased: boolean, proxied?: Proxied): void {
    this.metrics.connectionAccepted();
    if (this.pending.length === 0 && this.held.size < this.config.maxSessions) {
      const worker = this.pool!.pick();
      if (worker !== undefined) {
        this.dispatch(socket, ip, key, port, worker, leased, proxied);
        return;
      }
    }
    const held: Held = proxied === undefined ? { ip, key, port, socket, leased } : { ip, key, port, socket, leased, proxied };
    if (!this.pending.push(held)) this.refuseHeld(held, 'pool-full');
  }

  /**
   * The admission key the connection from `ip` now holds (release it once, when the connection
   * ends); undefined, with the connection refused, when draining or when admission refuses it.
   */
  private admitted(socket: RawSocket, ip: string, proxied?: Proxied): string | undefined {
    if (this.draining) {
      this.refuse(socket, ip, 'shutdown', proxied?.proxyAddress);
      return undefined;
    }
    const key = this.admission.clientKey(ip);
    const refused = this.admission.admit(ip, key);
    if (refused === undefined) return key;
    this.refuse(socket, ip, refused, proxied?.proxyAddress);
    return undefined;
  }

  private dispatch(socket: RawSocket, ip: string, key: string, port: number, worker: NonNullable<ReturnType<WorkerPool['pick']>>, leased: boolean, proxied?: Proxied): void {
    const id = this.nextId++;
    // Only the admission key is kept: the socket now belongs to the worker (holding it would
    // keep a dead net.Socket per session alive in the supervisor).
    this.held.set(id, key);
    if (leased) this.leased.add(id);
    if (proxied === undefined) worker.dispatch(socket, { id, ip, port });
    else worker.dispatch(socket, { id, ip, port, proxyAddress: proxied.proxyAddress }, proxied.rest);
  }

  /** Moves waiting connections into free slots, oldest first. */
  private dispatchPending(): void {
    while (this.pending.length > 0 && this.held.size < this.config.maxSessions) {
      const worker = this.pool!.pick();
      if (worker === undefined) return;
      const held = this.pending.shift()!;
      if (held.socket.destroyed) {
        this.admission.release(held.key);
        if (held.leased) this.shared?.release(held.key);
        // Accepted, so counted as ended: a handshake failure, as a reset in a worker's hands is.
        this.metrics.handshakeFailed('handshake-failed');
        continue;
      }
      this.dispatch(held.socket, held.ip, held.key, held.port, worker, held.leased, held.proxied);
    }
  }

  private readonly poolOnClosed = (report: ConnectionClosed): void => {
    const key = this.held.get(report.id);
    if (key === undefined) return;
    this.held.delete(report.id);
    this.admission.release(key);
    if (this.leased.size > 0 && this.leased.delete(report.id)) this.shared?.release(key);
    if (report.reason === 'handshake-failed' || report.reason === 'handshake-timeout') {
      this.metrics.handshakeFailed(report.clientCertRefused ? 'client-cert' : report.reason);
    } else {
      this.metrics.sessionClosed(report.reason, report.durationMs, report.bytesIn, report.bytesOut);
    }
    if (this.pending.length > 0) this.dispatchPending();
    if (this.draining && this.held.size === 0) this.drainWaiter?.();
  };

  private refuseHeld(held: Held, reason: RefuseReason): void {
    this.admission.release(held.key);
    if (held.leased) this.shared?.release(held.key);
    this.refuse(held.socket, held.ip, reason, held.proxied?.proxyAddress);
  }

  /** Resets `socket`, counts and logs (sampled) the refusal; `proxyAddress` when a PROXY header named `ip`, `why` to say more. */
  private refuse(socket: RawSocket, ip: string, reason: RefuseReason, proxyAddress?: string, why?: string): void {
    // A reset, before any ServerHello: the refusal costs no handshake.
    socket.resetAndDestroy();
    this.metrics.connectionRefused(reason);
    const fields: Record<string, unknown> = { remoteAddress: ip, reason };
    if (proxyAddress !== undefined) fields.proxyAddress = proxyAddress;
    if (why !== undefined) fields.why = why;
    this.refusalLog.log('info', reason, 'connection refused', fields);
  }

  // --- Shared limits (--redis) -------------------------------------------------------------

  private async openSharedLimits(url: string): Promise<void> {
    const { SharedLimits, redactRedisUrl } = await import('../shared-limits/shared-limits');
    const redis = redactRedisUrl(url);
    this.metrics.setRedisUp(false);
    this.shared = await SharedLimits.open(sharedLimitsSettingsOf(this.config), {
      url,
      password: this.config.redisPassword,
      onError: (what, err) => {
        this.metrics.redisError();
        this.redisLog.log('warn', `redis-${what}`, 'redis error: the local limits decide meanwhile', { redis, what, error: err.message });
      },
      onUp: (up) => {
        this.metrics.setRedisUp(up);
        this.redisLog.log(up ? 'info' : 'warn', 'redis-up', up ? 'redis answers: per-client limits are shared' : 'redis does not answer: per-client limits are local', { redis });
      },
    });
  }

  /** /readyz: false while Redis doesn't answer, only with --redis-required. */
  private redisReady(): boolean {
    return !this.config.redisRequired || this.shared === undefined || this.shared.up;
  }

  /**
   * The local limits admitted the connection (it holds the local count for `key`); now the
   * shared ones decide, the socket paused meanwhile. 'ok' and 'unavailable' (the local decision
   * stands) hold a shared lease as well; a shared refusal gives the local count back.
   */
  private admitShared(shared: SharedLimits, socket: RawSocket, ip: string, key: string, port: number, proxied?: Proxied): void {
    this.awaitingShared.add(socket);
    void shared.acquire(key).then((verdict) => this.sharedOnVerdict(shared, socket, ip, key, port, verdict, proxied));
  }

  private sharedOnVerdict(shared: SharedLimits, socket: RawSocket, ip: string, key: string, port: number, verdict: SharedVerdict, proxied: Proxied | undefined): void {
    this.awaitingShared.delete(socket);
    if (this.awaitingShared.size === 0) this.sharedWaiter?.();
    const leased = verdict === 'ok' || verdict === 'unavailable';
    if (leased && !this.draining && !socket.destroyed) {
      this.accept(socket, ip, key, port, true, proxied);
      return;
    }
    this.admission.release(key);
    if (leased) shared.release(key);
    if (socket.destroyed) return;
    this.refuse(socket, ip, this.draining ? 'shutdown' : (verdict as 'rate-limited' | 'ip-limit'), proxied?.proxyAddress);
  }

  /** Resolves once no connection waits for the shared limits (each waits at most --redis-timeout). */
  private sharedSettled(): Promise<void> {
    if (this.awaitingShared.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.sharedWaiter = () => {
        this.sharedWaiter = undefined;
        resolve();
      };
    });
  }

  private rotateTicketKeys(): void {
    this.ticketKeys = randomBytes(TICKET_KEYS_BYTES);
    this.pool?.setTicketKeys(this.ticketKeys);
    this.logger.debug('ticket keys rotated');
  }

  /** Renews a self-generated leaf with 1/3 of its lifetime or less left. Runs every --renew-check. */
  renewIfDue(): Promise<void> {
    return this.serialized(() => this.runRenewIfDue());
  }

  private async runRenewIfDue(): Promise<void> {
    if (this.draining) return;
    const now = this.options.clock?.() ?? new Date();
    if (this.clientAuth.localCrl) await this.resignCrlIfDue(now);
    let renewed = false;
    if (this.material.source === 'generated' && needsRenewal(this.material.leaf, now)) {
      try {
        this.material = await loadTlsMaterial(this.config, this.logger, now);
        this.pool?.setIdentity(this.identity());
        this.updateCertificateMetrics();
        this.metrics.reload(true);
        renewed = true;
      } catch (err) {
        this.metrics.reload(false);
        this.logger.error('certificate renewal failed; the current certificate keeps serving', { error: (err as Error).message });
      }
    }
    // A renewed main leaf may come with a new local CA: the scenarios follow it.
    if (renewed || this.scenarioRenewalDue(now)) await this.renewScenarios(now);
  }

  private scenarioRenewalDue(now: Date): boolean {
    const material = this.scenarioMaterial;
    return material !== undefined && now.getTime() - Date.parse(material.issuedAt) >= SCENARIO_RENEW_AFTER_MS;
  }

  // Every scenario certificate is made again, valid and expired alike, relative to `now`. A failure
  // leaves the current ones serving, and is tried again at the next check.
  private async renewScenarios(now: Date): Promise<void> {
    if (this.scenarioServer === undefined) return;
    try {
      const material = await this.makeScenarioMaterial(now);
      this.scenarioMaterial = material;
      this.scenarioServer.setTlsOptions(this.scenarioModules!.tlsOptionsOf(material));
      this.logger.info('renewed the scenario certificates', { certDir: this.config.certDir, issuedAt: material.issuedAt });
    } catch (err) {
      this.logger.error('renewing the scenario certificates failed; the current ones keep serving', { error: (err as Error).message });
    }
  }

  // The local CA's client.crl, re-signed before its next update: past it, OpenSSL would refuse
  // every client certificate. A failure leaves the current CRL serving and is tried again at
  // the next check.
  private async resignCrlIfDue(now: Date): Promise<void> {
    try {
      if (!(await refreshLocalCrl(this.config.certDir, now))) return;
      this.clientAuth = loadClientAuth(this.config, this.material, now);
      this.pool?.setIdentity(this.identity());
      this.logClientAuth('crl-resigned');
    } catch (err) {
      this.logger.error('re-signing the client CRL failed; the current one keeps serving', { error: (err as Error).message });
    }
  }

  /** Runs `fn` after every reload or renewal already started or queued has finished. */
  private serialized<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.refreshing.then(fn);
    this.refreshing = run.catch(() => {});
    return run;
  }

  /**
   * SIGHUP: re-reads the config file and certificates and applies them to new connections.
   * Anything invalid is rejected whole and the old config keeps serving. Resolves to success.
   */
  reload(): Promise<boolean> {
    // SIGHUPs that arrive while one reload waits to run share it: at most one runs and one waits.
    this.queuedReload ??= this.serialized(() => {
      this.queuedReload = undefined;
      return this.runReload();
    });
    return this.queuedReload;
  }

  private async runReload(): Promise<boolean> {
    if (this.draining) return false;
    this.notifier.reloading();
    try {
      const next = this.options.reloadConfig();
      const material = await loadTlsMaterial(next, this.logger, this.options.clock?.());
      const clientAuth = await loadClientAuthPolicy(next, material, this.logger, this.options.clock?.());
      for (const field of ['listen', 'workers', 'admin', 'logFormat', 'ticketRotationSec', 'renewCheckSec', 'scenarios', 'scenarioDomain', 'proxyProtocol', 'redis', 'redisPassword'] as const) {
        if (JSON.stringify(next[field]) !== JSON.stringify(this.config[field])) {
          this.logger.warn(`reload: ${field} changed; it takes effect at the next restart`, { field });
        }
      }
      const policyChanged = clientAuth.policy.context !== this.clientAuth.policy.context;
      this.config = next;
      this.material = material;
      this.clientAuth = clientAuth;
      this.admission.update(next);
      // With --proxy-protocol turned off, the protocol stays on until the restart, for the proxies trusted so far.
      if (next.trustedProxy.length > 0) this.trustedProxies = new CidrList(next.trustedProxy);
      this.shared?.update(sharedLimitsSettingsOf(next));
      this.pending.setLimits(next.maxPending, next.pendingTimeoutMs);
      this.pool?.setSettings(tlsSettingsOf(next), next.logLevel);
      // The domain stays the one the scenario certificates were made for, until a restart.
      this.scenarioServer?.setSettings({ ...scenarioSettingsOf(next), domain: this.scenarioDomain });
      this.pool?.setIdentity(this.identity());
      this.logger.level = next.logLevel;
      this.updateCertificateMetrics();
      this.metrics.reload(true);
      this.logger.info('reloaded', { leafFingerprint256: material.leaf.fingerprint256, notAfter: material.leaf.notAfter.toISOString() });
      // Earlier tickets carry the old policy's session context: they no longer resume.
      if (policyChanged) this.logClientAuth('reload');
      return true;
    } catch (err) {
      this.metrics.reload(false);
      this.logger.error('reload failed; the previous configuration keeps serving', { error: (err as Error).message });
      return false;
    } finally {
      this.notifier.ready(this.statusText());
    }
  }

  private updateCertificateMetrics(): void {
    this.metrics.setCertificateNotAfter('leaf', this.material.leaf.notAfter);
    this.metrics.setCertificateNotAfter('ca', this.material.caInfo?.notAfter);
  }

  private statusText(): string {
    return `${this.held.size} sessions, ${this.pending.length} waiting, ${this.pool?.readyCount ?? 0}/${this.pool?.size ?? 0} workers ready`;
  }

  /**
   * Stops accepting at once, lets sessions finish until --drain-timeout, then closes the rest
   * with reason `shutdown`. Runs once; later calls return the same promise.
   */
  shutdown(why: string): Promise<void> {
    this.stopped ??= this.runShutdown(why);
    return this.stopped;
  }

  private async runShutdown(why: string): Promise<void> {
    this.draining = true;
    // A signal during start-up (certificate generation, forking workers): let start finish, so
    // everything it opens is open before this closes it, rather than opened after.
    await this.starting?.catch(() => {});
    this.logger.info('shutting down', { why, sessions: this.held.size, drainTimeoutMs: this.config.drainTimeoutMs });
    this.notifier.stopping();
    // close() stops accepting now; its callback would wait for every inline session to end.
    for (const l of this.listeners) l.close();
    this.scenarioListener?.close();
    // Their header reads end as 'closed': nothing more is done with them.
    for (const socket of this.readingHeaders) socket.destroy();
    for (const h of this.pending.drain()) this.refuseHeld(h, 'shutdown');
    for (const t of this.timers) clearInterval(t);
    await this.sharedSettled();
    if (!(await this.waitForSessions(this.config.drainTimeoutMs))) {
      this.logger.info('drain timeout: closing remaining sessions', { sessions: this.held.size });
      this.pool?.closeAll('shutdown');
      this.scenarioServer?.closeAll('shutdown');
      await this.waitForSessions(FINAL_CLOSE_GRACE_MS);
    }
    await this.pool?.stop();
    this.scenarioServer?.stop();
    await this.shared?.close();
    await this.admin?.close();
    await this.notifier.flush();
    this.notifier.close();
    this.logger.info('stopped');
    this.resolveDone();
  }

  /** Resolves true once no session is held, false if `ms` pass first. */
  private waitForSessions(ms: number): Promise<boolean> {
    if (this.held.size === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.drainWaiter = undefined;
        resolve(false);
      }, ms);
      this.drainWaiter = () => {
        clearTimeout(timer);
        this.drainWaiter = undefined;
        resolve(true);
      };
    });
  }
}

function ignoreSocketError(): void {}

function sharedLimitsSettingsOf(config: Config): SharedLimitsSettings {
  return {
    prefix: config.redisPrefix,
    timeoutMs: config.redisTimeoutMs,
    connRatePerSec: config.connRatePerSec,
    connBurst: config.connBurst,
    maxConnsPerIp: config.maxConnsPerIp,
  };
}

type ScenarioModules = Awaited<ReturnType<typeof loadScenarioModules>>;

/** The scenario listener's modules, imported when --scenarios is on. */
async function loadScenarioModules() {
  const [{ ScenarioServer }, { scenarioTlsOptions, dh1024Parameters }, { makeScenarioMaterial }] = await Promise.all([
    import('../scenarios/scenario-server'),
    import('../scenarios/scenario-tls'),
    import('../scenarios/scenario-cert-process'),
  ]);
  const tlsOptionsOf = (material: ScenarioMaterial): ReturnType<typeof scenarioTlsOptions> =>
    scenarioTlsOptions({ certs: material.certs, ecdsa: material.ecdsa, rsa: material.rsa, localCa: material.localCa, dh1024: dh1024Parameters() });
  return { ScenarioServer, makeScenarioMaterial, tlsOptionsOf };
}

function listenError(target: { fd: number } | { host: string; port: number }, err: Error): ListenError {
  const where = 'fd' in target ? `socket-activated fd ${target.fd}` : `--listen ${formatHostPort(target.host, target.port)}`;
  return new ListenError(`${where}: ${describeListenError(err, '--listen')}`, { cause: err });
}
