// What the metrics count, as plain numbers: the label values each reason counter knows, the
// histogram buckets, and the counts themselves (MetricCounts). Metrics (metrics.ts) adds to
// them on every event; the exposition (metrics-exposition.ts) reads them when scraped.

/** Why the supervisor refused a connection before any TLS work. */
export const REFUSE_REASONS = ['denied', 'rate-limited', 'ip-limit', 'pool-full', 'pending-timeout', 'shutdown', 'proxy-untrusted', 'proxy-header-invalid'] as const;
/** Why a TLS handshake did not complete. */
export const HANDSHAKE_FAILURE_REASONS = ['handshake-timeout', 'handshake-failed', 'client-cert'] as const;
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
  /** The per-client admission table: addresses tracked, and those holding connections; read at scrape time. */
  readonly clientEntries: () => { readonly size: number; readonly holding: number };
  /** Daemon version, shown on tls_echod_build_info. */
  readonly version: string;
}

/** Counts per label value, with "other" for anything outside the known values. */
export class ReasonCounts {
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

  /** Every known value (even at 0, so the first scrape shows the series), then "other". */
  forEach(visit: (reason: string, count: number) => void): void {
    for (const reason of this.reasons) visit(reason, this.counts.get(reason)!);
    visit(OTHER_REASON, this.other);
  }
}

/** A histogram's state as plain numbers: per-bucket (not cumulative) counts, the sum and the count. */
export class Buckets {
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

/** Everything the metrics count, as plain numbers: what the exposition reads at scrape time. */
export class MetricCounts {
  accepted = 0;
  readonly refused = new ReasonCounts(REFUSE_REASONS);
  readonly handshakeFailures = new ReasonCounts(HANDSHAKE_FAILURE_REASONS);
  readonly sessionsClosed = new ReasonCounts(CLOSE_REASONS);
  readonly handshakeDuration = new Buckets(HANDSHAKE_DURATION_BUCKETS);
  readonly sessionDuration = new Buckets(SESSION_DURATION_BUCKETS);
  bytesEchoed = 0;
  bytesReceived = 0;
  /** Unix seconds, per certificate; a certificate without a valid date has no entry (no series). */
  readonly certificateNotAfter = new Map<'leaf' | 'ca', number>();
  reloadsOk = 0;
  reloadsFailed = 0;
  workerRestarts = 0;
  /** Redis commands of the shared limits that failed or timed out, and failed connection attempts (--redis). */
  redisErrors = 0;
  /** 1 while Redis answers, 0 while it doesn't; undefined (no series) without --redis. */
  redisUp: number | undefined = undefined;
  /** Connections per test-peer scenario, every name at 0 from the start; empty while scenarios are off. */
  readonly scenarioSessions = new Map<string, number>();
}
