// The admin HTTP listener: /metrics, /healthz, /readyz and /scenarios answer as documented, other paths and
// methods are refused without reading bodies, and listen/close behave (a taken port, close twice).

import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { test, type TestContext } from 'node:test';
import winston from 'winston';
import { AdminServer } from '../../src/ops/admin-server';
import type { HostPort } from '../../src/config/config';
import { ListenError } from '../../src/errors';
import { SCENARIOS, scenarioCatalogue } from '../../src/scenarios/catalogue';
import type { Metrics } from '../../src/ops/metrics';
import { parseExposition, valueOf } from '../helpers/exposition';
import { newMetrics } from '../helpers/metrics';

const silentLogger = winston.createLogger({ silent: true, transports: [new winston.transports.Console()] });

async function startAdmin(
  t: TestContext,
  metrics: Metrics,
  isReady: () => boolean = () => true,
  scenarioDomain?: string,
): Promise<{ admin: AdminServer; address: HostPort }> {
  const admin = new AdminServer({ address: { host: '127.0.0.1', port: 0 }, metrics, isReady, logger: silentLogger, scenarioDomain });
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

test('admin-scenarios: GET /scenarios is the catalogue as JSON under the scenario domain; HEAD has no body', async (t) => {
  const { address } = await startAdmin(t, newMetrics().metrics, () => true, 'tls.test');
  const reply = await request(address, 'GET', '/scenarios');
  assert.equal(reply.status, 200);
  assert.equal(reply.headers['content-type'], 'application/json');
  assert.equal(reply.headers['cache-control'], 'no-store');
  const body = JSON.parse(reply.body) as Array<Record<string, unknown>>;
  assert.deepEqual(body, scenarioCatalogue('tls.test'));
  assert.deepEqual(body.map((e) => e.name), SCENARIOS.map((s) => s.name));
  assert.equal(body.find((e) => e.name === 'expired')?.serverName, 'expired.tls.test');
  assert.deepEqual(Object.keys(body[0]!), ['name', 'serverName', 'category', 'serverDoes', 'clientSees']);

  const head = await request(address, 'HEAD', '/scenarios?x=1');
  assert.equal(head.status, 200);
  assert.equal(head.body, '');
  assert.equal(Number(head.headers['content-length']), Buffer.byteLength(reply.body));
  assert.equal((await request(address, 'POST', '/scenarios')).status, 405);
});

test('admin-scenarios-off: without a scenario domain GET /scenarios is 404 and says how to turn them on', async (t) => {
  const { address } = await startAdmin(t, newMetrics().metrics);
  const reply = await request(address, 'GET', '/scenarios');
  assert.equal(reply.status, 404);
  assert.match(reply.headers['content-type'] ?? '', /^text\/plain/);
  assert.match(reply.body, /scenarios are off/);
  assert.ok(reply.body.includes('--scenarios <host:port>'), reply.body);
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
