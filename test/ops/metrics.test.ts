// Metrics: series move with the methods the supervisor calls, and the text is valid Prometheus
// exposition format. The admin HTTP listener that serves it: admin-server.test.ts.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CLOSE_REASONS, HANDSHAKE_FAILURE_REASONS, REFUSE_REASONS } from '../../src/ops/metric-counts';
import { Metrics } from '../../src/ops/metrics';
import { parseExposition, valueOf, type Family } from '../helpers/exposition';
import { newMetrics } from '../helpers/metrics';

async function scrape(metrics: Metrics): Promise<Map<string, Family>> {
  return parseExposition((await metrics.render()).body);
}

test('exposition-parser: the test parser itself rejects what the format does not allow', () => {
  const ok = '# HELP a_total Things.\n# TYPE a_total counter\na_total{x="q\\"uote",y="b"} 1.5e3\n';
  assert.equal(valueOf(parseExposition(ok), 'a_total', { x: 'q"uote', y: 'b' }), 1500);
  const bad = [
    '# TYPE a gauge\na Nan\n', // prom-client's spelling of NaN
    '# TYPE a gauge\na 1', // no final newline
    '# TYPE 1a gauge\n1a 1\n', // bad metric name
    '# TYPE a gauge\na{x=1} 1\n', // unquoted label value
    '# TYPE a gauge\na{x="1",} 1\n', // trailing comma
    '# TYPE a gauge\na{x="1"}  1\n', // two spaces
    '# TYPE a gauge\na 1\na 2\n', // duplicate series
    '# TYPE a gauge\nb 1\n', // sample outside its family
    '# TYPE a gauge\n# TYPE a counter\na 1\n', // second TYPE
    '# TYPE a gauge\n# random comment\na 1\n',
    '# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n', // no +Inf bucket
    '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n', // not cumulative
    '# TYPE h histogram\nh_bucket{le="+Inf"} 1\nh_sum 1\n', // no _count
  ];
  for (const text of bad) assert.throws(() => parseExposition(text), assert.AssertionError, JSON.stringify(text));
});

