// The Prometheus side of the metrics: a prom-client registry whose collectors read a
// MetricCounts when /metrics is scraped. Loaded by Metrics.render() at the first scrape only
// (see metrics.ts for why). Metric names and label values are public API (docs/metrics.md).

import { readdirSync } from 'node:fs';
import { Counter, Gauge, Registry, type Metric } from 'prom-client';
import type { Buckets, MetricCounts, MetricsOptions, ReasonCounts } from './metric-counts';

/** A registry exposing every tls_echod_* series from `counts`, and the process_* / nodejs_* ones. */
export function buildRegistry(counts: MetricCounts, options: MetricsOptions): Registry {
  const registry = new Registry();
  const registers = [registry];
  addProcessMetrics(registry);

  const { sessionsActive, connectionsPending, workersReady, clientEntries } = options;
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

  new Gauge({
    name: 'tls_echod_client_entries',
    help: 'Client addresses in the admission table (holding connections, or with a rate bucket not yet refilled).',
    registers,
    collect() {
      this.set(clientEntries().size);
    },
  });
  new Gauge({
    name: 'tls_echod_client_entries_holding',
    help: 'Client addresses in the admission table that hold at least one connection.',
    registers,
    collect() {
      this.set(clientEntries().holding);
    },
  });

  counterOf(registry, 'tls_echod_connections_accepted_total', 'Connections that passed admission (allow/deny lists, rate and per-IP limits).', () => counts.accepted);
  reasonCounterOf(registry, 'tls_echod_connections_refused_total', 'Connections refused before any TLS work, by reason.', counts.refused);
  reasonCounterOf(registry, 'tls_echod_handshake_failures_total', 'TLS handshakes that did not complete, by reason.', counts.handshakeFailures);
  histogramOf(
    registry,
    'tls_echod_handshake_duration_seconds',
    'Time from a worker taking a connection to the end of its TLS handshake, for completed handshakes.',
    counts.handshakeDuration,
  );
  histogramOf(
    registry,
    'tls_echod_session_duration_seconds',
    'Lifetime of a TLS session, from the connection being handed to a worker to its close.',
    counts.sessionDuration,
  );
  reasonCounterOf(registry, 'tls_echod_sessions_closed_total', 'TLS sessions that ended, by close reason.', counts.sessionsClosed);
  counterOf(registry, 'tls_echod_bytes_echoed_total', 'Application bytes echoed back to clients (counted when a session ends).', () => counts.bytesEchoed);
  counterOf(registry, 'tls_echod_bytes_received_total', 'Application bytes received from clients (counted when a session ends).', () => counts.bytesReceived);

  // Only certificates with a date have a series: a 0 would read as "expired in 1970" to an expiry alert.
  new Gauge({
    name: 'tls_echod_certificate_not_after_seconds',
    help: 'End of validity of the certificate in use (unix seconds); certificate is leaf or ca.',
    labelNames: ['certificate'],
    registers,
    collect() {
      this.reset();
      for (const [certificate, seconds] of counts.certificateNotAfter) this.set({ certificate }, seconds);
    },
  });
  new Counter({
    name: 'tls_echod_reloads_total',
    help: 'Configuration and certificate reloads (SIGHUP, renewal), by result.',
    labelNames: ['result'],
    registers,
    collect() {
      this.reset();
      this.inc({ result: 'ok' }, counts.reloadsOk);
      this.inc({ result: 'failed' }, counts.reloadsFailed);
    },
  });
  new Counter({
    name: 'tls_echod_scenario_sessions_total',
    help: 'Connections to the test-peer scenario listener, by the scenario their server name picked (--scenarios).',
    labelNames: ['scenario'],
    registers,
    collect() {
      this.reset();
      for (const [scenario, n] of counts.scenarioSessions) this.inc({ scenario }, n);
    },
  });
  counterOf(registry, 'tls_echod_worker_restarts_total', 'Worker processes restarted after they exited.', () => counts.workerRestarts);
  counterOf(
    registry,
    'tls_echod_redis_errors_total',
    'Redis commands of the shared limits (--redis) that failed or timed out, and failed connection attempts.',
    () => counts.redisErrors,
  );
  // Without --redis there is no series: a 0 would read as "Redis is down" to an alert.
  const upName = 'tls_echod_redis_up';
  const upHelp = '1 while the Redis of the shared limits (--redis) answers, 0 while admission falls back to the local limits.';
  registry.registerMetric({
    name: upName,
    help: upHelp,
    type: 'gauge',
    aggregator: 'sum',
    get: () =>
      Promise.resolve({
        name: upName,
        help: upHelp,
        type: 'gauge',
        aggregator: 'sum',
        values: counts.redisUp === undefined ? [] : [{ labels: {}, value: counts.redisUp }],
      }),
  } as unknown as Metric);

  new Gauge({
    name: 'tls_echod_build_info',
    help: 'Always 1; the labels give the daemon version and the Node.js version.',
    labelNames: ['version', 'node'],
    registers,
  }).set({ version: options.version, node: process.version }, 1);
  return registry;
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
      this.reset();
      counts.forEach((reason, n) => this.inc({ reason }, n));
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
  // process.getActiveResourcesInfo() lists one type name per resource keeping the loop alive
  // (a timer is 'Timeout'): counted here at scrape time, as prom-client's default collector does.
  new Gauge({
    name: 'nodejs_active_resources',
    help: 'Number of active resources that are currently keeping the event loop alive, grouped by async resource type.',
    labelNames: ['type'],
    registers,
    collect() {
      this.reset();
      for (const [type, n] of countBy(process.getActiveResourcesInfo())) this.set({ type }, n);
    },
  });
  new Gauge({
    name: 'nodejs_active_resources_total',
    help: 'Total number of active resources.',
    registers,
    collect() {
      this.set(process.getActiveResourcesInfo().length);
    },
  });
}

/** How many times each string occurs in `items`. */
function countBy(items: readonly string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const item of items) counts.set(item, (counts.get(item) ?? 0) + 1);
  return counts;
}
