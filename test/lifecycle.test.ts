// The daemon's life as systemd and an operator see it: SIGTERM drains, a second signal exits
// at once, SIGHUP reloads certificates and config without dropping anyone (and rejects a bad
// one whole), the leaf renews itself, sd_notify reports each step, /readyz follows along.

import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import tls from 'node:tls';
import { CLI, cleanEnv, connect, echoAll, freePort, rawOutcome, roundTrip, runCli, spawnDaemon, startDaemon, tempDir, type CliDaemon } from './helpers/daemon';
import { metricOf, sample } from './helpers/metrics';
import { notifyReceiver } from './helpers/notify-socket';
import { loadConfig } from '../src/config/config';
import { createLogger } from '../src/ops/logger';
import { Supervisor } from '../src/daemon/supervisor';

function get(address: string, urlPath: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const [host, port] = [address.slice(0, address.lastIndexOf(':')), Number(address.slice(address.lastIndexOf(':') + 1))];
    http.get({ host, port, path: urlPath }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject);
  });
}

function adminOf(d: CliDaemon): string {
  return String(d.lines.find((l) => l.message === 'listening')!.admin);
}

/** Two certificate sets from two different local CAs, for swapping on reload. */
async function twoCertSets(t: TestContext): Promise<{ a: string; b: string; live: string }> {
  const a = tempDir(t);
  const b = tempDir(t);
  for (const dir of [a, b]) {
    const r = await runCli(['cert', 'generate', '--cert-dir', dir]);
    assert.equal(r.code, 0, r.stderr);
  }
  const live = tempDir(t);
  copyFileSync(path.join(a, 'server.pem'), path.join(live, 'cert.pem'));
  copyFileSync(path.join(a, 'server-key.pem'), path.join(live, 'key.pem'));
  return { a, b, live };
}

function fingerprintOf(dir: string, file = 'server.pem'): string {
  return new X509Certificate(readFileSync(path.join(dir, file))).fingerprint256;
}

test('shutdown: SIGTERM stops accepting at once, open sessions finish, /readyz turns 503, exit 0', async (t) => {
  const dir = tempDir(t);
  const d = await spawnDaemon(t, ['--cert-dir', dir, '--workers', '0', '--drain-timeout', '10000', '--admin', '127.0.0.1:0']);
  const ca = readFileSync(path.join(dir, 'ca.pem'));
  assert.equal((await get(adminOf(d), '/readyz')).status, 200);
  const session = await connect(t, d.port, ca);
  d.child.kill('SIGTERM');
  await d.waitForLine((l) => l.message === 'shutting down');
  assert.equal((await get(adminOf(d), '/readyz')).status, 503, 'not ready while draining');
  assert.equal((await get(adminOf(d), '/healthz')).status, 200, 'still alive while draining');
  // New connections are turned away; the open session keeps echoing.
  await new Promise<void>((resolve) => {
    const probe = net.connect({ host: '127.0.0.1', port: d.port });
    probe.on('error', () => resolve());
    probe.on('close', () => resolve());
  });
  assert.ok((await roundTrip(session, Buffer.from('after SIGTERM'))).equals(Buffer.from('after SIGTERM')));
  await echoAll(session, Buffer.from('bye'));
  // The last session gone, the drain is over: the daemon exits 0 by itself, its lines written.
  // (Another signal here would race the drain and take the exit-at-once path.)
  assert.equal(await d.exited(), 0);
  const ended = d.lines.find((l) => l.message === 'session ended');
  assert.equal(ended?.reason, 'peer-closed');
});

test('shutdown: sessions still open at --drain-timeout are closed with reason shutdown, exit 0', async (t) => {
  for (const workers of ['0', '2']) {
    const dir = tempDir(t);
    const d = await spawnDaemon(t, ['--cert-dir', dir, '--workers', workers, '--drain-timeout', '300']);
    const session = await connect(t, d.port, readFileSync(path.join(dir, 'ca.pem')));
    const closed = new Promise((resolve) => session.once('close', resolve));
    assert.equal(await d.stop('SIGTERM'), 0);
    await closed;
    const ended = d.lines.find((l) => l.message === 'session ended');
    assert.equal(ended?.reason, 'shutdown', `workers ${workers}`);
  }
});

test('shutdown: a second signal exits at once without waiting for the drain', async (t) => {
  const dir = tempDir(t);
  const d = await spawnDaemon(t, ['--cert-dir', dir, '--workers', '0', '--drain-timeout', '60000']);
  await connect(t, d.port, readFileSync(path.join(dir, 'ca.pem')));
  d.child.kill('SIGTERM');
  await d.waitForLine((l) => l.message === 'shutting down');
  const started = Date.now();
  const code = await d.stop('SIGINT');
  assert.equal(code, 130);
  assert.ok(Date.now() - started < 10_000);
});

