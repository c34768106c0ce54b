// Prometheus metrics, owned by the supervisor. Workers report events over IPC and the supervisor
// calls the methods here, so one scrape of /metrics covers every worker. Metric names and label
// values are public API (README.md, "Metrics and health"): rename nothing without a deprecation.
//
// The methods run per connection and per session end, so labelled children are created once at
// construction and looked up in a Map; a reason we don't know maps to "other", which keeps the
// label set (and the memory of the registry) bounded whatever a worker sends.

import { readdirSync } from 'node:fs';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Why the supervisor refused a connection before any TLS work. */
export const REFUSE_REASONS = ['denied', 'rate-limited', 'ip-limit', 'pool-full', 'pending-timeout', 'shutdown'] as const;
/** Why a TLS handshake did not complete. */
export const HANDSHAKE_FAILURE_REASONS = ['handshake-timeout', 'handshake-failed'] as const;
/** Why an established session ended. */
export const CLOSE_REASONS = ['peer-closed', 'idle-timeout', 'session-timeout', 'byte-limit', 'error', 'shutdown'] as const;
/** Label value that stands in for any reason not in the lists above. */
export const OTHER_REASON = 'other';

/** Seconds. 1-2.5-5 steps from 0.5 ms (a local ECDSA handshake) to 10 s (the default --handshake-timeout). */
export const HANDSHAKE_DURATION_BUCKETS: readonly number[] = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];
/** Seconds. From 10 ms (connect, one echo, close) to an hour; 60 s is the default --idle-timeout. */
export const SESSION_DURATION_BUCKETS: readonly number[] = [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600];

export interface MetricsOptions {
  /** Sessions open now, across all workers; read at scrape time. */
  readonly sessionsActive: () => number;
  /** Admitted connections waiting for a free session slot; read at scrape time. */
  readonly connectionsPending: () => number;
  /** Workers that are up and taking connections; read at scrape time. */
  readonly workersReady: () => number;
  /** Daemon version, shown on tls_echod_build_info. */
  readonly version: string;
}

interface CounterChild {
  inc(value?: number): void;
}

export class Metrics {
  private readonly registry = new Registry();
  private readonly accepted: Counter;
  private readonly refused: Map<string, CounterChild>;
  private readonly refusedOther: CounterChild;
  private readonly handshakeFailures: Map<string, CounterChild>;
  private readonly handshakeFailuresOther: CounterChild;
  private readonly handshakeDuration: Histogram;
  private readonly sessionDuration: Histogram;
  private readonly sessionsClosed: Map<string, CounterChild>;
  private readonly sessionsClosedOther: CounterChild;
  private readonly bytesEchoed: Counter;
  private readonly bytesReceived: Counter;
  private readonly certificateNotAfter: Gauge<'certificate'>;
  private readonly reloadsOk: CounterChild;
  private readonly reloadsFailed: CounterChild;
  private readonly workerRestarts: Counter;

