// Prometheus metrics, owned by the supervisor. Workers report events over IPC and the supervisor
// calls the methods here, so one scrape of /metrics covers every worker. Metric names and label
// values are public API (docs/metrics.md): rename nothing without a deprecation.
//
// The event methods run for every connection, between TLS handshakes, where any code runs cold
// and costs several times its cost in a loop (profiled). So they only add to plain numbers and
// bucket arrays (MetricCounts, metric-counts.ts); the Prometheus side (metrics-exposition.ts,
// prom-client) reads them when /metrics is scraped, and is loaded at the first scrape: a daemon
// that is never scraped never retains prom-client's 1.3 MB of heap (docs/architecture.md, "What
// serving loads"). A reason we don't know counts as "other", which keeps the label set bounded
// whatever a worker sends.

import type { Registry } from 'prom-client';
import { MetricCounts, type Buckets, type MetricsOptions } from './metric-counts';

export class Metrics {
  private readonly counts = new MetricCounts();
  /** The prom-client registry, made at the first scrape (see the top of this file). */
  private registry: Promise<Registry> | undefined;

  constructor(private readonly options: MetricsOptions) {}

  /** A connection passed admission. */
  connectionAccepted(): void {
    this.counts.accepted++;
  }

  /** A connection was refused; `reason` is one of REFUSE_REASONS, anything else counts as "other". */
  connectionRefused(reason: string): void {
    this.counts.refused.add(reason);
  }

  /** A handshake failed; `reason` is one of HANDSHAKE_FAILURE_REASONS, anything else counts as "other". */
  handshakeFailed(reason: string): void {
    this.counts.handshakeFailures.add(reason);
  }

  /** A handshake completed after `durationMs` milliseconds. */
  handshakeCompleted(durationMs: number): void {
    observeMs(this.counts.handshakeDuration, durationMs);
  }

  /**
   * A session ended: `reason` is one of CLOSE_REASONS (else "other"), `durationMs` its lifetime,
   * `bytesIn` / `bytesOut` the application bytes received from and echoed to the client.
   */
  sessionClosed(reason: string, durationMs: number, bytesIn: number, bytesOut: number): void {
    const counts = this.counts;
    counts.sessionsClosed.add(reason);
    observeMs(counts.sessionDuration, durationMs);
    // Values come from workers over IPC: a negative or NaN count would poison a counter for
    // good, so only positive finite numbers are added.
    if (bytesIn > 0 && Number.isFinite(bytesIn)) counts.bytesReceived += bytesIn;
    if (bytesOut > 0 && Number.isFinite(bytesOut)) counts.bytesEchoed += bytesOut;
  }

  /** Sets the notAfter of the leaf or CA certificate in use; undefined (or an invalid date) removes the series. */
  setCertificateNotAfter(which: 'leaf' | 'ca', notAfter: Date | undefined): void {
    const ms = notAfter === undefined ? NaN : notAfter.getTime();
    if (Number.isFinite(ms)) this.counts.certificateNotAfter.set(which, ms / 1000);
    else this.counts.certificateNotAfter.delete(which);
  }

  /** A reload (SIGHUP or certificate renewal) finished, successfully or not. */
  reload(ok: boolean): void {
    if (ok) this.counts.reloadsOk++;
    else this.counts.reloadsFailed++;
  }

  /** A worker exited and was started again. */
  workerRestarted(): void {
    this.counts.workerRestarts++;
  }

  /** Scenarios are served: each of `names` gets a series, at 0 until its first connection. */
  scenariosServed(names: readonly string[]): void {
    for (const name of names) if (!this.counts.scenarioSessions.has(name)) this.counts.scenarioSessions.set(name, 0);
  }

  /** A scenario connection's ClientHello named `scenario` (one of the names given to scenariosServed). */
  scenarioSession(scenario: string): void {
    const n = this.counts.scenarioSessions.get(scenario);
    if (n !== undefined) this.counts.scenarioSessions.set(scenario, n + 1);
  }

  /** The shared limits' Redis failed: a command errored or timed out, or a connection attempt failed. */
  redisError(): void {
    this.counts.redisErrors++;
  }

  /** Redis answers (true) or doesn't (false); only called with --redis, so the series exists only then. */
  setRedisUp(up: boolean): void {
    this.counts.redisUp = up ? 1 : 0;
  }

  /** The Prometheus text exposition of every metric, and the content type to serve it with. */
  async render(): Promise<{ contentType: string; body: string }> {
    this.registry ??= import('./metrics-exposition').then((m) => m.buildRegistry(this.counts, this.options));
    const registry = await this.registry;
    // prom-client writes NaN as "Nan" (e.g. the event-loop mean before its first sample);
    // the exposition format spells it "NaN", and strict parsers reject anything else.
    const body = (await registry.metrics()).replace(/ Nan$/gm, ' NaN');
    return { contentType: registry.contentType, body };
  }
}

/** Observes milliseconds as seconds; a negative duration counts as 0 and a non-finite one is dropped. */
function observeMs(buckets: Buckets, durationMs: number): void {
  if (!Number.isFinite(durationMs)) return;
  buckets.observe(durationMs > 0 ? durationMs / 1000 : 0);
}