test('reload: SIGHUP swaps in a new certificate while clients stream; nobody fails, new clients see it', async (t) => {
  const { a, b, live } = await twoCertSets(t);
  const d = await spawnDaemon(t, ['--workers', '2', '--cert', path.join(live, 'cert.pem'), '--key', path.join(live, 'key.pem'), '--admin', '127.0.0.1:0']);
  const bothCas = [readFileSync(path.join(a, 'ca.pem')), readFileSync(path.join(b, 'ca.pem'))];
  const streams = await Promise.all(Array.from({ length: 6 }, () => connect(t, d.port, bothCas[0]!)));
  let stop = false;
  let rounds = 0;
  const streaming = Promise.all(streams.map(async (s, i) => {
    while (!stop) {
      const data = Buffer.alloc(1000 + i, rounds % 251);
      assert.ok((await roundTrip(s, data)).equals(data));
      rounds++;
    }
  }));
  const before = await connect(t, d.port, bothCas[0]!);
  assert.equal(before.getPeerX509Certificate()!.fingerprint256, fingerprintOf(a));
  copyFileSync(path.join(b, 'server.pem'), path.join(live, 'cert.pem'));
  copyFileSync(path.join(b, 'server-key.pem'), path.join(live, 'key.pem'));
  d.child.kill('SIGHUP');
  await d.waitForLine((l) => l.message === 'reloaded');
  const after = await connect(t, d.port, bothCas[1]!);
  assert.equal(after.getPeerX509Certificate()!.fingerprint256, fingerprintOf(b));
  const roundsAtReload = rounds;
  // Keep streaming a little past the reload, then stop: every round trip must have succeeded.
  while (rounds < roundsAtReload + 60) await roundTrip(before, Buffer.from('tick'));
  stop = true;
  await streaming;
  assert.ok(streams.every((s) => !s.destroyed), 'no session was dropped');
  const metrics = (await get(adminOf(d), '/metrics')).body;
  assert.equal(sample(metrics, 'tls_echod_reloads_total', { result: 'ok' }), 1);
  assert.equal(await d.stop(), 0);
});

test('reload: a broken certificate or config is rejected whole; the old one keeps serving', async (t) => {
  const { a, live } = await twoCertSets(t);
  const configFile = path.join(live, 'config.json');
  writeFileSync(configFile, JSON.stringify({ idleTimeout: 60000 }));
  const d = await spawnDaemon(t, ['--workers', '0', '--config', configFile, '--cert', path.join(live, 'cert.pem'), '--key', path.join(live, 'key.pem'), '--admin', '127.0.0.1:0']);
  const ca = readFileSync(path.join(a, 'ca.pem'));
  const open = await connect(t, d.port, ca);

  writeFileSync(path.join(live, 'cert.pem'), 'not a certificate\n');
  d.child.kill('SIGHUP');
  const failed = await d.waitForLine((l) => l.message === 'reload failed; the previous configuration keeps serving');
  assert.match(String(failed.error), /cert/i);
  copyFileSync(path.join(a, 'server.pem'), path.join(live, 'cert.pem'));

  writeFileSync(configFile, '{ "idleTimeout": "soon", "nonsense": 1 }');
  d.child.kill('SIGHUP');
  const failedAgain = await d.waitForLine((l) => l.message === 'reload failed; the previous configuration keeps serving' && l !== failed);
  assert.match(String(failedAgain.error), /idleTimeout/);
  assert.match(String(failedAgain.error), /nonsense/);

  assert.equal(d.child.exitCode, null, 'still running');
  const fresh = await connect(t, d.port, ca);
  assert.equal(fresh.getPeerX509Certificate()!.fingerprint256, fingerprintOf(a));
  assert.ok((await roundTrip(open, Buffer.from('old session'))).equals(Buffer.from('old session')));
  const metrics = (await get(adminOf(d), '/metrics')).body;
  assert.equal(sample(metrics, 'tls_echod_reloads_total', { result: 'failed' }), 2);
  assert.equal(sample(metrics, 'tls_echod_reloads_total', { result: 'ok' }), 0);
});

test('reload: a config change applies to new connections (a new --deny entry)', async (t) => {
  const dir = tempDir(t);
  const configFile = path.join(dir, 'config.json');
  writeFileSync(configFile, JSON.stringify({ deny: [] }));
  const d = await spawnDaemon(t, ['--workers', '0', '--config', configFile, '--cert-dir', dir]);
  const ca = readFileSync(path.join(dir, 'ca.pem'));
  const open = await connect(t, d.port, ca, { localAddress: '127.0.0.3' });
  writeFileSync(configFile, JSON.stringify({ deny: ['127.0.0.3'] }));
  d.child.kill('SIGHUP');
  await d.waitForLine((l) => l.message === 'reloaded');
  const refused = await rawOutcome(d.port, '127.0.0.3');
  assert.ok(refused.reset);
  assert.ok((await roundTrip(open, Buffer.from('established sessions are untouched'))).length > 0);
});