test('first-scrape: every known series exists at zero and the text parses', async () => {
  const { metrics, gauges } = newMetrics();
  gauges.sessionsActive = 7;
  gauges.connectionsPending = 2;
  gauges.workersReady = 4;
  const { contentType, body } = await metrics.render();
  assert.match(contentType, /^text\/plain; version=0\.0\.4/);
  const m = parseExposition(body);

  assert.equal(valueOf(m, 'tls_echod_sessions_active'), 7);
  assert.equal(valueOf(m, 'tls_echod_connections_pending'), 2);
  assert.equal(valueOf(m, 'tls_echod_workers_ready'), 4);
  assert.equal(valueOf(m, 'tls_echod_connections_accepted_total'), 0);
  for (const reason of [...REFUSE_REASONS, 'other']) {
    assert.equal(valueOf(m, 'tls_echod_connections_refused_total', { reason }), 0, reason);
  }
  for (const reason of [...HANDSHAKE_FAILURE_REASONS, 'other']) {
    assert.equal(valueOf(m, 'tls_echod_handshake_failures_total', { reason }), 0, reason);
  }
  for (const reason of [...CLOSE_REASONS, 'other']) {
    assert.equal(valueOf(m, 'tls_echod_sessions_closed_total', { reason }), 0, reason);
  }
  assert.equal(valueOf(m, 'tls_echod_reloads_total', { result: 'ok' }), 0);
  assert.equal(valueOf(m, 'tls_echod_reloads_total', { result: 'failed' }), 0);
  assert.equal(valueOf(m, 'tls_echod_worker_restarts_total'), 0);
  assert.equal(valueOf(m, 'tls_echod_bytes_echoed_total'), 0);
  assert.equal(valueOf(m, 'tls_echod_bytes_received_total'), 0);
  assert.equal(valueOf(m, 'tls_echod_build_info', { version: '1.2.3-test', node: process.version }), 1);
  assert.equal(valueOf(m, 'tls_echod_handshake_duration_seconds_count'), 0);
  assert.equal(valueOf(m, 'tls_echod_session_duration_seconds_bucket', { le: '+Inf' }), 0);
  // No certificate yet: no series, rather than a 0 that reads as "expired in 1970".
  assert.equal(m.get('tls_echod_certificate_not_after_seconds')?.samples.length, 0);
  // Scenarios off: the family is there, without a series.
  assert.equal(m.get('tls_echod_scenario_sessions_total')?.samples.length, 0);
  // Redis off: the family is there, without a series; no errors.
  assert.equal(m.get('tls_echod_redis_up')?.samples.length, 0);
  assert.equal(valueOf(m, 'tls_echod_redis_errors_total'), 0);
  // Default process metrics, unprefixed.
  assert.equal(m.get('process_cpu_seconds_total')?.type, 'counter');

  const types: Record<string, string> = {
    tls_echod_sessions_active: 'gauge',
    tls_echod_connections_pending: 'gauge',
    tls_echod_workers_ready: 'gauge',
    tls_echod_client_entries: 'gauge',
    tls_echod_client_entries_holding: 'gauge',
    tls_echod_connections_accepted_total: 'counter',
    tls_echod_connections_refused_total: 'counter',
    tls_echod_handshake_failures_total: 'counter',
    tls_echod_handshake_duration_seconds: 'histogram',
    tls_echod_session_duration_seconds: 'histogram',
    tls_echod_sessions_closed_total: 'counter',
    tls_echod_bytes_echoed_total: 'counter',
    tls_echod_bytes_received_total: 'counter',
    tls_echod_certificate_not_after_seconds: 'gauge',
    tls_echod_reloads_total: 'counter',
    tls_echod_worker_restarts_total: 'counter',
    tls_echod_scenario_sessions_total: 'counter',
    tls_echod_redis_errors_total: 'counter',
    tls_echod_redis_up: 'gauge',
    tls_echod_build_info: 'gauge',
  };
  const ours = [...m.keys()].filter((n) => n.startsWith('tls_echod_')).sort();
  assert.deepEqual(ours, Object.keys(types).sort(), 'the public metric names, exactly');
  for (const [name, type] of Object.entries(types)) assert.equal(m.get(name)?.type, type, name);
});

test('counters-move: each method moves its series', async () => {
  const { metrics } = newMetrics();
  metrics.connectionAccepted();
  metrics.connectionAccepted();
  metrics.connectionRefused('denied');
  metrics.connectionRefused('pool-full');
  metrics.connectionRefused('pool-full');
  metrics.handshakeFailed('handshake-timeout');
  metrics.sessionClosed('idle-timeout', 61_000, 100, 90);
  metrics.sessionClosed('peer-closed', 5, 1, 1);
  metrics.reload(true);
  metrics.reload(false);
  metrics.reload(false);
  metrics.workerRestarted();
  metrics.redisError();
  metrics.redisError();
  metrics.setRedisUp(true);
  const m = await scrape(metrics);

  assert.equal(valueOf(m, 'tls_echod_connections_accepted_total'), 2);
  assert.equal(valueOf(m, 'tls_echod_connections_refused_total', { reason: 'denied' }), 1);
  assert.equal(valueOf(m, 'tls_echod_connections_refused_total', { reason: 'pool-full' }), 2);
  assert.equal(valueOf(m, 'tls_echod_connections_refused_total', { reason: 'rate-limited' }), 0);
  assert.equal(valueOf(m, 'tls_echod_handshake_failures_total', { reason: 'handshake-timeout' }), 1);
  assert.equal(valueOf(m, 'tls_echod_handshake_failures_total', { reason: 'handshake-failed' }), 0);
  assert.equal(valueOf(m, 'tls_echod_sessions_closed_total', { reason: 'idle-timeout' }), 1);
  assert.equal(valueOf(m, 'tls_echod_sessions_closed_total', { reason: 'peer-closed' }), 1);
  assert.equal(valueOf(m, 'tls_echod_bytes_received_total'), 101);
  assert.equal(valueOf(m, 'tls_echod_bytes_echoed_total'), 91);
  assert.equal(valueOf(m, 'tls_echod_reloads_total', { result: 'ok' }), 1);
  assert.equal(valueOf(m, 'tls_echod_reloads_total', { result: 'failed' }), 2);
  assert.equal(valueOf(m, 'tls_echod_worker_restarts_total'), 1);
  assert.equal(valueOf(m, 'tls_echod_redis_errors_total'), 2);
  assert.equal(valueOf(m, 'tls_echod_redis_up'), 1);
  metrics.setRedisUp(false);
  assert.equal(valueOf(await scrape(metrics), 'tls_echod_redis_up'), 0);
});

