// Metrics and the admin HTTP listener: series move with the methods the supervisor calls, the
// text is valid Prometheus exposition format, and the admin routes answer as documented.

import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { test, type TestContext } from 'node:test';
import winston from 'winston';
import { AdminServer } from '../../src/ops/admin-server';
import type { HostPort } from '../../src/config/config';
import { ListenError } from '../../src/errors';
import { CLOSE_REASONS, HANDSHAKE_FAILURE_REASONS, Metrics, REFUSE_REASONS, type MetricsOptions } from '../../src/ops/metrics';

// ---- a small, strict parser for the Prometheus text exposition format (version 0.0.4) ----

interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

interface Family {
  readonly name: string;
  type: string | undefined;
  help: string | undefined;
  readonly samples: Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const FLOAT = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

function parseValue(text: string, where: string): number {
  if (text === 'NaN') return NaN;
  if (text === '+Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  assert.match(text, FLOAT, `${where}: bad value ${JSON.stringify(text)}`);
  return Number(text);
}

function unescape(text: string, where: string, quoteAllowed: boolean): string {
  return text.replace(/\\(.?)/g, (_, c: string) => {
    if (c === '\\') return '\\';
    if (c === 'n') return '\n';
    if (c === '"' && quoteAllowed) return '"';
    assert.fail(`${where}: bad escape \\${c}`);
  });
}

/** Reads `{a="x",b="y"}` starting at `start`; returns the labels and the index after `}`. */
function parseLabels(line: string, start: number, where: string): [Record<string, string>, number] {
  const labels: Record<string, string> = {};
  let i = start + 1;
  if (line[i] === '}') return [labels, i + 1];
  for (;;) {
    const eq = line.indexOf('=', i);
    assert.ok(eq > i, `${where}: label without =`);
    const name = line.slice(i, eq);
    assert.match(name, LABEL_NAME, `${where}: bad label name`);
    assert.ok(!(name in labels), `${where}: label ${name} twice`);
    assert.equal(line[eq + 1], '"', `${where}: label value not quoted`);
    let j = eq + 2;
    let raw = '';
    while (line[j] !== '"') {
      assert.ok(j < line.length, `${where}: unterminated label value`);
      if (line[j] === '\\') raw += line[j++];
      raw += line[j++];
    }
    labels[name] = unescape(raw, where, true);
    i = j + 1;
    if (line[i] === '}') return [labels, i + 1];
    assert.equal(line[i], ',', `${where}: expected , or } after a label`);
    i++;
  }
}

/** Parses the whole text or fails the test on the first line that isn't valid. */
function parseExposition(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const seriesSeen = new Set<string>();
  let current: Family | undefined;
  assert.ok(text.endsWith('\n'), 'exposition must end with a newline');
  const lines = text.slice(0, -1).split('\n');
  const family = (name: string): Family => {
    let f = families.get(name);
    if (f === undefined) {
      f = { name, type: undefined, help: undefined, samples: [] };
      families.set(name, f);
    }
    return f;
  };

  lines.forEach((line, index) => {
    const where = `line ${index + 1} ${JSON.stringify(line)}`;
    if (line === '') return;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
      assert.ok(m, `${where}: only # HELP and # TYPE comments are expected`);
      const [, kind, name, rest] = m as unknown as [string, string, string, string];
      assert.match(name, METRIC_NAME, `${where}: bad metric name`);
      const f = family(name);
      if (kind === 'HELP') {
        assert.equal(f.help, undefined, `${where}: second HELP`);
        f.help = unescape(rest, where, false);
      } else {
        assert.ok(TYPES.has(rest), `${where}: bad type`);
        assert.equal(f.type, undefined, `${where}: second TYPE`);
        assert.equal(f.samples.length, 0, `${where}: TYPE after samples`);
        f.type = rest;
      }
      current = f;
      return;
    }

    const nameEnd = line.search(/[{ ]/);
    assert.ok(nameEnd > 0, `${where}: no metric name`);
    const name = line.slice(0, nameEnd);
    assert.match(name, METRIC_NAME, `${where}: bad metric name`);
    let labels: Record<string, string> = {};
    let i = nameEnd;
    if (line[i] === '{') [labels, i] = parseLabels(line, i, where);
    assert.equal(line[i], ' ', `${where}: expected one space before the value`);
    const parts = line.slice(i + 1).split(' ');
    assert.ok(parts.length === 1 || (parts.length === 2 && /^-?\d+$/.test(parts[1] ?? '')), `${where}: bad value/timestamp`);
    const value = parseValue(parts[0] ?? '', where);

    // A sample belongs to the family declared just above it (contiguous, as the format wants).
    assert.ok(current !== undefined, `${where}: sample before any TYPE`);
    const suffixes = current.type === 'histogram' ? ['_bucket', '_sum', '_count'] : current.type === 'summary' ? ['', '_sum', '_count'] : [''];
    assert.ok(suffixes.some((s) => name === current?.name + s), `${where}: sample is not of family ${current.name}`);
    if (name.endsWith('_bucket') && current.type === 'histogram') assert.ok('le' in labels, `${where}: bucket without le`);
    const key = name + labelKey(labels);
    assert.ok(!seriesSeen.has(key), `${where}: duplicate series`);
    seriesSeen.add(key);
    current.samples.push({ name, labels, value });
  });

  for (const f of families.values()) {
    assert.ok(f.type !== undefined, `${f.name}: no TYPE`);
    assert.ok(f.help !== undefined, `${f.name}: no HELP`);
    if (f.type === 'histogram') checkHistogram(f);
  }
  return families;
}

/** Buckets ascend, end at +Inf, are cumulative; _count equals the +Inf bucket; _sum is there. */
function checkHistogram(f: Family): void {
  const groups = new Map<string, Sample[]>();
  for (const s of f.samples) {
    const key = labelKey(s.labels, 'le');
    if (s.name === `${f.name}_bucket`) groups.set(key, [...(groups.get(key) ?? []), s]);
  }
  for (const [key, buckets] of groups) {
    const bounds = buckets.map((b) => parseValue(b.labels.le ?? '', `${f.name} le`));
    assert.equal(bounds.at(-1), Infinity, `${f.name}${key}: last bucket must be +Inf`);
    for (let i = 1; i < buckets.length; i++) {
      assert.ok((bounds[i] ?? 0) > (bounds[i - 1] ?? 0), `${f.name}${key}: le must ascend`);
      assert.ok((buckets[i]?.value ?? 0) >= (buckets[i - 1]?.value ?? 0), `${f.name}${key}: buckets must be cumulative`);
    }
    const sameLabels = (s: Sample): boolean => labelKey(s.labels, 'le') === key;
    const count = f.samples.find((s) => s.name === `${f.name}_count` && sameLabels(s));
    const sum = f.samples.find((s) => s.name === `${f.name}_sum` && sameLabels(s));
    assert.ok(count !== undefined && sum !== undefined, `${f.name}${key}: _count and _sum required`);
    assert.equal(count.value, buckets.at(-1)?.value, `${f.name}${key}: _count must equal the +Inf bucket`);
  }
}

/** A canonical string for a label set, leaving out `without`. */
function labelKey(labels: Readonly<Record<string, string>>, without?: string): string {
  return JSON.stringify(Object.entries(labels).filter(([k]) => k !== without).sort());
}

/** The value of one series, or undefined if it isn't there. Labels must match exactly. */
function valueOf(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number | undefined {
  const base = name.replace(/_(bucket|sum|count)$/, '');
  const f = families.get(name) ?? families.get(base);
  const want = labelKey(labels);
  return f?.samples.find((s) => s.name === name && labelKey(s.labels) === want)?.value;
}

// ---- helpers ----

interface Gauges {
  sessionsActive: number;
  connectionsPending: number;
  workersReady: number;
}

function newMetrics(overrides: Partial<MetricsOptions> = {}): { metrics: Metrics; gauges: Gauges } {
  const gauges: Gauges = { sessionsActive: 0, connectionsPending: 0, workersReady: 0 };
  const metrics = new Metrics({
    sessionsActive: () => gauges.sessionsActive,
    connectionsPending: () => gauges.connectionsPending,
    workersReady: () => gauges.workersReady,
    version: '1.2.3-test',
    ...overrides,
  });
  return { metrics, gauges };
}

async function scrape(metrics: Metrics): Promise<Map<string, Family>> {
  return parseExposition((await metrics.render()).body);
}

const silentLogger = winston.createLogger({ silent: true, transports: [new winston.transports.Console()] });

async function startAdmin(
  t: TestContext,
  metrics: Metrics,
  isReady: () => boolean = () => true,
): Promise<{ admin: AdminServer; address: HostPort }> {
  const admin = new AdminServer({ address: { host: '127.0.0.1', port: 0 }, metrics, isReady, logger: silentLogger });
  t.after(() => admin.close());
  const address = await admin.listen();
  return { admin, address };
}

interface Reply {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
}

function request(address: HostPort, method: string, path: string, options: { body?: string; agent?: http.Agent } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: address.host, port: address.port, method, path, agent: options.agent ?? false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

// ---- Metrics ----

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
  // Default process metrics, unprefixed.
  assert.equal(m.get('process_cpu_seconds_total')?.type, 'counter');

  const types: Record<string, string> = {
    tls_echod_sessions_active: 'gauge',
    tls_echod_connections_pending: 'gauge',
    tls_echod_workers_ready: 'gauge',
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

test('registry: two instances do not share series', async () => {
  const a = newMetrics().metrics;
  const b = newMetrics().metrics;
  a.connectionAccepted();
  assert.equal(valueOf(await scrape(a), 'tls_echod_connections_accepted_total'), 1);
  assert.equal(valueOf(await scrape(b), 'tls_echod_connections_accepted_total'), 0);
});

// ---- AdminServer ----

test('admin-metrics: GET /metrics serves the exposition with prom-client content type', async (t) => {
  const { metrics } = newMetrics();
  const { address } = await startAdmin(t, metrics);
  assert.equal(address.host, '127.0.0.1');
  assert.ok(address.port > 0, 'port 0 resolves to the bound port');
  metrics.connectionRefused('rate-limited');

  const reply = await request(address, 'GET', '/metrics');
  assert.equal(reply.status, 200);
  assert.equal(reply.headers['content-type'], (await metrics.render()).contentType);
  assert.equal(reply.headers['cache-control'], 'no-store');
  const m = parseExposition(reply.body);
  assert.equal(valueOf(m, 'tls_echod_connections_refused_total', { reason: 'rate-limited' }), 1);

  const withQuery = await request(address, 'GET', '/metrics?name[]=x');
  assert.equal(withQuery.status, 200);

  const head = await request(address, 'HEAD', '/metrics');
  assert.equal(head.status, 200);
  assert.equal(head.body, '');
  assert.ok(Number(head.headers['content-length']) > 0);
});

test('admin-health: /healthz is 200 ok; /readyz follows isReady', async (t) => {
  let ready = false;
  const { address } = await startAdmin(t, newMetrics().metrics, () => ready);

  const health = await request(address, 'GET', '/healthz');
  assert.equal(health.status, 200);
  assert.equal(health.body, 'ok\n');

  let r = await request(address, 'GET', '/readyz');
  assert.equal(r.status, 503);
  assert.equal(r.body, 'not ready\n');
  ready = true;
  r = await request(address, 'GET', '/readyz');
  assert.equal(r.status, 200);
  assert.equal(r.body, 'ready\n');
  r = await request(address, 'HEAD', '/readyz');
  assert.equal(r.status, 200);
  assert.equal(r.body, '');
  ready = false;
  r = await request(address, 'HEAD', '/readyz');
  assert.equal(r.status, 503);
});

test('admin-readyz-throws: a throwing isReady reads as not ready', async (t) => {
  const { address } = await startAdmin(t, newMetrics().metrics, () => {
    throw new Error('boom');
  });
  assert.equal((await request(address, 'GET', '/readyz')).status, 503);
});

test('admin-404-405: unknown paths 404, other methods 405 with Allow, bodies not read', async (t) => {
  const { address } = await startAdmin(t, newMetrics().metrics);
  for (const path of ['/', '/metricsx', '/metrics/', '/healthz/extra', '/favicon.ico']) {
    const r = await request(address, 'GET', path);
    assert.equal(r.status, 404, path);
  }
  assert.equal((await request(address, 'POST', '/nope', { body: 'x' })).status, 404);

  for (const method of ['POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH']) {
    const r = await request(address, method, '/metrics');
    assert.equal(r.status, 405, method);
    assert.equal(r.headers.allow, 'GET, HEAD');
  }

  // The body is not read by the server; the next request on the same connection still works.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  const sockets = new Set<net.Socket>();
  agent.on('free', (socket: net.Socket) => sockets.add(socket));
  const withBody = await request(address, 'POST', '/healthz', { body: 'a'.repeat(100_000), agent });
  assert.equal(withBody.status, 405);
  const next = await request(address, 'GET', '/healthz', { agent });
  assert.equal(next.status, 200);
  assert.equal(next.body, 'ok\n');
  assert.equal(sockets.size, 1, 'both requests used one keep-alive connection');
});

test('admin-render-fails: /metrics answers 500 when a gauge callback throws', async (t) => {
  const { metrics } = newMetrics({
    sessionsActive: () => {
      throw new Error('pool gone');
    },
  });
  const { address } = await startAdmin(t, metrics);
  const r = await request(address, 'GET', '/metrics');
  assert.equal(r.status, 500);
  assert.equal((await request(address, 'GET', '/healthz')).status, 200, 'the server keeps serving');
});

test('admin-listen-in-use: a taken port rejects with ListenError ECHOD_LISTEN_FAILED', async (t) => {
  const blocker = net.createServer();
  t.after(() => new Promise<void>((resolve) => blocker.close(() => resolve())));
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  const { port } = blocker.address() as net.AddressInfo;

  const admin = new AdminServer({ address: { host: '127.0.0.1', port }, metrics: newMetrics().metrics, isReady: () => true, logger: silentLogger });
  t.after(() => admin.close());
  await assert.rejects(admin.listen(), (err: unknown) => {
    assert.ok(err instanceof ListenError);
    assert.equal(err.code, 'ECHOD_LISTEN_FAILED');
    assert.equal(err.message, `--admin 127.0.0.1:${port}: address in use (stop whatever holds it, or pick another port with --admin)`);
    return true;
  });
  await admin.close(); // closing a server that never listened is fine
});

test('admin-close: safe twice, ends keep-alive connections at once, listen after close rejects', async (t) => {
  const { admin, address } = await startAdmin(t, newMetrics().metrics);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());

  const socketClosed = new Promise<void>((resolve) => {
    agent.once('free', (socket: net.Socket) => {
      socket.ref(); // the agent unrefs idle sockets; keep the loop alive until it closes
      socket.once('close', () => resolve());
    });
  });
  const r = await request(address, 'GET', '/healthz', { agent });
  assert.equal(r.status, 200);
  assert.notEqual(r.headers.connection, 'close', 'the connection is kept alive');

  // Without closeAllConnections this would wait out the 5 s keep-alive timeout.
  await Promise.all([admin.close(), admin.close()]);
  await socketClosed;
  await admin.close();
  await assert.rejects(admin.listen(), ListenError);
  await assert.rejects(request(address, 'GET', '/healthz'), /ECONNREFUSED/);
});

test('admin-close-before-listen: close() during listen() closes the new socket', async () => {
  const admin = new AdminServer({ address: { host: '127.0.0.1', port: 0 }, metrics: newMetrics().metrics, isReady: () => true, logger: silentLogger });
  const listening = admin.listen();
  await admin.close();
  const address = await listening;
  await assert.rejects(request(address, 'GET', '/healthz'), /ECONNREFUSED/);
});