test('renewal: a self-generated leaf near expiry is renewed with the same CA, without a restart', async (t) => {
  const dayMs = 86_400_000;
  let now = new Date(Date.now() - 70 * dayMs); // start as if 70 of 90 days had already passed
  const d = await startDaemon(t, { workers: '2' }, { clock: () => now });
  const oldLeaf = d.supervisor.tls.leaf.fingerprint256;
  const oldCa = d.supervisor.tls.caInfo!.fingerprint256;
  const established = await connect(t, d.port, d.ca);
  now = new Date();
  await d.supervisor.renewIfDue();
  assert.notEqual(d.supervisor.tls.leaf.fingerprint256, oldLeaf, 'leaf renewed');
  assert.equal(d.supervisor.tls.caInfo!.fingerprint256, oldCa, 'same CA');
  const fresh = await connect(t, d.port, d.ca);
  assert.equal(fresh.getPeerX509Certificate()!.fingerprint256, d.supervisor.tls.leaf.fingerprint256);
  assert.ok((await roundTrip(established, Buffer.from('x'))).equals(Buffer.from('x')));
  assert.ok(Math.abs((await metricOf(d.supervisor, 'tls_echod_certificate_not_after_seconds', { certificate: 'leaf' })) - d.supervisor.tls.leaf.notAfter.getTime() / 1000) < 1);
});

test('sd_notify: READY, then RELOADING with MONOTONIC_USEC and READY on SIGHUP, then STOPPING', async (t) => {
  const rx = await notifyReceiver(t);
  const dir = tempDir(t);
  const d = await spawnDaemon(t, ['--cert-dir', dir, '--workers', '2'], { NOTIFY_SOCKET: rx.socketPath });
  const states = (): string[] => rx.messages.filter((m) => /^(READY|RELOADING|STOPPING)=/m.test(m));
  await rx.until(() => states().length >= 1);
  assert.match(states()[0]!, /^READY=1$/m);
  assert.match(states()[0]!, /^STATUS=.*2\/2 workers ready$/m);
  d.child.kill('SIGHUP');
  await rx.until(() => states().length >= 3);
  assert.match(states()[1]!, /^RELOADING=1\nMONOTONIC_USEC=\d+$/);
  assert.match(states()[2]!, /^READY=1$/m);
  assert.equal(await d.stop('SIGTERM'), 0);
  await rx.until(() => states().length >= 4);
  assert.match(states()[3]!, /^STOPPING=1$/m);
});

test('metrics: counters match the traffic sent, inline and with workers', async (t) => {
  for (const workers of ['0', '2']) {
    const d = await startDaemon(t, { workers, deny: ['127.0.0.2'], admin: '127.0.0.1:0' });
    const sizes = [10, 2000, 50_000];
    for (const size of sizes) {
      const s = await connect(t, d.port, d.ca);
      await echoAll(s, Buffer.alloc(size, 7));
    }
    await rawOutcome(d.port, '127.0.0.2');
    await rawOutcome(d.port, '127.0.0.2');
    await rawOutcome(d.port, '127.0.0.1', Buffer.from('this is not tls at all'));
    const admin = d.supervisor.adminAddress!;
    const deadline = Date.now() + 5000;
    let text = '';
    // Session ends reach the supervisor asynchronously from workers: scrape until they have.
    while (Date.now() < deadline) {
      text = (await get(`${admin.host}:${admin.port}`, '/metrics')).body;
      if (sample(text, 'tls_echod_handshake_failures_total', { reason: 'handshake-failed' }) === 1 && sample(text, 'tls_echod_sessions_closed_total', { reason: 'peer-closed' }) === 3) break;
    }
    const total = sizes.reduce((x, y) => x + y, 0);
    assert.equal(sample(text, 'tls_echod_connections_accepted_total'), 4, `workers ${workers}`);
    assert.equal(sample(text, 'tls_echod_connections_refused_total', { reason: 'denied' }), 2);
    assert.equal(sample(text, 'tls_echod_sessions_closed_total', { reason: 'peer-closed' }), 3);
    assert.equal(sample(text, 'tls_echod_handshake_failures_total', { reason: 'handshake-failed' }), 1);
    assert.equal(sample(text, 'tls_echod_bytes_echoed_total'), total);
    assert.equal(sample(text, 'tls_echod_bytes_received_total'), total);
    assert.equal(sample(text, 'tls_echod_handshake_duration_seconds_count'), 3);
    assert.equal(sample(text, 'tls_echod_sessions_active'), 0);
    assert.equal(sample(text, 'tls_echod_workers_ready'), workers === '0' ? 1 : 2);
    await d.stop();
  }
});

