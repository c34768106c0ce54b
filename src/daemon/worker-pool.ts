// The supervisor's side of the workers: a bounded pool of processes (or one inline server
// with --workers 0) that take admitted sockets. It picks the least-loaded ready worker, keeps
// the handles in flight to each one bounded (send()'s return value is not backpressure),
// restarts a crashed worker with backoff, and gives up on a crash loop.

import assert from 'node:assert/strict';
import { fork, type ChildProcess } from 'node:child_process';
import type net from 'node:net';
import path from 'node:path';
import type { LogFormat, LogLevel } from '../config/config';
import { WorkerCrashLoopError } from '../errors';
import { HandleSocket, type RawSocket } from './handle-socket';
import { identityToWire, ticketKeysToWire, type FromWorker, type ToWorker } from './ipc';
import { setSoleStdoutWriter, type Logger } from '../ops/logger';
import { takeBuffered } from '../proxy/read-proxy-header';
import type { CloseReason } from './session';
import { TlsEchoServer, type ConnectionClosed, type ConnectionMeta, type ServerIdentity, type TlsSettings } from './tls-server';

/** Handles sent to one worker and not yet written to its channel. */
const MAX_IN_FLIGHT_PER_WORKER = 128;
/** Restart backoff: first delay, doubling per crash in the window, up to the max (ms). */
const RESTART_BACKOFF_MS = 100;
const RESTART_BACKOFF_MAX_MS = 10_000;
/** More crashes than this within the window is a crash loop: the daemon stops. */
const CRASH_LOOP_LIMIT = 5;
const CRASH_LOOP_WINDOW_MS = 60_000;

export interface PoolEvents {
  onOpen(id: number, handshakeMs: number): void;
  onClosed(report: ConnectionClosed): void;
  /**
   * A worker can take connections again (started, restarted, or its handles in flight fell
   * below the bound): waiting connections may move.
   */
  onCapacity(): void;
  /** A worker restart was scheduled after an unexpected exit. */
  onWorkerRestart(index: number): void;
  /** The pool can't go on (crash loop): the daemon must stop. */
  onFatal(err: Error): void;
}

export interface PoolOptions {
  readonly workers: number;
  readonly settings: TlsSettings;
  readonly identity: ServerIdentity;
  readonly logLevel: LogLevel;
  readonly logFormat: LogFormat;
}

interface Worker {
  readonly index: number;
  /** Connections handed to this worker and not yet reported closed. */
  readonly load: number;
  /** Started and able to take connections (a process has said so; inline always is). */
  readonly ready: boolean;
  canTake(): boolean;
  /** Hands over an admitted socket; `rest` (with --proxy-protocol): bytes already read off it, which it must yield first. */
  dispatch(socket: RawSocket, meta: ConnectionMeta, rest?: Buffer): void;
  /** Certificate, key and ticket keys for connections from now on. */
  setIdentity(identity: ServerIdentity): void;
  setTicketKeys(keys: Buffer): void;
  /** Limits for new sessions, and the log level, after a reload. */
  setSettings(settings: TlsSettings, logLevel: LogLevel): void;
  closeAll(reason: CloseReason): void;
  stop(): Promise<void>;
}

/** --workers 0: the same TlsEchoServer in the supervisor, no IPC. */
class InlineWorker implements Worker {
  readonly index = 0;
  readonly ready = true;
  private readonly server: TlsEchoServer;

  constructor(options: PoolOptions, events: PoolEvents, logger: Logger) {
    this.server = new TlsEchoServer(options.settings, options.identity, events, logger);
  }

  get load(): number {
    return this.server.size;
  }

  canTake(): boolean {
    return true;
  }

  dispatch(socket: RawSocket, meta: ConnectionMeta, rest?: Buffer): void {
    // Only a net.Socket has bytes read off it (the PROXY header path never takes bare handles).
    if (rest !== undefined && rest.length > 0) (socket as net.Socket).unshift(rest);
    this.server.accept(socket, meta);
  }

  setIdentity(identity: ServerIdentity): void {
    this.server.setIdentity(identity);
  }

  setTicketKeys(keys: Buffer): void {
    this.server.setTicketKeys(keys);
  }

  // The log level is the supervisor's own logger's, which the supervisor sets.
  setSettings(settings: TlsSettings): void {
    this.server.setSettings(settings);
  }

  closeAll(reason: CloseReason): void {
    this.server.closeAll(reason);
  }

  async stop(): Promise<void> {
    this.server.closeAll('shutdown');
    this.server.stop();
  }
}

