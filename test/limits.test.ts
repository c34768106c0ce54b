// Every limit and timeout, hit and observed, in inline mode (--workers 0) and worker mode
// (--workers 2): the same behavioural suite runs against both. 127.0.0.x addresses act as
// distinct clients. Refusals are resets before any ServerHello.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { test, type TestContext } from 'node:test';
import tls from 'node:tls';
import { loadConfig } from '../src/config/config';
import { connect, echoAll, rawOutcome, roundTrip, startDaemon, tempDir, until, type InProcessDaemon } from './helpers/daemon';
import { metricOf } from './helpers/metrics';

/** Resolves to 'reset' when the server refused the connection before any TLS byte. */
async function expectRefused(d: InProcessDaemon, localAddress = '127.0.0.1'): Promise<void> {
  const outcome = await rawOutcome(d.port, localAddress, Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 1, 0, 0, 1, 0]));
  assert.equal(outcome.received, 0, 'no ServerHello (no byte at all) before the refusal');
  assert.equal(outcome.reset, true, 'the refusal is a TCP reset');
}

async function refusedCount(d: InProcessDaemon, reason: string): Promise<number> {
  return metricOf(d.supervisor, 'tls_echod_connections_refused_total', { reason });
}

async function closedCount(d: InProcessDaemon, reason: string): Promise<number> {
  return metricOf(d.supervisor, 'tls_echod_sessions_closed_total', { reason });
}

async function settled(d: InProcessDaemon, sessions = 0): Promise<void> {
  await until(() => d.supervisor.counts.sessions === sessions && d.supervisor.counts.pending === 0, 5000, `${sessions} sessions held`);
}

async function waitClosed(socket: tls.TLSSocket): Promise<void> {
  if (!socket.destroyed) await once(socket, 'close');
}