test('socket activation: under systemd-socket-activate the daemon serves the passed socket; workers never see LISTEN_*', async (t) => {
  const activator = spawnSync('sh', ['-c', 'command -v systemd-socket-activate']);
  if (activator.status !== 0) {
    t.skip('systemd-socket-activate is not installed');
    return;
  }
  // A free port: systemd-socket-activate needs a fixed one.
  const port = await freePort();
  const dir = tempDir(t);
  const child = spawn('systemd-socket-activate', ['-l', `127.0.0.1:${port}`, '-E', 'PATH',
    process.execPath, CLI, 'serve', '--workers', '2', '--cert-dir', dir, '--listen', '127.0.0.1:1', '--log-format', 'json'], { env: cleanEnv() });
  t.after(() => child.kill('SIGKILL'));
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (out += c.toString()));
  // The activator listens first and starts the daemon on the first connection; that
  // connection waits in the backlog and is served once the daemon is up.
  const caPromise = (async () => {
    while (!out.includes('"listening"')) await once(child.stdout, 'data');
    return readFileSync(path.join(dir, 'ca.pem'));
  })();
  // It says "Listening on ..." on stderr once its socket is open.
  while (!out.includes('Listening on')) await once(child.stderr, 'data');
  const first = net.connect({ host: '127.0.0.1', port });
  const [ca] = await Promise.all([caPromise, once(first, 'connect')]);
  const secure = tls.connect({ socket: first, ca, servername: 'localhost' });
  t.after(() => secure.destroy());
  await once(secure, 'secureConnect');
  assert.ok((await roundTrip(secure, Buffer.from('activated'))).equals(Buffer.from('activated')));
  const listening = JSON.parse(out.split('\n').find((l) => l.includes('"listening"'))!) as { socketActivated: boolean; addresses: string[] };
  assert.equal(listening.socketActivated, true);
  assert.deepEqual(listening.addresses, [`127.0.0.1:${port}`], '--listen is ignored under activation');
  const workers = execFileSync('ps', ['-o', 'pid=', '--ppid', String(child.pid)], { encoding: 'utf8' }).split('\n').map(Number).filter((n) => n > 0);
  assert.equal(workers.length, 2);
  for (const pid of workers) {
    const environ = readFileSync(`/proc/${pid}/environ`, 'utf8');
    assert.ok(!/(^|\0)LISTEN_(PID|FDS|FDNAMES)=/.test(environ), `worker ${pid} inherited LISTEN_*`);
  }
  child.kill('SIGTERM');
  const [code] = await once(child, 'exit');
  assert.equal(code, 0);
});

test('reload: a new --handshake-timeout applies to connections after the reload', { timeout: 30_000 }, async (t) => {
  const dir = tempDir(t);
  const configFile = path.join(dir, 'config.json');
  writeFileSync(configFile, JSON.stringify({ handshakeTimeout: 600000 }));
  const d = await spawnDaemon(t, ['--workers', '2', '--config', configFile, '--cert-dir', dir]);
  writeFileSync(configFile, JSON.stringify({ handshakeTimeout: 300 }));
  d.child.kill('SIGHUP');
  await d.waitForLine((l) => l.message === 'reloaded');
  // A client that never starts its handshake is closed by the new, short timeout.
  const outcome = await rawOutcome(d.port);
  assert.equal(outcome.received, 0);
});

test('reload: SIGHUPs that arrive together run one reload, not one each at the same time', async (t) => {
  const d = await startDaemon(t);
  const results = await Promise.all([d.supervisor.reload(), d.supervisor.reload(), d.supervisor.reload()]);
  assert.deepEqual(results, [true, true, true]);
  assert.equal(await metricOf(d.supervisor, 'tls_echod_reloads_total', { result: 'ok' }), 1);
  assert.equal(await d.supervisor.reload(), true, 'a later reload runs again');
  assert.equal(await metricOf(d.supervisor, 'tls_echod_reloads_total', { result: 'ok' }), 2);
});

test('shutdown: a stop signal during start-up closes what start-up opened', async (t) => {
  const config = loadConfig({ flags: { listen: '127.0.0.1:0', workers: '0', logLevel: 'error', drainTimeout: '100', certDir: tempDir(t) }, env: {} });
  const supervisor = new Supervisor(config, createLogger({ level: 'error', format: 'json' }), { reloadConfig: () => config, version: 'test' });
  const starting = supervisor.start();
  // Certificate generation is still running: the signal comes before anything listens.
  await supervisor.shutdown('SIGTERM');
  await starting;
  const listeners = (supervisor as unknown as { listeners: net.Server[] }).listeners;
  assert.equal(listeners.length, 1, 'start-up still opened its listener');
  assert.ok(listeners.every((l) => !l.listening), 'the listener opened by start-up is closed');
});