test('unknown-reasons: map to "other" and add no series', async () => {
  const { metrics } = newMetrics();
  metrics.connectionRefused('made-up');
  metrics.connectionRefused('also made up');
  metrics.handshakeFailed('ECONNRESET');
  metrics.sessionClosed('weird', 10, 0, 0);
  metrics.sessionClosed('', 10, 0, 0);
  const m = await scrape(metrics);

  assert.equal(valueOf(m, 'tls_echod_connections_refused_total', { reason: 'other' }), 2);
  assert.equal(valueOf(m, 'tls_echod_handshake_failures_total', { reason: 'other' }), 1);
  assert.equal(valueOf(m, 'tls_echod_sessions_closed_total', { reason: 'other' }), 2);
  assert.equal(m.get('tls_echod_connections_refused_total')?.samples.length, REFUSE_REASONS.length + 1);
  assert.equal(m.get('tls_echod_handshake_failures_total')?.samples.length, HANDSHAKE_FAILURE_REASONS.length + 1);
  assert.equal(m.get('tls_echod_sessions_closed_total')?.samples.length, CLOSE_REASONS.length + 1);
});

test('histograms: durations in ms land in second buckets with _sum, _count and +Inf', async () => {
  const { metrics } = newMetrics();
  metrics.handshakeCompleted(3); // 0.003 s
  metrics.handshakeCompleted(20_000); // beyond the last bucket
  metrics.sessionClosed('peer-closed', 1500, 0, 0); // 1.5 s
  const m = await scrape(metrics);

  const hs = 'tls_echod_handshake_duration_seconds';
  assert.equal(valueOf(m, `${hs}_bucket`, { le: '0.0025' }), 0);
  assert.equal(valueOf(m, `${hs}_bucket`, { le: '0.005' }), 1);
  assert.equal(valueOf(m, `${hs}_bucket`, { le: '10' }), 1);
  assert.equal(valueOf(m, `${hs}_bucket`, { le: '+Inf' }), 2);
  assert.equal(valueOf(m, `${hs}_bucket`, { le: '0.0005' }), 0, 'first bucket is 0.5 ms');
  assert.equal(valueOf(m, `${hs}_count`), 2);
  assert.ok(Math.abs((valueOf(m, `${hs}_sum`) ?? 0) - 20.003) < 1e-9);

  const sd = 'tls_echod_session_duration_seconds';
  assert.equal(valueOf(m, `${sd}_bucket`, { le: '1' }), 0);
  assert.equal(valueOf(m, `${sd}_bucket`, { le: '5' }), 1);
  assert.equal(valueOf(m, `${sd}_bucket`, { le: '3600' }), 1);
  assert.equal(valueOf(m, `${sd}_bucket`, { le: '0.01' }), 0, 'first bucket is 10 ms');
  assert.equal(valueOf(m, `${sd}_sum`), 1.5);
  assert.equal(valueOf(m, `${sd}_count`), 1);
});

test('bad-values: negative or NaN numbers from a worker neither throw nor poison series', async () => {
  const { metrics } = newMetrics();
  metrics.sessionClosed('error', NaN, -5, NaN);
  metrics.sessionClosed('error', -3, Infinity, 10);
  metrics.handshakeCompleted(NaN);
  metrics.handshakeCompleted(-1);
  const m = await scrape(metrics);

  assert.equal(valueOf(m, 'tls_echod_sessions_closed_total', { reason: 'error' }), 2);
  assert.equal(valueOf(m, 'tls_echod_bytes_received_total'), 0);
  assert.equal(valueOf(m, 'tls_echod_bytes_echoed_total'), 10);
  assert.equal(valueOf(m, 'tls_echod_session_duration_seconds_count'), 1, 'NaN dropped, negative counted as 0');
  assert.equal(valueOf(m, 'tls_echod_session_duration_seconds_sum'), 0);
  assert.equal(valueOf(m, 'tls_echod_handshake_duration_seconds_count'), 1);
});

