// Load generator for TLS echo servers, used by `tls-echod bench` and scripts/bench.ts. Modes
// follow the Go tool in shared/bench/tlsload: handshake, pingpong, stream and idle. Every echoed
// byte is compared with what was sent; a difference is an error (and a mismatch).
//
// Cheap per message: each connection owns one message buffer, stamped with a sequence number
// instead of refilled; stream mode writes slices of one shared pattern and checks the echo at a
// running offset; latencies go into a fixed-bucket histogram; timeouts are found by one
// watchdog scan instead of a timer per operation. A single Node process can't drive a server
// to saturation with handshakes, so `processes > 1` forks copies of this module (each with its
// share of the connections) and merges their counters and histograms.

import { fork, type ChildProcess } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { renameSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { performance } from 'node:perf_hooks';
import * as tls from 'node:tls';
import { formatHostPort } from './config';
import { ConfigError } from './errors';

// ---------------------------------------------------------------------------------------------
// Latency histogram

/** 2^8 sub-buckets: values below 256 µs are exact, larger ones within 1/128 (< 0.8 %). */
const SUB_BUCKET_BITS = 8;
const SUB_BUCKETS = 1 << SUB_BUCKET_BITS;
const HALF_SUB_BUCKETS = SUB_BUCKETS >> 1;
/** Largest value tracked (µs, about 36 minutes); larger values count as this. 31 bits keep the index math in int32. */
export const HISTOGRAM_MAX_MICROS = 0x7fffffff;
const MAX_MAGNITUDE = 30 - (SUB_BUCKET_BITS - 1);
const BUCKET_COUNT = (MAX_MAGNITUDE + 1) * HALF_SUB_BUCKETS + HALF_SUB_BUCKETS;

/** A histogram in a form that survives JSON (IPC between generator processes). */
export interface HistogramSnapshot {
  /** Non-empty buckets as flat [index, count, index, count, ...]. */
  readonly buckets: readonly number[];
  readonly count: number;
  readonly min: number;
  readonly max: number;
  readonly sum: number;
}

/**
 * An HDR-style log-linear histogram of whole microseconds: fixed memory (3,200 buckets), O(1)
 * record, mergeable by adding counts. Percentiles are reported as the highest value of the
 * bucket they fall in (never above the largest value recorded).
 */
export class LatencyHistogram {
  private readonly counts = new Float64Array(BUCKET_COUNT);
  private total = 0;
  private minValue = Infinity;
  private maxValue = 0;
  private sumValue = 0;

  /** Records one value in µs (rounded down to a whole µs, clamped to 0..HISTOGRAM_MAX_MICROS). */
  record(micros: number): void {
    const v = micros >= HISTOGRAM_MAX_MICROS ? HISTOGRAM_MAX_MICROS : micros > 0 ? Math.floor(micros) : 0;
    this.counts[bucketIndex(v)]!++;
    this.total++;
    this.sumValue += v;
    if (v < this.minValue) this.minValue = v;
    if (v > this.maxValue) this.maxValue = v;
  }

  get count(): number {
    return this.total;
  }

  get min(): number {
    return this.total === 0 ? 0 : this.minValue;
  }

  get max(): number {
    return this.maxValue;
  }

  get mean(): number {
    return this.total === 0 ? 0 : this.sumValue / this.total;
  }

  /** The value (µs) at or below which `percentile` % of the recorded values fall; 0 when empty. */
  valueAtPercentile(percentile: number): number {
    if (this.total === 0) return 0;
    const p = Math.min(100, Math.max(0, percentile));
    const rank = Math.max(1, Math.ceil((p / 100) * this.total));
    let seen = 0;
    for (let i = 0; i < BUCKET_COUNT; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) return Math.max(this.min, Math.min(this.maxValue, bucketHighest(i)));
    }
    return this.maxValue;
  }

  merge(other: LatencyHistogram | HistogramSnapshot): void {
    const s = other instanceof LatencyHistogram ? other.snapshot() : other;
    for (let i = 0; i + 1 < s.buckets.length; i += 2) {
      const index = s.buckets[i]!;
      if (index >= 0 && index < BUCKET_COUNT) this.counts[index]! += s.buckets[i + 1]!;
    }
    if (s.count === 0) return;
    this.total += s.count;
    this.sumValue += s.sum;
    if (s.min < this.minValue) this.minValue = s.min;
    if (s.max > this.maxValue) this.maxValue = s.max;
  }

  snapshot(): HistogramSnapshot {
    const buckets: number[] = [];
    for (let i = 0; i < BUCKET_COUNT; i++) {
      if (this.counts[i] !== 0) buckets.push(i, this.counts[i]!);
    }
    return { buckets, count: this.total, min: this.min, max: this.maxValue, sum: this.sumValue };
  }

  static fromSnapshot(s: HistogramSnapshot): LatencyHistogram {
    const h = new LatencyHistogram();
    h.merge(s);
    return h;
  }
}

