// Prometheus metrics, owned by the supervisor. Workers report events over IPC and the supervisor
// calls the methods here, so one scrape of /metrics covers every worker. Metric names and label
// values are public API (README.md, "Metrics and health"): rename nothing without a deprecation.
//
// The event methods run for every connection, between TLS handshakes, where any code runs cold
// and costs several times its cost in a loop (profiled). So they only add to plain numbers and
// bucket arrays here; prom-client reads them when /metrics is scraped. A reason we don't know
// counts as "other", which keeps the label set bounded whatever a worker sends.

import { readdirSync } from 'node:fs';
import { Counter, Gauge, Registry, type Metric } from 'prom-client';

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

/** Counts per label value, with "other" for anything outside the known values. */
class ReasonCounts {
  private readonly counts = new Map<string, number>();
  private other = 0;

  constructor(private readonly reasons: readonly string[]) {
    for (const reason of reasons) this.counts.set(reason, 0);
  }

  add(reason: string): void {
    const n = this.counts.get(reason);
    if (n === undefined) this.other++;
    else this.counts.set(reason, n + 1);
  }

  /** Every known value (even at 0, so the first scrape shows the series) and "other". */
  copyTo(counter: Counter<'reason'>): void {
    counter.reset();
    for (const reason of this.reasons) counter.inc({ reason }, this.counts.get(reason)!);
    counter.inc({ reason: OTHER_REASON }, this.other);
  }
}

/** A histogram's state as plain numbers: per-bucket (not cumulative) counts, the sum and the count. */
class Buckets {
  /** counts[i] observations fell in (bounds[i-1], bounds[i]]; the last slot is above every bound. */
  private readonly counts: number[];
  private sum = 0;
  private count = 0;

  constructor(private readonly bounds: readonly number[]) {
    this.counts = new Array<number>(bounds.length + 1).fill(0);
  }

  observe(value: number): void {
    let i = 0;
    while (i < this.bounds.length && value > this.bounds[i]!) i++;
    this.counts[i]!++;
    this.sum += value;
    this.count++;
  }

  /** prom-client's sample list for a histogram: cumulative le buckets, +Inf, _sum, _count. */
  samples(name: string): Array<{ metricName: string; labels: Record<string, string | number>; value: number }> {
    const out = [];
    let cumulative = 0;
    for (let i = 0; i < this.bounds.length; i++) {
      cumulative += this.counts[i]!;
      out.push({ metricName: `${name}_bucket`, labels: { le: this.bounds[i]! }, value: cumulative });
    }
    out.push({ metricName: `${name}_bucket`, labels: { le: '+Inf' }, value: this.count });
    out.push({ metricName: `${name}_sum`, labels: {}, value: this.sum });
    out.push({ metricName: `${name}_count`, labels: {}, value: this.count });
    return out;
  }
}

export class Metrics {
  private readonly registry = new Registry();
  // Per-connection counts, read by prom-client at scrape time.
  private accepted = 0;
  private readonly refused = new ReasonCounts(REFUSE_REASONS);
  private readonly handshakeFailures = new ReasonCounts(HANDSHAKE_FAILURE_REASONS);
  private readonly sessionsClosed = new ReasonCounts(CLOSE_REASONS);
  private readonly handshakeDuration = new Buckets(HANDSHAKE_DURATION_BUCKETS);
  private readonly sessionDuration = new Buckets(SESSION_DURATION_BUCKETS);
  private bytesEchoed = 0;
  private bytesReceived = 0;
  private readonly certificateNotAfter: Gauge<'certificate'>;
  private readonly reloads: Counter<'result'>;
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