for (const workers of ['0', '2']) {
  const mode = workers === '0' ? 'inline' : 'workers';
  const start = (t: TestContext, flags: Record<string, unknown> = {}): Promise<InProcessDaemon> => startDaemon(t, { workers, ...flags });

  test(`limits (${mode}): --deny and --allow refuse with a reset; other addresses are served`, async (t) => {
    const d = await start(t, { deny: ['127.0.0.2'], allow: ['127.0.0.0/30'] });
    await expectRefused(d, '127.0.0.2');
    await expectRefused(d, '127.0.0.5'); // outside the allow list
    const ok = await connect(t, d.port, d.ca, { localAddress: '127.0.0.3' });
    assert.ok((await roundTrip(ok, Buffer.from('hi'))).equals(Buffer.from('hi')));
    assert.equal(await refusedCount(d, 'denied'), 2);
    assert.equal(await metricOf(d.supervisor, 'tls_echod_handshake_failures_total', { reason: 'handshake-failed' }), 0, 'a refusal costs no handshake');
  });

  test(`limits (${mode}): a connection flood from one address is rate-limited while another is served`, async (t) => {
    const d = await start(t, { connRate: '1', connBurst: '5', handshakeTimeout: '300' });
    const flood = await Promise.all(Array.from({ length: 30 }, () => rawOutcome(d.port, '127.0.0.7')));
    const refused = flood.filter((o) => o.reset).length;
    assert.ok(refused >= 24, `at most burst+1 of 30 admitted, refused ${refused}`);
    const other = await connect(t, d.port, d.ca, { localAddress: '127.0.0.8' });
    assert.ok((await roundTrip(other, Buffer.from('fine'))).equals(Buffer.from('fine')));
    assert.equal(await refusedCount(d, 'rate-limited'), refused);
    other.destroy();
    await settled(d);
  });

  test(`limits (${mode}): --max-conns-per-ip caps one address and admits again after a close`, async (t) => {
    const d = await start(t, { maxConnsPerIp: '2' });
    const a = await connect(t, d.port, d.ca, { localAddress: '127.0.0.9' });
    const b = await connect(t, d.port, d.ca, { localAddress: '127.0.0.9' });
    await expectRefused(d, '127.0.0.9');
    const other = await connect(t, d.port, d.ca, { localAddress: '127.0.0.10' });
    assert.ok((await roundTrip(other, Buffer.from('x'))).equals(Buffer.from('x')));
    a.destroy();
    await settled(d, 2);
    const c = await connect(t, d.port, d.ca, { localAddress: '127.0.0.9' });
    assert.ok((await roundTrip(c, Buffer.from('again'))).equals(Buffer.from('again')));
    assert.equal(await refusedCount(d, 'ip-limit'), 1);
    b.destroy();
  });

  test(`limits (${mode}): full pool queues up to --max-pending, refuses past it, serves the queued on a free slot`, async (t) => {
    const d = await start(t, { maxSessions: '2', maxPending: '1', pendingTimeout: '60000' });
    const a = await connect(t, d.port, d.ca);
    await connect(t, d.port, d.ca);
    // The third waits, paused, without a handshake.
    const queued = tls.connect({ host: '127.0.0.1', port: d.port, ca: d.ca, servername: 'localhost' });
    t.after(() => queued.destroy());
    await until(() => d.supervisor.counts.pending === 1, 5000, 'one waiting');
    await expectRefused(d); // the queue is full
    assert.equal(await refusedCount(d, 'pool-full'), 1);
    a.destroy();
    await once(queued, 'secureConnect');
    assert.ok((await roundTrip(queued, Buffer.from('served'))).equals(Buffer.from('served')));
  });

  test(`limits (${mode}): a connection waiting longer than --pending-timeout is refused`, async (t) => {
    const d = await start(t, { maxSessions: '1', maxPending: '10', pendingTimeout: '200' });
    await connect(t, d.port, d.ca);
    await expectRefused(d);
    assert.equal(await refusedCount(d, 'pending-timeout'), 1);
    assert.equal(d.supervisor.counts.pending, 0);
  });

  test(`limits (${mode}): --idle-timeout closes a silent session, --session-timeout a busy one`, async (t) => {
    const d = await start(t, { idleTimeout: '200', sessionTimeout: '600' });
    const idle = await connect(t, d.port, d.ca);
    await waitClosed(idle);
    const busy = await connect(t, d.port, d.ca);
    busy.on('data', () => {});
    // Keep talking every 50 ms so only the lifetime can end it.
    const talker = setInterval(() => busy.write('tick'), 50);
    t.after(() => clearInterval(talker));
    await waitClosed(busy);
    clearInterval(talker);
    await settled(d);
    assert.equal(await closedCount(d, 'idle-timeout'), 1);
    assert.equal(await closedCount(d, 'session-timeout'), 1);
  });

  test(`limits (${mode}): a session keeps its idle timeout after a reload turns it off for new ones`, { timeout: 15_000 }, async (t) => {
    const certDir = tempDir(t);
    const flags = { workers, listen: '127.0.0.1:0', logLevel: 'error', drainTimeout: '100', certDir };
    const d = await startDaemon(t, { ...flags, idleTimeout: '300' }, {
      reloadConfig: () => loadConfig({ flags: { ...flags, idleTimeout: '0' }, env: {} }),
    });
    const old = await connect(t, d.port, d.ca);
    // An echo proves the server's session exists (its handshake can finish after the client's).
    assert.ok((await roundTrip(old, Buffer.from('hello'))).equals(Buffer.from('hello')));
    assert.equal(await d.supervisor.reload(), true);
    const fresh = await connect(t, d.port, d.ca);
    await waitClosed(old);
    await settled(d, 1);
    assert.equal(await closedCount(d, 'idle-timeout'), 1);
    assert.equal(fresh.destroyed, false, 'the new session has no idle timeout');
    assert.ok((await roundTrip(fresh, Buffer.from('still here'))).equals(Buffer.from('still here')));
  });

  test(`limits (${mode}): --max-session-bytes echoes exactly that many bytes, then closes`, async (t) => {
    const d = await start(t, { maxSessionBytes: '10000' });
    const socket = await connect(t, d.port, d.ca);
    const data = randomBytes(50_000);
    const echoed = await echoAll(socket, data);
    assert.equal(echoed.length, 10_000);
    assert.ok(echoed.equals(data.subarray(0, 10_000)));
    await settled(d);
    assert.equal(await closedCount(d, 'byte-limit'), 1);
  });

  test(`limits (${mode}): --bandwidth paces the echo instead of buffering it`, async (t) => {
    const d = await start(t, { bandwidth: '200000' });
    const socket = await connect(t, d.port, d.ca);
    const data = randomBytes(600_000);
    const started = Date.now();
    const echoed = await echoAll(socket, data);
    const elapsedMs = Date.now() - started;
    assert.ok(echoed.equals(data));
    // 600 kB at 200 kB/s, less one second's burst: at least ~2 s. Only a lower bound is checked.
    assert.ok(elapsedMs >= 1500, `took ${elapsedMs} ms`);
  });

  test(`limits (${mode}): after sessions end every possible way, all counts are back to zero`, async (t) => {
    const d = await start(t, { idleTimeout: '300', maxSessionBytes: '1000', handshakeTimeout: '300', maxConnsPerIp: '4' });
    const normal = await connect(t, d.port, d.ca);
    await echoAll(normal, Buffer.from('bye'));
    const reset = await connect(t, d.port, d.ca);
    reset.destroy();
    const idle = await connect(t, d.port, d.ca);
    await waitClosed(idle);
    const limited = await connect(t, d.port, d.ca);
    await echoAll(limited, randomBytes(5000));
    await rawOutcome(d.port, '127.0.0.1', Buffer.from('garbage garbage garbage'));
    await rawOutcome(d.port); // silent until the handshake timeout
    await settled(d);
    assert.equal(d.supervisor.counts.ipsHeld, 0, 'no per-IP entry left');
    // The per-IP cap admits the full number again.
    const again = await Promise.all(Array.from({ length: 4 }, () => connect(t, d.port, d.ca)));
    for (const s of again) assert.ok((await roundTrip(s, Buffer.from('ok'))).equals(Buffer.from('ok')));
  });
}
