// Every SAMPLE_PERIOD_S: RSS and descriptors of the supervisor and each worker from /proc, and
// from /metrics the session, pending, accepted, refused, closed and handshake-failure counts,
// the supervisor's heap, the per-client table and the supervisor's active resources. Workers'
// heap and timers are not sampled: /metrics describes the supervisor only, and their RSS and
// descriptors from /proc show a leak there as well. Each sample is appended to samples.csv.

import { appendFileSync, writeFileSync } from 'node:fs';
import { descriptorsOf, rssOf, type DaemonUnderTest } from './daemon';
import { sumOf, valueOf, type Scrape } from './metrics-text';
import { SAMPLE_COLUMNS, type Sample } from './sample';
import { SAMPLE_PERIOD_S } from './settings';

/** A sample now, with its time `tS`. */
export async function takeSample(daemon: DaemonUnderTest, tS: number, survivor: number): Promise<Sample> {
  const m = await daemon.scrape();
  const workers = daemon.workerPids().sort((a, b) => a - b).map((pid) => [rssOf(pid) ?? 0, descriptorsOf(pid) ?? 0] as const);
  return {
    tS,
    supervisorRss: rssOf(daemon.pid) ?? 0,
    supervisorFds: descriptorsOf(daemon.pid) ?? 0,
    workerRss: workers.reduce((n, w) => n + w[0], 0),
    workerFds: workers.reduce((n, w) => n + w[1], 0),
    workers,
    survivorRss: rssOf(survivor) ?? 0,
    ...countsOf(m),
  };
}

function countsOf(m: Scrape): Omit<Sample, 'tS' | 'supervisorRss' | 'supervisorFds' | 'workerRss' | 'workerFds' | 'workers' | 'survivorRss'> {
  return {
    sessionsActive: valueOf(m, 'tls_echod_sessions_active'),
    pending: valueOf(m, 'tls_echod_connections_pending'),
    accepted: valueOf(m, 'tls_echod_connections_accepted_total'),
    refused: sumOf(m, 'tls_echod_connections_refused_total'),
    refusedPendingTimeout: valueOf(m, 'tls_echod_connections_refused_total{reason="pending-timeout"}'),
    refusedPoolFull: valueOf(m, 'tls_echod_connections_refused_total{reason="pool-full"}'),
    sessionsClosed: sumOf(m, 'tls_echod_sessions_closed_total'),
    handshakeFailures: sumOf(m, 'tls_echod_handshake_failures_total'),
    heapUsed: valueOf(m, 'nodejs_heap_size_used_bytes'),
    clientEntries: valueOf(m, 'tls_echod_client_entries'),
    clientEntriesHolding: valueOf(m, 'tls_echod_client_entries_holding'),
    activeResources: valueOf(m, 'nodejs_active_resources_total'),
    activeTimers: valueOf(m, 'nodejs_active_resources{type="Timeout"}'),
  };
}

export class Sampler {
  readonly samples: Sample[] = [];
  private timer: NodeJS.Timeout | undefined;
  private busy = false;

  constructor(
    private readonly daemon: DaemonUnderTest,
    private readonly csvFile: string,
    private readonly startedAt: number,
    /** The worker the chaos never kills (see Sample.survivorRss). */
    private readonly survivor: number,
  ) {
    writeFileSync(csvFile, SAMPLE_COLUMNS.join(',') + ',workers\n');
  }

  start(): void {
    this.timer = setInterval(() => void this.tick(), SAMPLE_PERIOD_S * 1000);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Takes a sample now and records it (also used for the quiescence samples). */
  async record(): Promise<Sample | undefined> {
    const sample = await takeSample(this.daemon, (performance.now() - this.startedAt) / 1000, this.survivor).catch(() => undefined);
    if (sample === undefined) return undefined;
    this.samples.push(sample);
    appendFileSync(this.csvFile, SAMPLE_COLUMNS.map((c) => String(Math.round(sample[c] * 1000) / 1000)).join(',') + `,${sample.workers.map((w) => w.join(':')).join(' ')}\n`);
    return sample;
  }

  // A scrape slower than the period skips a tick rather than piling up.
  private async tick(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    await this.record();
    this.busy = false;
  }
}