    counterOf(this.registry, 'tls_echod_connections_accepted_total', 'Connections that passed admission (allow/deny lists, rate and per-IP limits).', () => this.accepted);
    reasonCounterOf(this.registry, 'tls_echod_connections_refused_total', 'Connections refused before any TLS work, by reason.', this.refused);
    reasonCounterOf(this.registry, 'tls_echod_handshake_failures_total', 'TLS handshakes that did not complete, by reason.', this.handshakeFailures);
    histogramOf(
      this.registry,
      'tls_echod_handshake_duration_seconds',
      'Time from a worker taking a connection to the end of its TLS handshake, for completed handshakes.',
      this.handshakeDuration,
    );
    histogramOf(
      this.registry,
      'tls_echod_session_duration_seconds',
      'Lifetime of a TLS session, from the connection being handed to a worker to its close.',
      this.sessionDuration,
    );
    reasonCounterOf(this.registry, 'tls_echod_sessions_closed_total', 'TLS sessions that ended, by close reason.', this.sessionsClosed);
    counterOf(this.registry, 'tls_echod_bytes_echoed_total', 'Application bytes echoed back to clients (counted when a session ends).', () => this.bytesEchoed);
    counterOf(this.registry, 'tls_echod_bytes_received_total', 'Application bytes received from clients (counted when a session ends).', () => this.bytesReceived);

    // Not zero-initialised: a 0 would read as "expired in 1970" to an expiry alert.
    this.certificateNotAfter = new Gauge({
      name: 'tls_echod_certificate_not_after_seconds',
      help: 'End of validity of the certificate in use (unix seconds); certificate is leaf or ca.',
      labelNames: ['certificate'],
      registers,
    });

    this.reloads = new Counter({
      name: 'tls_echod_reloads_total',
      help: 'Configuration and certificate reloads (SIGHUP, renewal), by result.',
      labelNames: ['result'],
      registers,
    });
    this.reloads.inc({ result: 'ok' }, 0);
    this.reloads.inc({ result: 'failed' }, 0);

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
    this.accepted++;
  }

  /** A connection was refused; `reason` is one of REFUSE_REASONS, anything else counts as "other". */
  connectionRefused(reason: string): void {
    this.refused.add(reason);
  }

  /** A handshake failed; `reason` is one of HANDSHAKE_FAILURE_REASONS, anything else counts as "other". */
  handshakeFailed(reason: string): void {
    this.handshakeFailures.add(reason);
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
    this.sessionsClosed.add(reason);
    observeMs(this.sessionDuration, durationMs);
    // Values come from workers over IPC: a negative or NaN count would poison a counter for
    // good, so only positive finite numbers are added.
    if (bytesIn > 0 && Number.isFinite(bytesIn)) this.bytesReceived += bytesIn;
    if (bytesOut > 0 && Number.isFinite(bytesOut)) this.bytesEchoed += bytesOut;
  }

  /** Sets the notAfter of the leaf or CA certificate in use; undefined (or an invalid date) removes the series. */
  setCertificateNotAfter(which: 'leaf' | 'ca', notAfter: Date | undefined): void {
    const ms = notAfter === undefined ? NaN : notAfter.getTime();
    if (Number.isFinite(ms)) this.certificateNotAfter.set({ certificate: which }, ms / 1000);
    else this.certificateNotAfter.remove({ certificate: which });
  }

  /** A reload (SIGHUP or certificate renewal) finished, successfully or not. */
  reload(ok: boolean): void {
    this.reloads.inc({ result: ok ? 'ok' : 'failed' });
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

/** A counter whose value is read from `read` at scrape time. */
function counterOf(registry: Registry, name: string, help: string, read: () => number): void {
  new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      this.reset();
      this.inc(read());
    },
  });
}

/** A counter labelled by reason whose values are read from `counts` at scrape time. */
function reasonCounterOf(registry: Registry, name: string, help: string, counts: ReasonCounts): void {
  new Counter({
    name,
    help,
    labelNames: ['reason'],
    registers: [registry],
    collect() {
      counts.copyTo(this);
    },
  });
}

/** A histogram exported from a Buckets (prom-client takes any object with a name, help, type and get()). */
function histogramOf(registry: Registry, name: string, help: string, buckets: Buckets): void {
  registry.registerMetric({
    name,
    help,
    type: 'histogram',
    aggregator: 'sum',
    get: () => Promise.resolve({ name, help, type: 'histogram', aggregator: 'sum', values: buckets.samples(name) }),
  } as unknown as Metric);
}

/** Observes milliseconds as seconds; a negative duration counts as 0 and a non-finite one is dropped. */
function observeMs(buckets: Buckets, durationMs: number): void {
  if (!Number.isFinite(durationMs)) return;
  buckets.observe(durationMs > 0 ? durationMs / 1000 : 0);
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