test('certificate-not-after: set in unix seconds, removed by undefined', async () => {
  const { metrics } = newMetrics();
  metrics.setCertificateNotAfter('leaf', new Date('2030-01-02T03:04:05Z'));
  metrics.setCertificateNotAfter('ca', new Date('2035-01-01T00:00:00Z'));
  let m = await scrape(metrics);
  assert.equal(valueOf(m, 'tls_echod_certificate_not_after_seconds', { certificate: 'leaf' }), Date.UTC(2030, 0, 2, 3, 4, 5) / 1000);
  assert.equal(valueOf(m, 'tls_echod_certificate_not_after_seconds', { certificate: 'ca' }), Date.UTC(2035, 0, 1) / 1000);

  metrics.setCertificateNotAfter('ca', undefined);
  metrics.setCertificateNotAfter('leaf', new Date('2031-01-01T00:00:00Z'));
  m = await scrape(metrics);
  assert.equal(valueOf(m, 'tls_echod_certificate_not_after_seconds', { certificate: 'ca' }), undefined);
  assert.equal(valueOf(m, 'tls_echod_certificate_not_after_seconds', { certificate: 'leaf' }), Date.UTC(2031, 0, 1) / 1000);

  metrics.setCertificateNotAfter('leaf', new Date(NaN));
  metrics.setCertificateNotAfter('ca', undefined); // removing what isn't there is fine
  m = await scrape(metrics);
  assert.equal(m.get('tls_echod_certificate_not_after_seconds')?.samples.length, 0);
});

test('gauges: read from the callbacks at each scrape', async () => {
  const { metrics, gauges } = newMetrics();
  gauges.sessionsActive = 1;
  assert.equal(valueOf(await scrape(metrics), 'tls_echod_sessions_active'), 1);
  gauges.sessionsActive = 42;
  gauges.workersReady = 3;
  const m = await scrape(metrics);
  assert.equal(valueOf(m, 'tls_echod_sessions_active'), 42);
  assert.equal(valueOf(m, 'tls_echod_workers_ready'), 3);

  // prom-client spells NaN "Nan"; render() gives the format's "NaN".
  gauges.connectionsPending = NaN;
  const { body } = await metrics.render();
  assert.match(body, /^tls_echod_connections_pending NaN$/m);
  assert.ok(Number.isNaN(valueOf(parseExposition(body), 'tls_echod_connections_pending')));
});

test('client-entries: the admission table size and holding count, read at each scrape', async () => {
  const table = { size: 0, holding: 0 };
  const { metrics } = newMetrics({ clientEntries: () => table });
  let m = await scrape(metrics);
  assert.equal(valueOf(m, 'tls_echod_client_entries'), 0);
  assert.equal(valueOf(m, 'tls_echod_client_entries_holding'), 0);
  table.size = 7;
  table.holding = 2;
  m = await scrape(metrics);
  assert.equal(valueOf(m, 'tls_echod_client_entries'), 7);
  assert.equal(valueOf(m, 'tls_echod_client_entries_holding'), 2);
});

test('active-resources: by type and in total, from process.getActiveResourcesInfo()', async () => {
  const { metrics } = newMetrics();
  const timer = setTimeout(() => undefined, 60_000);
  try {
    const m = await scrape(metrics);
    const total = valueOf(m, 'nodejs_active_resources_total');
    assert.ok(total !== undefined && total >= 1, `total ${total}`);
    assert.ok((valueOf(m, 'nodejs_active_resources', { type: 'Timeout' }) ?? 0) >= 1, 'the timer shows as a Timeout');
  } finally {
    clearTimeout(timer);
  }
});

test('registry: two instances do not share series', async () => {
  const a = newMetrics().metrics;
  const b = newMetrics().metrics;
  a.connectionAccepted();
  assert.equal(valueOf(await scrape(a), 'tls_echod_connections_accepted_total'), 1);
  assert.equal(valueOf(await scrape(b), 'tls_echod_connections_accepted_total'), 0);
});