class ProcessWorker implements Worker {
  ready = false;
  private inFlight = 0;
  /**
   * Each connection handed over and holding a slot here (by id, until the worker reports it
   * closed or exits): its socket, and the handle that carries its descriptor. Node closes the supervisor's copy of a sent handle when
   * the worker acknowledges it, and queues the next ones until then; if the worker dies first,
   * Node (20) closes neither the one awaiting its acknowledgement nor the queued ones, and calls
   * back for none. So at the worker's exit every one still here is closed, or its descriptor
   * would stay open in the supervisor and its client wait forever. Closing one the worker did
   * take closes nothing more: its copy was closed at the acknowledgement.
   */
  readonly held = new Map<number, { readonly socket: RawSocket; readonly handle: { close(): void } | null | undefined }>();
  private exited = false;
  private readonly exitPromise: Promise<void>;

  constructor(
    readonly index: number,
    readonly child: ChildProcess,
    private readonly onMessage: (worker: ProcessWorker, message: FromWorker) => void,
    onExit: (worker: ProcessWorker, code: number | null, signal: NodeJS.Signals | null) => void,
    private readonly onCapacity: () => void,
  ) {
    child.on('message', (message: FromWorker) => this.onMessage(this, message));
    // Errors on the channel (EPIPE after a crash) surface again as 'exit'; nothing else to do.
    child.on('error', () => {});
    this.exitPromise = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exited = true;
        this.ready = false;
        // The ids stay for onExit, which releases their slots.
        for (const { socket, handle } of this.held.values()) {
          socket.destroy();
          handle?.close();
        }
        onExit(this, code, signal);
        resolve();
      });
    });
  }

  /** The worker reported connection `id` closed: it is no longer the supervisor's to close. */
  closed(id: number): boolean {
    return this.held.delete(id);
  }

  get load(): number {
    return this.held.size;
  }

  canTake(): boolean {
    return this.ready && this.inFlight < MAX_IN_FLIGHT_PER_WORKER;
  }

  dispatch(socket: RawSocket, meta: ConnectionMeta, rest?: Buffer): void {
    // The supervisor takes bare handles only with --workers 0 (Supervisor.listen).
    assert(!(socket instanceof HandleSocket), 'a HandleSocket cannot be sent to a worker process');
    this.held.set(meta.id, { socket, handle: (socket as unknown as { _handle?: { close(): void } | null })._handle });
    this.inFlight++;
    const message: ToWorker = meta.proxyAddress === undefined ? { t: 'conn', id: meta.id, ip: meta.ip, port: meta.port } : this.proxiedMessage(socket as net.Socket, meta, rest);
    this.child.send(message, socket, (err) => {
      // Not delivered: the worker is going away; its exit releases this connection's slot.
      if (err) socket.destroy();
      if (this.inFlight-- === MAX_IN_FLIGHT_PER_WORKER) this.onCapacity();
    });
  }

  // A socket's own buffer stays here when its handle goes: the bytes read past its PROXY header,
  // and any read ahead since, travel in the message. The send must follow in this same turn.
  private proxiedMessage(socket: net.Socket, meta: ConnectionMeta, rest: Buffer | undefined): ToWorker {
    const buffered = takeBuffered(socket);
    const all = rest === undefined || rest.length === 0 ? buffered : buffered.length === 0 ? rest : Buffer.concat([rest, buffered]);
    return { t: 'conn', id: meta.id, ip: meta.ip, port: meta.port, proxyAddress: meta.proxyAddress, rest: all.length > 0 ? all.toString('base64') : undefined };
  }

  setIdentity(identity: ServerIdentity): void {
    this.post({ t: 'identity', identity: identityToWire(identity) });
  }

  setTicketKeys(keys: Buffer): void {
    this.post({ t: 'tickets', ticketKeys: ticketKeysToWire(keys) });
  }

  setSettings(settings: TlsSettings, logLevel: LogLevel): void {
    this.post({ t: 'settings', settings, logLevel });
  }

  closeAll(reason: CloseReason): void {
    this.post({ t: 'close-all', reason });
  }

  post(message: ToWorker): void {
    if (!this.exited && this.child.connected) this.child.send(message, (err) => void err);
  }

  async stop(): Promise<void> {
    if (!this.exited) {
      this.post({ t: 'stop' });
      this.child.disconnect();
      const timer = setTimeout(() => this.child.kill('SIGKILL'), 2000);
      await this.exitPromise;
      clearTimeout(timer);
    }
  }
}

export class WorkerPool {
  private readonly workers: Worker[] = [];
  private readonly crashTimes: number[] = [];
  private readonly restartTimers = new Set<NodeJS.Timeout>();
  private stopping = false;
  private settings: TlsSettings;
  private identity: ServerIdentity;
  private logLevel: LogLevel;

  constructor(
    private readonly options: PoolOptions,
    private readonly events: PoolEvents,
    private readonly logger: Logger,
  ) {
    this.settings = options.settings;
    this.identity = options.identity;
    this.logLevel = options.logLevel;
  }