function bucketIndex(v: number): number {
  if (v < SUB_BUCKETS) return v;
  const magnitude = 31 - Math.clz32(v) - (SUB_BUCKET_BITS - 1);
  return magnitude * HALF_SUB_BUCKETS + (v >>> magnitude);
}

function bucketHighest(index: number): number {
  if (index < SUB_BUCKETS) return index;
  const magnitude = Math.floor(index / HALF_SUB_BUCKETS) - 1;
  const sub = index - magnitude * HALF_SUB_BUCKETS;
  return (sub + 1) * 2 ** magnitude - 1;
}

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

interface ResolvedLoadOptions {
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

/** After a failed connection, wait this long before the next attempt so a dead server isn't spun on (ms). */
const RETRY_DELAY_MS = 10;
/** When the run ends, in-flight operations get this long to finish before sockets are destroyed (ms). */
const DRAIN_GRACE_MS = 2000;
/** Distinct error kinds kept; the rest are counted under OTHER. */
const MAX_ERROR_KINDS = 16;
/** Stream mode pattern: a fixed pseudo-random block, repeated (grown to --size when larger). */
const PATTERN_BYTES = 64 * 1024;
/** Stream mode: unechoed bytes allowed per connection, between these bounds (scaled from --size). */
const MIN_STREAM_WINDOW_BYTES = 64 * 1024;
const MAX_STREAM_WINDOW_BYTES = 4 * 1024 * 1024;
/** Stream mode: unechoed writes allowed per connection (bounds the timestamp ring). */
const MAX_STREAM_PENDING_WRITES = 4096;
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

interface LoadWorker {
  /** performance.now() when the current connect or echo began; 0 when nothing is in flight. */
  opStartedAt: number;
  onTimeout(): void;
  /** The run is ending: close the connection now if idle, else after the current operation. */
  drain(): void;
}

class LocalRun {
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

/**
 * A worker with at most one connection at a time. Subclasses say what happens once it is
 * secure and when data arrives; this class owns connecting, failure, reconnecting and closing.
 */
abstract class PersistentWorker implements LoadWorker {
  opStartedAt = 0;
  protected socket: tls.TLSSocket | undefined;
  protected connected = false;
  private openSettle: (() => void) | undefined;

  constructor(
    protected readonly run: LocalRun,
    private readonly reconnects: boolean,
  ) {}

  /** Connects; resolves once the first attempt has succeeded (as the subclass defines) or failed. */
  open(): Promise<void> {
    return new Promise((resolve) => {
      this.openSettle = resolve;
      this.connect();
    });
  }

  protected readonly connect = (): void => {
    if (this.run.stopping) {
      this.settleOpen();
      return;
    }
    this.onConnecting();
    const socket = this.run.connect();
    this.socket = socket;
    this.connected = false;
    this.opStartedAt = performance.now();
    socket.on('secureConnect', () => {
      if (socket !== this.socket) return;
      this.connected = true;
      this.onSecure();
    });
    socket.on('data', (chunk: Buffer) => {
      if (socket === this.socket) this.onData(chunk);
    });
    socket.on('error', (err: Error) => this.fail(socket, errorKind(err), err.message));
    socket.on('close', () => this.fail(socket, 'CLOSED', 'the server closed the connection'));
  };