  constructor(options: MetricsOptions) {
    const registers = [this.registry];
    addProcessMetrics(this.registry);

    const { sessionsActive, connectionsPending, workersReady } = options;
    new Gauge({
      name: 'tls_echod_sessions_active',
      help: 'Connections holding a session slot now (in handshake or echoing), across all workers.',
      registers,
      collect() {
        this.set(sessionsActive());
      },
    });
    new Gauge({
      name: 'tls_echod_connections_pending',
      help: 'Admitted connections waiting for a free session slot.',
      registers,
      collect() {
        this.set(connectionsPending());
      },
    });
    new Gauge({
      name: 'tls_echod_workers_ready',
      help: 'Worker processes that are up and taking connections.',
      registers,
      collect() {
        this.set(workersReady());
      },
    });

    this.accepted = new Counter({
      name: 'tls_echod_connections_accepted_total',
      help: 'Connections that passed admission (allow/deny lists, rate and per-IP limits).',
      registers,
    });
    const refused = new Counter({
      name: 'tls_echod_connections_refused_total',
      help: 'Connections refused before any TLS work, by reason.',
      labelNames: ['reason'],
      registers,
    });
    [this.refused, this.refusedOther] = children(refused, REFUSE_REASONS);

    const handshakeFailures = new Counter({
      name: 'tls_echod_handshake_failures_total',
      help: 'TLS handshakes that did not complete, by reason.',
      labelNames: ['reason'],
      registers,
    });
    [this.handshakeFailures, this.handshakeFailuresOther] = children(handshakeFailures, HANDSHAKE_FAILURE_REASONS);

    this.handshakeDuration = new Histogram({
      name: 'tls_echod_handshake_duration_seconds',
      help: 'Time from a worker taking a connection to the end of its TLS handshake, for completed handshakes.',
      buckets: [...HANDSHAKE_DURATION_BUCKETS],
      registers,
    });
    this.sessionDuration = new Histogram({
      name: 'tls_echod_session_duration_seconds',
      help: 'Lifetime of a TLS session, from the connection being handed to a worker to its close.',
      buckets: [...SESSION_DURATION_BUCKETS],
      registers,
    });

    const sessionsClosed = new Counter({
      name: 'tls_echod_sessions_closed_total',
      help: 'TLS sessions that ended, by close reason.',
      labelNames: ['reason'],
      registers,
    });
    [this.sessionsClosed, this.sessionsClosedOther] = children(sessionsClosed, CLOSE_REASONS);

    this.bytesEchoed = new Counter({
      name: 'tls_echod_bytes_echoed_total',
      help: 'Application bytes echoed back to clients (counted when a session ends).',
      registers,
    });
    this.bytesReceived = new Counter({
      name: 'tls_echod_bytes_received_total',
      help: 'Application bytes received from clients (counted when a session ends).',
      registers,
    });

    // Not zero-initialised: a 0 would read as "expired in 1970" to an expiry alert.
    this.certificateNotAfter = new Gauge({
      name: 'tls_echod_certificate_not_after_seconds',
      help: 'End of validity of the certificate in use (unix seconds); certificate is leaf or ca.',
      labelNames: ['certificate'],
      registers,
    });

    const reloads = new Counter({
      name: 'tls_echod_reloads_total',
      help: 'Configuration and certificate reloads (SIGHUP, renewal), by result.',
      labelNames: ['result'],
      registers,
    });
    this.reloadsOk = zeroed(reloads, 'ok');
    this.reloadsFailed = zeroed(reloads, 'failed');

    this.workerRestarts = new Counter({
      name: 'tls_echod_worker_restarts_total',
      help: 'Worker processes restarted after they exited.',
      registers,
    });

    new Gauge({
      name: 'tls_echod_build_info',
      help: 'Always 1; the labels give the daemon version and the Node.js version.',
      labelNames: ['version', 'node'],
      registers,
    }).set({ version: options.version, node: process.version }, 1);
  }

  /** A connection passed admission. */
  connectionAccepted(): void {
    this.accepted.inc();
  }

  /** A connection was refused; `reason` is one of REFUSE_REASONS, anything else counts as "other". */
  connectionRefused(reason: string): void {
    (this.refused.get(reason) ?? this.refusedOther).inc();
  }

  /** A handshake failed; `reason` is one of HANDSHAKE_FAILURE_REASONS, anything else counts as "other". */
  handshakeFailed(reason: string): void {
    (this.handshakeFailures.get(reason) ?? this.handshakeFailuresOther).inc();
  }

  /** A handshake completed after `durationMs` milliseconds. */
  handshakeCompleted(durationMs: number): void {
    observeMs(this.handshakeDuration, durationMs);
  }

  /**
   * A session ended: `reason` is one of CLOSE_REASONS (else "other"), `durationMs` its lifetime,
   * `bytesIn` / `bytesOut` the application bytes received from and echoed to the client.
   */
  sessionClosed(reason: string, durationMs: number, bytesIn: number, bytesOut: number): void {
    (this.sessionsClosed.get(reason) ?? this.sessionsClosedOther).inc();
    observeMs(this.sessionDuration, durationMs);
    // Values come from workers over IPC: a negative or NaN count would make prom-client throw
    // (or, for NaN, poison the counter for good), so only positive finite numbers are added.
    if (bytesIn > 0 && Number.isFinite(bytesIn)) this.bytesReceived.inc(bytesIn);
    if (bytesOut > 0 && Number.isFinite(bytesOut)) this.bytesEchoed.inc(bytesOut);
  }

  /** Sets the notAfter of the leaf or CA certificate in use; undefined (or an invalid date) removes the series. */
  setCertificateNotAfter(which: 'leaf' | 'ca', notAfter: Date | undefined): void {
    const ms = notAfter === undefined ? NaN : notAfter.getTime();
    if (Number.isFinite(ms)) this.certificateNotAfter.set({ certificate: which }, ms / 1000);
    else this.certificateNotAfter.remove({ certificate: which });
  }

