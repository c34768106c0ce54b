// One share of the load run in this process (LocalRun): resolves the address once, builds one
// TLS context, creates the mode's connection drivers, keeps the clock (warmup, measured window,
// or idle ramp, hold and check), counts operations and errors, and closes every socket and timer
// it opened before its result resolves. RunHandle is how runLoad drives a share wherever it runs:
// here (LocalHandle) or in a forked generator process (load-child-process.ts).

import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { performance } from 'node:perf_hooks';
import * as tls from 'node:tls';
import { LatencyHistogram, type HistogramSnapshot } from './latency-histogram';
import { errorKind, HandshakeWorker, IdleWorker, makePattern, PATTERN_BYTES, PingpongWorker, StreamWorker, type DriverRun, type LoadWorker, type PersistentWorker } from './load-drivers';
import type { LoadPhase, ResolvedLoadOptions } from './load-options';

/** When the run ends, in-flight operations get this long to finish before sockets are destroyed (ms). */
const DRAIN_GRACE_MS = 2000;
/** Distinct error kinds kept; the rest are counted under OTHER. */
export const MAX_ERROR_KINDS = 16;
/** Idle mode: ramp timer granularity (ms). */
const RAMP_TICK_MS = 10;

export interface Counters {
  readonly opsTotal: number;
  readonly bytesTotal: number;
  readonly errors: number;
  readonly established: number;
  readonly phase: LoadPhase;
}

export interface LocalResult {
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

export class LocalRun implements DriverRun {
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
    // One context for every connection: tls.connect would otherwise build one (and parse the CA
    // and the client certificate) each time.
    const secureContext = tls.createSecureContext({
      ...(opts.ca === undefined ? {} : { ca: opts.ca }),
      ...(opts.clientCert === undefined ? {} : { cert: opts.clientCert.cert, key: opts.clientCert.key }),
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

/** One share of the load: run here (LocalHandle) or in a forked generator process (ChildHandle). */
export interface RunHandle {
  /** Resolves when connections are set up and the clock can start. */
  readonly ready: Promise<void>;
  /** Resolves when the share is done and, for a child, the process has exited. Never rejects. */
  readonly result: Promise<LocalResult>;
  go(): void;
  stop(): void;
  counters(): Counters;
}

export class LocalHandle implements RunHandle {
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

export function failedResult(message: string): LocalResult {
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