  protected settleOpen(): void {
    const settle = this.openSettle;
    this.openSettle = undefined;
    settle?.();
  }

  /** Counts an error, drops the connection and (unless the run is ending) reconnects shortly. */
  protected fail(socket: tls.TLSSocket, kind: string, message: string): void {
    if (socket !== this.socket) return;
    this.socket = undefined;
    this.connected = false;
    this.opStartedAt = 0;
    socket.destroy();
    if (!this.run.stopping) {
      this.run.noteError(kind, message);
      this.onLost();
      if (this.reconnects) this.run.later(this.connect, RETRY_DELAY_MS);
    }
    this.settleOpen();
  }

  /** Ends the connection politely (close_notify, FIN) and forgets it. */
  protected close(): void {
    const socket = this.socket;
    if (socket === undefined) return;
    this.socket = undefined;
    this.connected = false;
    this.opStartedAt = 0;
    socket.end();
  }

  onTimeout(): void {
    if (this.socket !== undefined) {
      this.fail(this.socket, 'TIMEOUT', `no answer within ${this.run.opts.timeoutMs} ms (${this.connected ? 'echo' : 'connect and handshake'})`);
    }
  }

  drain(): void {
    if (this.socket === undefined) return;
    if (!this.connected) {
      const socket = this.socket;
      this.socket = undefined;
      this.opStartedAt = 0;
      socket.destroy();
      this.settleOpen();
    } else if (this.opStartedAt === 0) {
      this.close();
    }
  }

  /**
   * Checks an echoed chunk against `message` from offset `received` while an echo is in
   * flight. Returns the new count of bytes received, or -1 after reporting a mismatch.
   */
  protected verifyEcho(message: Buffer, received: number, chunk: Buffer): number {
    if (this.opStartedAt === 0) {
      this.mismatch(0, 'data nobody asked for (nothing was in flight)');
      return -1;
    }
    if (!verifyAt(message, received, chunk)) {
      this.mismatch(firstDifference(message, received, chunk));
      return -1;
    }
    return received + chunk.length;
  }

  protected mismatch(offset: number, of = 'a message'): void {
    if (this.socket !== undefined) this.fail(this.socket, 'ECHO_MISMATCH', `echo mismatch at byte ${offset} of ${of}`);
  }

  protected abstract onSecure(): void;
  protected abstract onData(chunk: Buffer): void;
  /** Before each connection attempt. */
  protected onConnecting(): void {}
  /** After a counted failure dropped the connection. */
  protected onLost(): void {}
}

/** Handshake mode: connect, full handshake, one echo of sizeBytes, close; repeat. */
class HandshakeWorker extends PersistentWorker {
  private readonly message: Buffer;
  private received = 0;
  private sequence = 0;

  constructor(run: LocalRun) {
    super(run, true);
    this.message = makeMessage(run.opts.sizeBytes);
  }

  start(): void {
    this.connect();
  }

  protected override onConnecting(): void {
    stamp(this.message, ++this.sequence);
    this.received = 0;
  }

  protected onSecure(): void {
    if (this.message.length === 0) {
      this.complete();
      return;
    }
    this.socket!.write(this.message);
  }

  protected onData(chunk: Buffer): void {
    if (!verifyAt(this.message, this.received, chunk)) {
      this.mismatch(firstDifference(this.message, this.received, chunk));
      return;
    }
    this.received += chunk.length;
    if (this.received === this.message.length) this.complete();
  }

  private complete(): void {
    this.run.recordOp(this.opStartedAt, performance.now(), this.message.length);
    this.close();
    if (!this.run.stopping) this.connect();
  }
}

/** Pingpong mode: one long-lived connection, one message in flight, the next sent when its echo is complete. */
class PingpongWorker extends PersistentWorker {
  private readonly message: Buffer;
  private received = 0;
  private sequence = 0;
  private running = false;

