// Load generator for TLS echo servers, used by `tls-echod bench` and scripts/bench.ts. Modes
// follow the Go tool in shared/bench/tlsload: handshake, pingpong, stream and idle. Every echoed
// byte is compared with what was sent; a difference is an error (and a mismatch).
//
// Cheap per message: each connection owns one message buffer, stamped with a sequence number
// instead of refilled; stream mode writes slices of one shared pattern and checks the echo at a
// running offset; latencies go into a fixed-bucket histogram; timeouts are found by one
// watchdog scan instead of a timer per operation. A single Node process can't drive a server
// to saturation with handshakes, so `processes > 1` forks copies of this module (each with its
// share of the connections) and merges their counters and histograms. The per-mode connection
// drivers are in load-drivers.ts, the histogram in latency-histogram.ts.

import { fork, type ChildProcess } from 'node:child_process';
import { lookup } from 'node:dns/promises';
import { renameSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { performance } from 'node:perf_hooks';
import * as tls from 'node:tls';
import { formatHostPort } from '../config/config';
import { ConfigError } from '../errors';
import { LatencyHistogram, type HistogramSnapshot } from './latency-histogram';
import { errorKind, HandshakeWorker, IdleWorker, makePattern, PATTERN_BYTES, PingpongWorker, StreamWorker, type DriverRun, type LoadWorker, type PersistentWorker } from './load-drivers';

// ---------------------------------------------------------------------------------------------
// Options and results

export type LoadMode = 'handshake' | 'pingpong' | 'stream' | 'idle';
export const LOAD_MODES: readonly LoadMode[] = ['handshake', 'pingpong', 'stream', 'idle'];

export type LoadPhase = 'connecting' | 'ramp' | 'warmup' | 'measure' | 'hold' | 'check' | 'draining';
const PHASE_ORDER: readonly LoadPhase[] = ['connecting', 'ramp', 'warmup', 'measure', 'hold', 'check', 'draining'];

export interface LoadOptions {
  readonly host: string;
  readonly port: number;
  /** Default handshake. */
  readonly mode?: LoadMode | undefined;
  /** Concurrent connections (handshake: concurrent connect loops). Default 64. */
  readonly connections?: number | undefined;
  /** Measured time after the warmup (ms, default 5000). Idle mode: how long to hold, counted from the start. */
  readonly durationMs?: number | undefined;
  /** Time run but not counted before measuring (ms, default 1000; idle mode ignores it). */
  readonly warmupMs?: number | undefined;
  /** Bytes per echo (handshake, pingpong, idle) or per write (stream). Default 64. */
  readonly sizeBytes?: number | undefined;
  /** PEM CA to verify the server against; without it nothing is verified. */
  readonly ca?: string | Buffer | undefined;
  /** Skip verification even though `ca` is given. Default: true without `ca`, false with it. */
  readonly insecure?: boolean | undefined;
  /** SNI (and name verified); default: host when it is a name, none for an IP. */
  readonly servername?: string | undefined;
  readonly tls?: '1.2' | '1.3' | undefined;
  /** Handshake mode: offer the last session ticket (resumption). Default false: full handshakes. */
  readonly resume?: boolean | undefined;
  /** Idle mode: new connections per second while opening (default 2000). */
  readonly rampPerSec?: number | undefined;
  /** Idle mode: write the established count here once all connections are open. */
  readonly readyFile?: string | undefined;
  /** Generator processes (default 1 = in this process); connections are split between them. */
  readonly processes?: number | undefined;
  /** Longest a connect or one echo may take before it counts as an error (ms, default 10000). */
  readonly timeoutMs?: number | undefined;
  /** Called about once a second while the load runs. */
  readonly onProgress?: ((p: LoadProgress) => void) | undefined;
  /** Abort ends the run early; the result covers what was measured until then. */
  readonly signal?: AbortSignal | undefined;
}

export const LOAD_DEFAULTS = Object.freeze({
  mode: 'handshake' as LoadMode,
  connections: 64,
  durationMs: 5000,
  warmupMs: 1000,
  sizeBytes: 64,
  rampPerSec: 2000,
  processes: 1,
  timeoutMs: 10_000,
});

/** Largest --size: bounds the per-connection message buffers and the stream window. */
export const MAX_SIZE_BYTES = 16 * 1024 * 1024;
export const MAX_PROCESSES = 64;
export const MAX_CONNECTIONS = 1_000_000;

export interface LoadProgress {
  readonly elapsedSec: number;
  readonly phase: LoadPhase;
  /** Operations completed since the start, warmup included. */
  readonly ops: number;
  /** Operations in the last interval, per second. */
  readonly opsPerSec: number;
  readonly mbPerSec: number;
  readonly errors: number;
  readonly established: number;
}

export interface LatencySummary {
  /** Samples (operations measured). */
  readonly count: number;
  readonly mean: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
}

export interface LoadResult {
  readonly mode: LoadMode;
  readonly target: string;
  readonly connections: number;
  readonly processes: number;
  readonly sizeBytes: number;
  /** Length of the measured window (s). Idle mode: the whole run. */
  readonly durationSec: number;
  /** Handshakes (handshake), messages (pingpong), chunks of sizeBytes (stream), connections established (idle). */
  readonly ops: number;
  /** Idle mode: connections established per second of ramp. */
  readonly opsPerSec: number;
  /** Bytes echoed and verified in the window (counted once, not per direction). */
  readonly bytes: number;
  /** 1 MB = 10^6 bytes. */
  readonly mbPerSec: number;
  /** Failed connects, timeouts, resets, early closes and mismatches, warmup included. */
  readonly errors: number;
  /** Errors where bytes came back different from what was sent. */
  readonly mismatches: number;
  readonly firstError: string | null;
  /** Errors by code (ECONNREFUSED, TIMEOUT, ECHO_MISMATCH, ...); at most 16 kinds plus OTHER. */
  readonly errorKinds: Readonly<Record<string, number>>;
  /** Operation latency in ms: connect to echo verified (handshake, idle), one echo (pingpong), one chunk's echo (stream). */
  readonly latencyMs: LatencySummary;
  /** Idle mode: connections that opened and echoed. */
  readonly established: number | null;
  /** Idle mode: of those, the ones that still echoed after the hold. */
  readonly stillAlive: number | null;
}

/** LoadOptions with every default filled in. */
export interface ResolvedLoadOptions {
  readonly host: string;
  readonly port: number;
  readonly mode: LoadMode;
  readonly connections: number;
  readonly durationMs: number;
  readonly warmupMs: number;
  readonly sizeBytes: number;
  readonly ca: string | undefined;
  readonly insecure: boolean;
  readonly servername: string | undefined;
  readonly tls: '1.2' | '1.3' | undefined;
  readonly resume: boolean;
  readonly rampPerSec: number;
  readonly readyFile: string | undefined;
  readonly processes: number;
  readonly timeoutMs: number;
}

/** Every problem with `opts`, phrased in terms of the bench flags; empty when they are usable. */
export function loadOptionProblems(opts: LoadOptions): string[] {
  const problems: string[] = [];
  const whole = (v: number | undefined, flag: string, min: number, max: number, unit = ''): void => {
    if (v === undefined) return;
    if (!Number.isInteger(v) || v < min || v > max) problems.push(`${flag}: must be a whole number between ${min} and ${max}${unit}, got ${v}`);
  };
  const mode = opts.mode ?? LOAD_DEFAULTS.mode;
  if (!LOAD_MODES.includes(mode)) problems.push(`--mode: must be one of ${LOAD_MODES.join(', ')}, got ${JSON.stringify(mode)}`);
  if (typeof opts.host !== 'string' || opts.host === '') problems.push('<host:port>: give the server address, e.g. 127.0.0.1:4433');
  whole(opts.port, '<host:port>', 1, 65535, ' (port)');
  whole(opts.connections, '--connections', 1, MAX_CONNECTIONS);
  whole(opts.sizeBytes, '--size', mode === 'handshake' ? 0 : 1, MAX_SIZE_BYTES, ' (bytes)');
  whole(opts.rampPerSec, '--ramp', 1, 1_000_000, ' (connections/s)');
  whole(opts.processes, '--processes', 1, MAX_PROCESSES);
  whole(opts.timeoutMs, '--timeout', 1, 3_600_000, ' (ms)');
  if (opts.durationMs !== undefined && !(opts.durationMs > 0 && opts.durationMs <= 86_400_000)) {
    problems.push(`--duration: must be more than 0 and at most 86400 s, got ${opts.durationMs / 1000}`);
  }
  if (opts.warmupMs !== undefined && !(opts.warmupMs >= 0 && opts.warmupMs <= 3_600_000)) {
    problems.push(`--warmup: must be between 0 and 3600 s, got ${opts.warmupMs / 1000}`);
  }
  if (opts.processes !== undefined && opts.connections !== undefined && opts.processes > opts.connections) {
    problems.push(`--processes ${opts.processes} is more than --connections ${opts.connections}: each process needs at least one connection`);
  }
  if (opts.readyFile !== undefined && mode !== 'idle') problems.push('--ready-file only applies to --mode idle (drop it, or use --mode idle)');
  if (opts.rampPerSec !== undefined && mode !== 'idle') problems.push('--ramp only applies to --mode idle (drop it, or use --mode idle)');
  if (opts.resume === true && mode !== 'handshake') problems.push('--resume only applies to --mode handshake (drop it, or use --mode handshake)');
  if (opts.tls !== undefined && opts.tls !== '1.2' && opts.tls !== '1.3') problems.push(`--tls: must be 1.2 or 1.3, got ${JSON.stringify(opts.tls)}`);
  return problems;
}

function resolveLoadOptions(opts: LoadOptions): ResolvedLoadOptions {
  const problems = loadOptionProblems(opts);
  if (problems.length > 0) throw new ConfigError(problems);
  const ca = opts.ca === undefined ? undefined : String(opts.ca);
  return {
    host: opts.host,
    port: opts.port,
    mode: opts.mode ?? LOAD_DEFAULTS.mode,
    connections: opts.connections ?? LOAD_DEFAULTS.connections,
    durationMs: opts.durationMs ?? LOAD_DEFAULTS.durationMs,
    warmupMs: opts.warmupMs ?? LOAD_DEFAULTS.warmupMs,
    sizeBytes: opts.sizeBytes ?? LOAD_DEFAULTS.sizeBytes,
    ca,
    insecure: opts.insecure ?? ca === undefined,
    servername: opts.servername ?? (isIP(opts.host) ? undefined : opts.host),
    tls: opts.tls,
    resume: opts.resume ?? false,
    rampPerSec: opts.rampPerSec ?? LOAD_DEFAULTS.rampPerSec,
    readyFile: opts.readyFile,
    processes: Math.min(opts.processes ?? LOAD_DEFAULTS.processes, opts.connections ?? LOAD_DEFAULTS.connections),
    timeoutMs: opts.timeoutMs ?? LOAD_DEFAULTS.timeoutMs,
  };
}

// ---------------------------------------------------------------------------------------------
// One process's share of the load

/** When the run ends, in-flight operations get this long to finish before sockets are destroyed (ms). */
const DRAIN_GRACE_MS = 2000;
/** Distinct error kinds kept; the rest are counted under OTHER. */
const MAX_ERROR_KINDS = 16;
/** A generator process that has reported its result gets this long to exit before it is killed (ms). */
const CHILD_EXIT_GRACE_MS = 5000;
/** Idle mode: ramp timer granularity (ms). */
const RAMP_TICK_MS = 10;

interface Counters {
  readonly opsTotal: number;
  readonly bytesTotal: number;
  readonly errors: number;
  readonly established: number;
  readonly phase: LoadPhase;
}

interface LocalResult {
  readonly ops: number;
  readonly bytes: number;
  readonly errors: number;
  readonly mismatches: number;
  readonly firstError: string | null;
  readonly errorKinds: Record<string, number>;
  readonly histogram: HistogramSnapshot;
  readonly established: number;
  readonly stillAlive: number;
  readonly measuredMs: number;
  readonly rampMs: number;
}

interface RunHooks {
  onIdleReady?: (established: number) => void;
}

class LocalRun implements DriverRun {
  readonly histogram = new LatencyHistogram();
  stopping = false;
  session: Buffer | undefined;
  opsTotal = 0;
  bytesTotal = 0;
  established = 0;
  stillAlive = 0;
  readonly result: Promise<LocalResult>;
  pattern: Buffer = Buffer.alloc(0);
  private ops = 0;
  private bytes = 0;
  private errors = 0;
  private mismatches = 0;
  private firstError: string | null = null;
  private readonly errorKinds = new Map<string, number>();
  private started = false;
  private goAt = 0;
  private measureStart = Infinity;
  private measureEnd = Infinity;
  private stoppedAt = 0;
  private rampMs = 0;
  private connectOptions: tls.ConnectionOptions | undefined;
  private readonly workers: LoadWorker[] = [];
  private readonly sockets = new Set<tls.TLSSocket>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private watchdog: NodeJS.Timeout | undefined;
  private rampTimer: NodeJS.Timeout | undefined;
  private graceTimer: NodeJS.Timeout | undefined;
  private resolveResult!: (r: LocalResult) => void;
  private finished = false;

  constructor(
    readonly opts: ResolvedLoadOptions,
    private readonly hooks: RunHooks = {},
  ) {
    this.result = new Promise((resolve) => {
      this.resolveResult = resolve;
    });
  }

  /** Resolves the address, builds the TLS context and (pingpong, stream) opens the connections. */
  async prepare(): Promise<void> {
    const { opts } = this;
    let address = opts.host;
    if (isIP(opts.host) === 0) {
      // Resolve once: a lookup per connection would go through libuv's thread pool every time.
      try {
        address = (await lookup(opts.host)).address;
      } catch (err) {
        this.noteError(errorKind(err), `cannot resolve ${opts.host}: ${(err as Error).message}`);
        this.stop();
        return;
      }
    }
    // Stopped while resolving: stop() has already finished the run, so set nothing up.
    if (this.stopping) return;
    const version = opts.tls === undefined ? undefined : opts.tls === '1.2' ? 'TLSv1.2' : 'TLSv1.3';
    // One context for every connection: tls.connect would otherwise build one (and parse the CA) each time.
    const secureContext = tls.createSecureContext({
      ...(opts.ca === undefined ? {} : { ca: opts.ca }),
      ...(version === undefined ? {} : { minVersion: version, maxVersion: version }),
    });
    this.connectOptions = {
      host: address,
      port: opts.port,
      ...(opts.servername === undefined ? {} : { servername: opts.servername }),
      secureContext,
      rejectUnauthorized: !opts.insecure,
    };
    if (opts.mode === 'stream') this.pattern = makePattern(Math.max(PATTERN_BYTES, opts.sizeBytes));
    const watchdogMs = Math.min(1000, Math.max(20, Math.floor(opts.timeoutMs / 4)));
    this.watchdog = setInterval(this.watchdogOnTick, watchdogMs);
    for (let i = 0; i < opts.connections; i++) {
      switch (opts.mode) {
        case 'handshake':
          this.workers.push(new HandshakeWorker(this));
          break;
        case 'pingpong':
          this.workers.push(new PingpongWorker(this));
          break;
        case 'stream':
          this.workers.push(new StreamWorker(this, i));
          break;
        case 'idle':
          this.workers.push(new IdleWorker(this));
          break;
      }
    }
    if (opts.mode === 'pingpong' || opts.mode === 'stream') {
      await Promise.all(this.workers.map((w) => (w as PersistentWorker).open()));
    }
  }

  /** Starts the clock: warmup, then the measured window (or, idle mode, the ramp). */
  go(): void {
    if (this.started || this.stopping) return;
    this.started = true;
    this.goAt = performance.now();
    if (this.opts.mode === 'idle') {
      this.measureStart = this.goAt;
      this.rampTimer = setInterval(this.rampOnTick, RAMP_TICK_MS);
      this.rampOnTick();
      return;
    }
    this.measureStart = this.goAt + this.opts.warmupMs;
    this.measureEnd = this.measureStart + this.opts.durationMs;
    this.later(() => this.stop(), this.opts.warmupMs + this.opts.durationMs);
    for (const w of this.workers) (w as HandshakeWorker | PingpongWorker | StreamWorker).start();
  }

  /** Ends the run (early when called before the window is over); safe to call twice. */
  stop(): void {
    if (this.stopping) return;
    this.stopping = true;
    this.stoppedAt = performance.now();
    if (this.stoppedAt < this.measureEnd) this.measureEnd = this.stoppedAt;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    if (this.rampTimer !== undefined) clearInterval(this.rampTimer);
    this.rampTimer = undefined;
    for (const w of this.workers) w.drain();
    this.graceTimer = setTimeout(() => {
      this.graceTimer = undefined;
      for (const s of this.sockets) s.destroy();
    }, Math.min(DRAIN_GRACE_MS, this.opts.timeoutMs));
    this.maybeFinish();
  }

  counters(): Counters {
    return { opsTotal: this.opsTotal, bytesTotal: this.bytesTotal, errors: this.errors, established: this.established, phase: this.phase() };
  }

  private phase(): LoadPhase {
    if (this.stopping) return 'draining';
    if (!this.started) return 'connecting';
    if (this.opts.mode === 'idle') return this.checking ? 'check' : this.rampMs === 0 ? 'ramp' : 'hold';
    return performance.now() < this.measureStart ? 'warmup' : 'measure';
  }

  /** Opens a connection with the shared options; the run tracks it until it closes. */
  connect(): tls.TLSSocket {
    const options = this.opts.resume && this.session !== undefined ? { ...this.connectOptions, session: this.session } : this.connectOptions!;
    const socket = tls.connect(options);
    socket.setNoDelay(true);
    this.sockets.add(socket);
    socket.once('close', () => {
      this.sockets.delete(socket);
      if (this.stopping) this.maybeFinish();
    });
    if (this.opts.resume) {
      socket.on('session', (session: Buffer) => {
        this.session = session;
      });
    }
    return socket;
  }

  recordOp(startedAt: number, endedAt: number, bytes: number): void {
    this.opsTotal++;
    this.bytesTotal += bytes;
    if (endedAt >= this.measureStart && endedAt < this.measureEnd) {
      this.ops++;
      this.bytes += bytes;
      this.histogram.record((endedAt - startedAt) * 1000);
    }
  }

  noteError(kind: string, message: string): void {
    this.errors++;
    if (kind === 'ECHO_MISMATCH') this.mismatches++;
    if (this.firstError === null) this.firstError = message;
    const key = this.errorKinds.has(kind) || this.errorKinds.size < MAX_ERROR_KINDS ? kind : 'OTHER';
    this.errorKinds.set(key, (this.errorKinds.get(key) ?? 0) + 1);
  }

  /** A timer the run owns: cleared by stop(). */
  later(fn: () => void, ms: number): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
  }

  private readonly watchdogOnTick = (): void => {
    const limit = performance.now() - this.opts.timeoutMs;
    for (const w of this.workers) {
      if (w.opStartedAt !== 0 && w.opStartedAt < limit) w.onTimeout();
    }
  };

  private opened = 0;
  private settled = 0;
  private checking = false;

  private readonly rampOnTick = (): void => {
    const due = Math.min(this.opts.connections, Math.ceil(((performance.now() - this.goAt) * this.opts.rampPerSec) / 1000) || 1);
    while (this.opened < due && !this.stopping) {
      const w = this.workers[this.opened++] as IdleWorker;
      void w.open().then(this.idleWorkerOnSettled);
    }
    if (this.opened >= this.opts.connections && this.rampTimer !== undefined) {
      clearInterval(this.rampTimer);
      this.rampTimer = undefined;
    }
  };

  private readonly idleWorkerOnSettled = (): void => {
    if (++this.settled < this.opts.connections || this.stopping) return;
    this.rampMs = performance.now() - this.goAt;
    this.hooks.onIdleReady?.(this.established);
    const holdLeft = Math.max(0, this.goAt + this.opts.durationMs - performance.now());
    this.later(() => void this.idleCheck(), holdLeft);
  };

  private async idleCheck(): Promise<void> {
    this.checking = true;
    await Promise.all(this.workers.map((w) => (w as IdleWorker).check()));
    this.stop();
  }

  private maybeFinish(): void {
    if (this.finished || this.sockets.size > 0) return;
    this.finished = true;
    if (this.graceTimer !== undefined) clearTimeout(this.graceTimer);
    this.graceTimer = undefined;
    if (this.watchdog !== undefined) clearInterval(this.watchdog);
    this.watchdog = undefined;
    const measuredMs =
      this.opts.mode === 'idle'
        ? this.started
          ? this.stoppedAt - this.goAt
          : 0
        : Math.max(0, Math.min(this.measureEnd, this.stoppedAt) - this.measureStart) || 0;
    this.resolveResult({
      ops: this.opts.mode === 'idle' ? this.established : this.ops,
      bytes: this.bytes,
      errors: this.errors,
      mismatches: this.mismatches,
      firstError: this.firstError,
      errorKinds: Object.fromEntries(this.errorKinds),
      histogram: this.histogram.snapshot(),
      established: this.established,
      stillAlive: this.stillAlive,
      measuredMs: Number.isFinite(measuredMs) ? measuredMs : 0,
      rampMs: this.rampMs,
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Running in one or several processes

/** One share of the load: run here (LocalHandle) or in a forked generator process (ChildHandle). */
interface RunHandle {
  /** Resolves when connections are set up and the clock can start. */
  readonly ready: Promise<void>;
  /** Resolves when the share is done and, for a child, the process has exited. Never rejects. */
  readonly result: Promise<LocalResult>;
  go(): void;
  stop(): void;
  counters(): Counters;
}

class LocalHandle implements RunHandle {
  readonly ready: Promise<void>;
  readonly result: Promise<LocalResult>;
  private readonly run: LocalRun;

  constructor(options: ResolvedLoadOptions, onIdleReady: (established: number) => void) {
    this.run = new LocalRun(options, { onIdleReady });
    this.ready = this.run.prepare();
    this.result = this.run.result;
  }

  go(): void {
    this.run.go();
  }

  stop(): void {
    this.run.stop();
  }

  counters(): Counters {
    return this.run.counters();
  }
}

type ParentMessage = { type: 'run'; options: ResolvedLoadOptions } | { type: 'go' } | { type: 'stop' };
type ChildMessage =
  | { type: 'ready' }
  | { type: 'counters'; counters: Counters }
  | { type: 'idle-ready'; established: number }
  | { type: 'result'; result: LocalResult };

/** A forked copy of this module running one share; it reports counters each second and its result at the end. */
class ChildHandle implements RunHandle {
  readonly ready: Promise<void>;
  readonly result: Promise<LocalResult>;
  private readonly child: ChildProcess;
  private latest: Counters = { opsTotal: 0, bytesTotal: 0, errors: 0, established: 0, phase: 'connecting' };

  constructor(options: ResolvedLoadOptions, index: number, onIdleReady: (established: number) => void) {
    // execArgv is cleared so flags of the parent (--test, --inspect) don't follow the child.
    this.child = fork(__filename, [], { execArgv: [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let readyResolve!: () => void;
    this.ready = new Promise((resolve) => {
      readyResolve = resolve;
    });
    this.result = new Promise((resolve) => {
      let report: LocalResult | undefined;
      let killTimer: NodeJS.Timeout | undefined;
      const childOnExit = (why: string): void => {
        if (killTimer !== undefined) clearTimeout(killTimer);
        readyResolve();
        resolve(report ?? failedResult(`generator process ${index + 1} ${why} before reporting a result`));
      };
      this.child.on('message', (m: ChildMessage) => {
        switch (m.type) {
          case 'ready':
            readyResolve();
            break;
          case 'counters':
            this.latest = m.counters;
            break;
          case 'idle-ready':
            onIdleReady(m.established);
            break;
          case 'result':
            report = m.result;
            this.latest = { ...this.latest, phase: 'draining' };
            // It has nothing left to do; don't let a stuck child hold up the run.
            killTimer = setTimeout(() => this.child.kill('SIGKILL'), CHILD_EXIT_GRACE_MS);
            break;
        }
      });
      this.child.once('exit', (code, signal) => childOnExit(`exited (${signal ?? `code ${String(code)}`})`));
      this.child.once('error', (err) => childOnExit(`failed (${err.message})`));
    });
    this.send({ type: 'run', options });
  }

  go(): void {
    this.send({ type: 'go' });
  }

  stop(): void {
    this.send({ type: 'stop' });
  }

  counters(): Counters {
    return this.latest;
  }

  private send(m: ParentMessage): void {
    // A closed channel means the child is gone; its exit handler reports that.
    if (this.child.connected) this.child.send(m, () => undefined);
  }
}

function failedResult(message: string): LocalResult {
  return {
    ops: 0,
    bytes: 0,
    errors: 1,
    mismatches: 0,
    firstError: message,
    errorKinds: { GENERATOR_FAILED: 1 },
    histogram: new LatencyHistogram().snapshot(),
    established: 0,
    stillAlive: 0,
    measuredMs: 0,
    rampMs: 0,
  };
}

/** The entry point of a forked generator process: runs what the parent sends, reports back, exits. */
function childMain(): void {
  // Ctrl-C reaches the whole process group; the parent decides when its children stop.
  process.on('SIGINT', () => undefined);
  let run: LocalRun | undefined;
  let reporter: NodeJS.Timeout | undefined;
  const send = (m: ChildMessage, then?: () => void): void => {
    if (process.connected) process.send!(m, undefined, {}, () => then?.());
    else then?.();
  };
  process.on('message', (m: ParentMessage) => {
    if (m.type === 'run' && run === undefined) {
      const r = new LocalRun(m.options, { onIdleReady: (established) => send({ type: 'idle-ready', established }) });
      run = r;
      reporter = setInterval(() => send({ type: 'counters', counters: r.counters() }), 1000);
      void r.prepare().then(() => send({ type: 'ready' }));
      void r.result.then((result) => {
        clearInterval(reporter);
        send({ type: 'result', result }, () => {
          if (process.connected) process.disconnect();
        });
      });
    } else if (m.type === 'go') {
      run?.go();
    } else if (m.type === 'stop') {
      run?.stop();
    }
  });
  // The parent went away: stop, and let the process exit once everything is closed.
  process.once('disconnect', () => {
    run?.stop();
    if (run === undefined) clearInterval(reporter);
  });
}

/**
 * Runs a load against an echo server and resolves with the merged result. Network failures and
 * echo mismatches are counted in the result, never thrown; invalid options throw ConfigError.
 * Everything it opens (sockets, timers, child processes) is closed before it resolves.
 */
export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const opts = resolveLoadOptions(options);
  if (opts.ca !== undefined) {
    try {
      tls.createSecureContext({ ca: opts.ca });
    } catch (err) {
      throw new ConfigError([`--ca: not a usable PEM CA certificate (${(err as Error).message}); give the CA that signed the server's certificate`]);
    }
  }
  let readyReports = 0;
  let readyEstablished = 0;
  let readyFileError: string | undefined;
  const handles: RunHandle[] = [];
  const onIdleReady = (established: number): void => {
    readyEstablished += established;
    if (++readyReports < handles.length || opts.readyFile === undefined) return;
    try {
      writeReadyFile(opts.readyFile, readyEstablished);
    } catch (err) {
      readyFileError = `--ready-file ${opts.readyFile}: ${(err as Error).message}`;
    }
  };
  if (opts.processes === 1) {
    handles.push(new LocalHandle(opts, onIdleReady));
  } else {
    splitEvenly(opts.connections, opts.processes).forEach((connections, i) => {
      const share = { ...opts, connections, processes: 1, rampPerSec: opts.rampPerSec / opts.processes, readyFile: undefined };
      handles.push(new ChildHandle(share, i, onIdleReady));
    });
  }
  const stopAll = (): void => handles.forEach((h) => h.stop());
  const { signal, onProgress } = options;
  if (signal?.aborted === true) stopAll();
  else signal?.addEventListener('abort', stopAll, { once: true });
  let meter: NodeJS.Timeout | undefined;
  try {
    await Promise.all(handles.map((h) => h.ready));
    const goAt = performance.now();
    for (const h of handles) h.go();
    if (onProgress !== undefined) {
      let last = { at: goAt, ops: 0, bytes: 0 };
      meter = setInterval(() => {
        const now = performance.now();
        const c = sumCounters(handles.map((h) => h.counters()));
        const seconds = (now - last.at) / 1000;
        onProgress({
          elapsedSec: (now - goAt) / 1000,
          phase: c.phase,
          ops: c.opsTotal,
          opsPerSec: seconds > 0 ? (c.opsTotal - last.ops) / seconds : 0,
          mbPerSec: seconds > 0 ? (c.bytesTotal - last.bytes) / seconds / 1e6 : 0,
          errors: c.errors,
          established: c.established,
        });
        last = { at: now, ops: c.opsTotal, bytes: c.bytesTotal };
      }, 1000);
    }
    const results = await Promise.all(handles.map((h) => h.result));
    if (readyFileError !== undefined) results.push(failedResult(readyFileError));
    return mergeResults(opts, results);
  } finally {
    if (meter !== undefined) clearInterval(meter);
    signal?.removeEventListener('abort', stopAll);
  }
}

function sumCounters(all: readonly Counters[]): Counters {
  let phase: LoadPhase = 'draining';
  let opsTotal = 0;
  let bytesTotal = 0;
  let errors = 0;
  let established = 0;
  for (const c of all) {
    opsTotal += c.opsTotal;
    bytesTotal += c.bytesTotal;
    errors += c.errors;
    established += c.established;
    if (PHASE_ORDER.indexOf(c.phase) < PHASE_ORDER.indexOf(phase)) phase = c.phase;
  }
  return { opsTotal, bytesTotal, errors, established, phase };
}

function splitEvenly(total: number, parts: number): number[] {
  return Array.from({ length: parts }, (_, i) => Math.floor(total / parts) + (i < total % parts ? 1 : 0));
}

/** Written whole or not at all (rename), so a reader never sees a partial count. */
function writeReadyFile(path: string, established: number): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${established}\n`);
  renameSync(tmp, path);
}

function mergeResults(opts: ResolvedLoadOptions, results: readonly LocalResult[]): LoadResult {
  const histogram = new LatencyHistogram();
  const errorKinds = new Map<string, number>();
  let ops = 0;
  let bytes = 0;
  let errors = 0;
  let mismatches = 0;
  let established = 0;
  let stillAlive = 0;
  let measuredMs = 0;
  let rampMs = 0;
  let firstError: string | null = null;
  for (const r of results) {
    histogram.merge(r.histogram);
    ops += r.ops;
    bytes += r.bytes;
    errors += r.errors;
    mismatches += r.mismatches;
    established += r.established;
    stillAlive += r.stillAlive;
    measuredMs = Math.max(measuredMs, r.measuredMs);
    rampMs = Math.max(rampMs, r.rampMs);
    firstError ??= r.firstError;
    for (const [kind, n] of Object.entries(r.errorKinds)) {
      const key = errorKinds.has(kind) || errorKinds.size < MAX_ERROR_KINDS ? kind : 'OTHER';
      errorKinds.set(key, (errorKinds.get(key) ?? 0) + n);
    }
  }
  const seconds = measuredMs / 1000;
  const idle = opts.mode === 'idle';
  const ms = (micros: number): number => Math.round(micros) / 1000;
  return {
    mode: opts.mode,
    target: formatHostPort(opts.host, opts.port),
    connections: opts.connections,
    processes: opts.processes,
    sizeBytes: opts.sizeBytes,
    durationSec: Math.round(seconds * 1000) / 1000,
    ops,
    opsPerSec: round1(idle ? (rampMs > 0 ? established / (rampMs / 1000) : 0) : seconds > 0 ? ops / seconds : 0),
    bytes,
    mbPerSec: Math.round((seconds > 0 ? bytes / seconds / 1e6 : 0) * 1000) / 1000,
    errors,
    mismatches,
    firstError,
    errorKinds: Object.fromEntries(errorKinds),
    latencyMs: {
      count: histogram.count,
      mean: ms(histogram.mean),
      p50: ms(histogram.valueAtPercentile(50)),
      p90: ms(histogram.valueAtPercentile(90)),
      p99: ms(histogram.valueAtPercentile(99)),
      max: ms(histogram.max),
    },
    established: idle ? established : null,
    stillAlive: idle ? stillAlive : null,
  };
}

function round1(n: number): number {
  return Math.round(n * 10) / 10;
}

// ---------------------------------------------------------------------------------------------
// Text output

const OPS_UNIT: Readonly<Record<LoadMode, string>> = { handshake: 'handshakes', pingpong: 'msgs', stream: 'chunks', idle: 'conns' };

/** One progress line (for stderr), e.g. `[  3s] measure   2461 handshakes/s  0.16 MB/s  errors 0`. */
export function formatLoadProgress(p: LoadProgress, mode: LoadMode): string {
  const head = `[${Math.round(p.elapsedSec).toString().padStart(3)}s] ${p.phase.padEnd(10)}`;
  if (mode === 'idle') return `${head} established ${p.established}  errors ${p.errors}`;
  return `${head} ${p.opsPerSec.toFixed(0).padStart(8)} ${OPS_UNIT[mode]}/s  ${p.mbPerSec.toFixed(2)} MB/s  errors ${p.errors}`;
}

/** The end-of-run summary for a terminal. */
export function formatLoadResult(r: LoadResult): string {
  const unit = OPS_UNIT[r.mode];
  const l = r.latencyMs;
  const lines = [
    `${r.mode} ${r.target}: ${r.connections} connection(s) in ${r.processes} process(es), ${r.sizeBytes}-byte ${r.mode === 'stream' ? 'writes' : 'echoes'}, ${r.durationSec.toFixed(1)} s ${r.mode === 'idle' ? 'total' : 'measured'}`,
  ];
  if (r.mode === 'idle') {
    lines.push(`  established ${r.established ?? 0} of ${r.connections} (${r.opsPerSec.toFixed(0)} conns/s while opening), still echoing after the hold: ${r.stillAlive ?? 0}`);
    lines.push(`  connect+echo latency ms: p50 ${l.p50.toFixed(2)}  p90 ${l.p90.toFixed(2)}  p99 ${l.p99.toFixed(2)}  max ${l.max.toFixed(2)}`);
  } else {
    lines.push(`  ${r.opsPerSec.toFixed(1)} ${unit}/s (${r.ops} ${unit}), ${r.mbPerSec.toFixed(2)} MB/s echoed`);
    lines.push(`  latency ms: p50 ${l.p50.toFixed(2)}  p90 ${l.p90.toFixed(2)}  p99 ${l.p99.toFixed(2)}  max ${l.max.toFixed(2)}  (${l.count} samples)`);
  }
  lines.push(`  errors ${r.errors} (mismatches ${r.mismatches})`);
  if (r.errors > 0) {
    const kinds = Object.entries(r.errorKinds)
      .sort((a, b) => b[1] - a[1])
      .map(([k, n]) => `${k} ${n}`)
      .join(', ');
    lines.push(`  errors by kind: ${kinds}`);
    if (r.firstError !== null) lines.push(`  first error: ${r.firstError}`);
  }
  return lines.join('\n');
}

if (require.main === module && typeof process.send === 'function') childMain();