  /** A reload (SIGHUP or certificate renewal) finished, successfully or not. */
  reload(ok: boolean): void {
    (ok ? this.reloadsOk : this.reloadsFailed).inc();
  }

  /** A worker exited and was started again. */
  workerRestarted(): void {
    this.workerRestarts.inc();
  }

  /** The Prometheus text exposition of every metric, and the content type to serve it with. */
  async render(): Promise<{ contentType: string; body: string }> {
    // prom-client writes NaN as "Nan" (e.g. the event-loop mean before its first sample);
    // the exposition format spells it "NaN", and strict parsers reject anything else.
    const body = (await this.registry.metrics()).replace(/ Nan$/gm, ' NaN');
    return { contentType: this.registry.contentType, body };
  }
}

/** Pre-created children for each known label value, all at 0, plus the "other" child. */
function children(counter: Counter<'reason'>, reasons: readonly string[]): [Map<string, CounterChild>, CounterChild] {
  const map = new Map<string, CounterChild>();
  for (const reason of reasons) map.set(reason, zeroed(counter, reason));
  return [map, zeroed(counter, OTHER_REASON)];
}

/** A child whose series exists (at 0) from the start, so the first scrape already shows it. */
function zeroed<L extends string>(counter: Counter<L>, value: string): CounterChild {
  const child = counter.labels(value);
  child.inc(0);
  return child;
}

/** Observes milliseconds as seconds; a negative duration counts as 0 and a non-finite one is dropped. */
function observeMs(histogram: Histogram, durationMs: number): void {
  if (!Number.isFinite(durationMs)) return;
  histogram.observe(durationMs > 0 ? durationMs / 1000 : 0);
}

/**
 * The usual process_* and nodejs_* series, under prom-client's names, read when scraped. Not
 * prom-client's collectDefaultMetrics: its GC PerformanceObserver made V8 run a full
 * mark-compact every ~60 ms under bulk echo and cost about 10% of throughput (measured), and
 * its event-loop monitor samples all the time. These cost nothing between scrapes. They
 * describe the supervisor process only.
 */
function addProcessMetrics(registry: Registry): void {
  const registers = [registry];
  const startSeconds = Math.round(Date.now() / 1000 - process.uptime());
  const cpu = (which: 'user' | 'system' | 'total') =>
    function (this: Counter): void {
      const usage = process.cpuUsage();
      const micros = which === 'user' ? usage.user : which === 'system' ? usage.system : usage.user + usage.system;
      this.reset();
      this.inc(micros / 1e6);
    };
  new Counter({ name: 'process_cpu_user_seconds_total', help: 'User CPU time spent in seconds.', registers, collect: cpu('user') });
  new Counter({ name: 'process_cpu_system_seconds_total', help: 'System CPU time spent in seconds.', registers, collect: cpu('system') });
  new Counter({ name: 'process_cpu_seconds_total', help: 'Total user and system CPU time spent in seconds.', registers, collect: cpu('total') });
  new Gauge({ name: 'process_start_time_seconds', help: 'Start time of the process since unix epoch in seconds.', registers, collect() { this.set(startSeconds); } });
  new Gauge({ name: 'process_resident_memory_bytes', help: 'Resident memory size in bytes.', registers, collect() { this.set(process.memoryUsage.rss()); } });
  new Gauge({
    name: 'process_open_fds',
    help: 'Number of open file descriptors.',
    registers,
    collect() {
      try {
        this.set(readdirSync('/proc/self/fd').length - 1); // less the one readdir itself holds
      } catch {
        // Not Linux: leave the series at its last value.
      }
    },
  });
  const heap = (field: 'heapTotal' | 'heapUsed' | 'external') =>
    function (this: Gauge): void {
      this.set(process.memoryUsage()[field]);
    };
  new Gauge({ name: 'nodejs_heap_size_total_bytes', help: 'Process heap size from Node.js in bytes.', registers, collect: heap('heapTotal') });
  new Gauge({ name: 'nodejs_heap_size_used_bytes', help: 'Process heap size used from Node.js in bytes.', registers, collect: heap('heapUsed') });
  new Gauge({ name: 'nodejs_external_memory_bytes', help: 'Node.js external memory size in bytes.', registers, collect: heap('external') });
}