  constructor(run: LocalRun) {
    super(run, true);
    this.message = makeMessage(run.opts.sizeBytes);
  }

  start(): void {
    this.running = true;
    if (this.connected) this.send();
  }

  protected onSecure(): void {
    this.opStartedAt = 0;
    this.settleOpen();
    if (this.running) this.send();
  }

  private send(): void {
    if (this.run.stopping) {
      this.close();
      return;
    }
    stamp(this.message, ++this.sequence);
    this.received = 0;
    this.opStartedAt = performance.now();
    this.socket!.write(this.message);
  }

  protected onData(chunk: Buffer): void {
    const received = this.verifyEcho(this.message, this.received, chunk);
    if (received < 0) return;
    this.received = received;
    if (this.received === this.message.length) {
      this.run.recordOp(this.opStartedAt, performance.now(), this.message.length);
      this.opStartedAt = 0;
      this.send();
    }
  }
}

/**
 * Stream mode: writes sizeBytes slices of the shared pattern while fewer than `window` bytes are
 * unechoed, and checks the echo against the pattern at a running offset. An operation is one
 * write's bytes coming back in full; its latency is measured from the write.
 */
class StreamWorker extends PersistentWorker {
  private readonly window: number;
  private readonly startOffset: number;
  private sent = 0;
  private received = 0;
  private running = false;
  /** Ring of pending writes: end offset and time written. */
  private readonly ringEnds: Float64Array;
  private readonly ringTimes: Float64Array;
  private ringHead = 0;
  private ringSize = 0;
  /** Stream offset where the last fully echoed write ended. */
  private completedEnd = 0;

  constructor(run: LocalRun, index: number) {
    super(run, true);
    const size = run.opts.sizeBytes;
    this.window = Math.min(MAX_STREAM_WINDOW_BYTES, Math.max(MIN_STREAM_WINDOW_BYTES, size * 16));
    // Connections start at different places in the pattern, so crossed streams don't verify.
    this.startOffset = (index * 7919) % PATTERN_BYTES;
    const capacity = Math.min(MAX_STREAM_PENDING_WRITES, Math.ceil(this.window / size) + Math.ceil(this.window / PATTERN_BYTES) + 2);
    this.ringEnds = new Float64Array(capacity);
    this.ringTimes = new Float64Array(capacity);
  }

  start(): void {
    this.running = true;
    if (this.connected) this.pump();
  }

  protected onSecure(): void {
    this.opStartedAt = 0;
    this.sent = 0;
    this.received = 0;
    this.ringHead = 0;
    this.ringSize = 0;
    this.completedEnd = 0;
    this.settleOpen();
    if (this.running) this.pump();
  }

  private pump(): void {
    const pattern = this.run.pattern;
    const size = this.run.opts.sizeBytes;
    const capacity = this.ringEnds.length;
    const socket = this.socket!;
    while (!this.run.stopping && this.sent - this.received < this.window && this.ringSize < capacity) {
      const pos = (this.startOffset + this.sent) % pattern.length;
      const end = Math.min(pos + size, pattern.length);
      socket.write(pattern.subarray(pos, end));
      this.sent += end - pos;
      const slot = (this.ringHead + this.ringSize) % capacity;
      this.ringEnds[slot] = this.sent;
      this.ringTimes[slot] = performance.now();
      this.ringSize++;
    }
    if (this.ringSize > 0) this.opStartedAt = this.ringTimes[this.ringHead]!;
  }