  /** Starts the workers; resolves once every one is ready. */
  async start(): Promise<void> {
    // Worker processes inherit this process's stdout, and their log lines must not cut into ours.
    setSoleStdoutWriter(this.options.workers === 0);
    if (this.options.workers === 0) {
      this.workers.push(new InlineWorker(this.options, this.events, this.logger));
      return;
    }
    await Promise.all(Array.from({ length: this.options.workers }, (_, i) => this.spawn(i)));
  }

  get size(): number {
    return this.workers.length;
  }

  /** Workers ready to take connections. */
  get readyCount(): number {
    return this.workers.filter((w) => w.ready).length;
  }

  /** The least-loaded worker that can take a socket now, or undefined. */
  pick(): Worker | undefined {
    let best: Worker | undefined;
    for (const w of this.workers) {
      if (w.canTake() && (best === undefined || w.load < best.load)) best = w;
    }
    return best;
  }

  setIdentity(identity: ServerIdentity): void {
    this.identity = identity;
    for (const w of this.workers) w.setIdentity(identity);
  }

  setTicketKeys(keys: Buffer): void {
    this.identity = { ...this.identity, ticketKeys: keys };
    for (const w of this.workers) w.setTicketKeys(keys);
  }

  /** Limits for new sessions, and the log level, after a reload. */
  setSettings(settings: TlsSettings, logLevel: LogLevel): void {
    this.settings = settings;
    this.logLevel = logLevel;
    for (const w of this.workers) w.setSettings(settings, logLevel);
  }

  closeAll(reason: CloseReason): void {
    for (const w of this.workers) w.closeAll(reason);
  }

  /** Stops every worker (their sessions end); safe to call twice. */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const t of this.restartTimers) clearTimeout(t);
    this.restartTimers.clear();
    await Promise.all(this.workers.map((w) => w.stop()));
  }

  private spawn(index: number): Promise<void> {
    const env = { ...process.env };
    // Systemd's hand-overs are the supervisor's alone.
    for (const name of ['LISTEN_PID', 'LISTEN_FDS', 'LISTEN_FDNAMES', 'NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID']) delete env[name];
    const child = fork(path.join(__dirname, 'worker.js'), [], { env, stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'json' });
    const worker = new ProcessWorker(index, child, this.workerOnMessage, this.workerOnExit, this.events.onCapacity);
    this.workers[index] = worker;
    worker.post({
      t: 'init',
      index,
      settings: this.settings,
      identity: identityToWire(this.identity),
      logLevel: this.logLevel,
      logFormat: this.options.logFormat,
    });
    return new Promise((resolve) => {
      const onReady = (message: FromWorker): void => {
        if (message.t !== 'ready') return;
        child.off('message', onReady);
        resolve();
      };
      child.on('message', onReady);
      child.once('exit', () => resolve());
    });
  }

  private readonly workerOnMessage = (worker: ProcessWorker, message: FromWorker): void => {
    switch (message.t) {
      case 'ready':
        worker.ready = true;
        this.logger.debug('worker ready', { worker: worker.index, pid: worker.child.pid });
        this.events.onCapacity();
        return;
      case 'open':
        this.events.onOpen(message.id, message.handshakeMs);
        return;
      case 'closed':
        if (worker.closed(message.report.id)) this.events.onClosed(message.report);
        return;
    }
  };

  private readonly workerOnExit = (worker: ProcessWorker, code: number | null, signal: NodeJS.Signals | null): void => {
    // Every slot the worker held is released, as if each of its sessions had ended in error.
    const lost = [...worker.held.keys()];
    worker.held.clear();
    for (const id of lost) {
      this.events.onClosed({ id, reason: 'error', handshakeMs: undefined, durationMs: 0, bytesIn: 0, bytesOut: 0 });
    }
    if (this.stopping) return;
    const now = Date.now();
    this.crashTimes.push(now);
    while (this.crashTimes.length > 0 && now - this.crashTimes[0]! > CRASH_LOOP_WINDOW_MS) this.crashTimes.shift();
    this.logger.error('worker exited', { worker: worker.index, pid: worker.child.pid, code, signal, sessionsLost: lost.length });
    if (this.crashTimes.length > CRASH_LOOP_LIMIT) {
      this.events.onFatal(new WorkerCrashLoopError(
        `workers exited ${this.crashTimes.length} times within ${CRASH_LOOP_WINDOW_MS / 1000} s: stopping instead of restarting in a loop (see the worker errors above)`,
      ));
      return;
    }
    const delay = Math.min(RESTART_BACKOFF_MAX_MS, RESTART_BACKOFF_MS * 2 ** (this.crashTimes.length - 1));
    this.events.onWorkerRestart(worker.index);
    const timer = setTimeout(() => {
      this.restartTimers.delete(timer);
      if (!this.stopping) void this.spawn(worker.index);
    }, delay);
    this.restartTimers.add(timer);
  };
}