  protected onData(chunk: Buffer): void {
    const pattern = this.run.pattern;
    const n = chunk.length;
    if (this.received + n > this.sent) {
      this.mismatch(this.sent, 'the stream (more bytes came back than were sent)');
      return;
    }
    let pos = (this.startOffset + this.received) % pattern.length;
    for (let k = 0; k < n; ) {
      const m = Math.min(n - k, pattern.length - pos);
      if (pattern.compare(chunk, k, k + m, pos, pos + m) !== 0) {
        this.mismatch(this.received + k + firstDifference(pattern, pos, chunk.subarray(k, k + m)) - pos, 'the stream');
        return;
      }
      k += m;
      pos = 0;
    }
    this.received += n;
    const now = performance.now();
    const capacity = this.ringEnds.length;
    while (this.ringSize > 0 && this.ringEnds[this.ringHead]! <= this.received) {
      const end = this.ringEnds[this.ringHead]!;
      this.run.recordOp(this.ringTimes[this.ringHead]!, now, end - this.completedEnd);
      this.completedEnd = end;
      this.ringHead = (this.ringHead + 1) % capacity;
      this.ringSize--;
    }
    this.opStartedAt = this.ringSize > 0 ? this.ringTimes[this.ringHead]! : 0;
    if (this.run.stopping) {
      if (this.received === this.sent) this.close();
    } else {
      this.pump();
    }
  }
}

/** Idle mode: open, echo once, hold without traffic, then check it still echoes. */
class IdleWorker extends PersistentWorker {
  private readonly message: Buffer;
  private received = 0;
  private sequence = 0;
  private startedAt = 0;
  private held = false;
  private checkSettle: (() => void) | undefined;

  constructor(run: LocalRun) {
    super(run, false);
    this.message = makeMessage(Math.max(1, run.opts.sizeBytes));
  }

  protected onSecure(): void {
    this.send();
  }

  private send(): void {
    stamp(this.message, ++this.sequence);
    this.received = 0;
    this.startedAt = this.opStartedAt === 0 ? performance.now() : this.opStartedAt;
    this.opStartedAt = this.startedAt;
    this.socket!.write(this.message);
  }

  /** Echoes once more on a held connection; resolves when done or failed. */
  check(): Promise<void> {
    if (!this.held || this.socket === undefined || this.run.stopping) return Promise.resolve();
    return new Promise((resolve) => {
      this.checkSettle = resolve;
      this.opStartedAt = 0;
      this.send();
    });
  }

  protected onData(chunk: Buffer): void {
    const received = this.verifyEcho(this.message, this.received, chunk);
    if (received < 0) return;
    this.received = received;
    if (this.received < this.message.length) return;
    this.opStartedAt = 0;
    if (!this.held) {
      this.held = true;
      this.run.established++;
      this.run.recordOp(this.startedAt, performance.now(), this.message.length);
      this.settleOpen();
    } else {
      this.run.stillAlive++;
      this.close();
      this.settleCheck();
    }
  }

  protected override onLost(): void {
    this.held = false;
    this.settleCheck();
  }

  override drain(): void {
    super.drain();
    this.settleCheck();
  }

  private settleCheck(): void {
    const settle = this.checkSettle;
    this.checkSettle = undefined;
    settle?.();
  }
}

function errorKind(err: unknown): string {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string') return err.code;
  return 'ERROR';
}

/** Offset in `expected` of the first byte of `chunk` (placed at `offset`) that differs, or the end of `expected`. */
function firstDifference(expected: Buffer, offset: number, chunk: Buffer): number {
  let i = 0;
  while (i < chunk.length && offset + i < expected.length && chunk[i] === expected[offset + i]) i++;
  return offset + i;
}

/** Compares `chunk` with `expected` at `offset`; false when it differs or runs past the end. */
function verifyAt(expected: Buffer, offset: number, chunk: Buffer): boolean {
  const n = chunk.length;
  return offset + n <= expected.length && expected.compare(chunk, 0, n, offset, offset + n) === 0;
}

function makeMessage(size: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  randomFillSync(b);
  return b;
}

/** Puts a sequence number in the first bytes so a replayed or stale echo doesn't verify. */
function stamp(message: Buffer, sequence: number): void {
  if (message.length >= 4) message.writeUInt32LE(sequence >>> 0, 0);
  else if (message.length > 0) message[0] = sequence & 0xff;
}

/** The same bytes in every process (xorshift32, fixed seed), so any of them can check any echo. */
function makePattern(size: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  let x = 0x9e3779b9;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
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
