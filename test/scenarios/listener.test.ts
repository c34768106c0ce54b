// The scenario listener inside the daemon (`serve --scenarios`): the same admission and session
// slots as the main listener, its own metric and session-line field, certificates that stay
// right as the clock moves, and a clean shutdown. What each scenario looks like to real client
// stacks is in clients*.test.ts.

import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import { test, type TestContext } from 'node:test';
import { prepareCertDir, writePair } from '../../src/certs/cert-dir';
import { createCa } from '../../src/certs/issue';
import { SCENARIOS } from '../../src/scenarios/catalogue';
import { tryEcho } from '../helpers/client-certs';
import { connect, rawOutcome, runCli, spawnDaemon, startDaemon, tempDir, until, type InProcessDaemon } from '../helpers/daemon';
import { metricOf } from '../helpers/metrics';

const DAY_MS = 86_400_000;

async function startWithScenarios(t: TestContext, flags: Record<string, unknown> = {}, clock?: () => Date): Promise<InProcessDaemon & { scenarioPort: number }> {
  const d = await startDaemon(t, { scenarios: '127.0.0.1:0', scenarioDelay: '200', ...flags }, clock ? { clock } : {});
  return { ...d, scenarioPort: d.supervisor.scenarioAddress!.port };
}

/** The leaf a scenario serves, fetched without verifying it. */
async function servedLeaf(port: number, scenario: string): Promise<X509Certificate> {
  const socket = tls.connect({ host: '127.0.0.1', port, servername: `${scenario}.localhost`, rejectUnauthorized: false });
  await once(socket, 'secureConnect');
  const leaf = socket.getPeerX509Certificate()!;
  socket.destroy();
  return leaf;
}

function validAt(cert: X509Certificate, at: Date): boolean {
  return new Date(cert.validFrom) <= at && at <= new Date(cert.validTo);
}

for (const workers of ['0', '2']) {
  test(`scenario listener (--workers ${workers}): every scenario counted from 0, the control echoes, a fault refuses`, async (t) => {
    const d = await startWithScenarios(t, { workers });
    for (const s of SCENARIOS) assert.equal(await metricOf(d.supervisor, 'tls_echod_scenario_sessions_total', { scenario: s.name }), 0, s.name);

    const valid = await tryEcho(d.scenarioPort, d.ca, { servername: 'valid.localhost' });
    assert.deepEqual([valid.echoed, valid.error], ['ping', undefined]);
    const expired = await tryEcho(d.scenarioPort, d.ca, { servername: 'expired.localhost' });
    assert.equal(expired.error, 'CERT_HAS_EXPIRED');
    const unknown = await tryEcho(d.scenarioPort, d.ca, { servername: 'nope.localhost' });
    assert.match(unknown.error ?? '', /UNRECOGNIZED_NAME/);
    // The main listener is untouched by it.
    assert.equal((await tryEcho(d.port, d.ca)).echoed, 'ping');

    await until(() => d.supervisor.counts.sessions === 0, 5000, 'every session reported');
    assert.equal(await metricOf(d.supervisor, 'tls_echod_scenario_sessions_total', { scenario: 'valid' }), 1);
    assert.equal(await metricOf(d.supervisor, 'tls_echod_scenario_sessions_total', { scenario: 'expired' }), 1);
    assert.equal(await metricOf(d.supervisor, 'tls_echod_scenario_sessions_total', { scenario: 'wrong-host' }), 0);
    // Sessions: the main listener's and valid's; expired's and the unknown name's handshakes failed.
    assert.equal(await metricOf(d.supervisor, 'tls_echod_sessions_closed_total', { reason: 'peer-closed' }), 2);
    assert.equal(await metricOf(d.supervisor, 'tls_echod_handshake_failures_total', { reason: 'handshake-failed' }), 2);
    assert.equal(d.supervisor.counts.ipsHeld, 0, 'every per-IP count released');
  });
}

test('scenario listener: every catalogue name is served (routed to its scenario), anything else is not', async (t) => {
  const d = await startWithScenarios(t, { maxConnsPerIp: '100' });
  const sessions = async (name: string): Promise<number> => metricOf(d.supervisor, 'tls_echod_scenario_sessions_total', { scenario: name });
  for (const { name } of SCENARIOS) {
    const socket = tls.connect({ host: '127.0.0.1', port: d.scenarioPort, servername: `${name}.localhost`, rejectUnauthorized: false });
    socket.on('error', () => {});
    // Counted once the listener has read the ClientHello and picked the scenario: before any answer.
    const deadline = Date.now() + 5000;
    while ((await sessions(name)) !== 1) {
      assert.ok(Date.now() < deadline, `${name} was not served`);
      await new Promise((resolve) => setImmediate(resolve));
    }
    socket.destroy();
  }
  const other = await tryEcho(d.scenarioPort, d.ca, { servername: 'valid.example.test' });
  assert.match(other.error ?? '', /UNRECOGNIZED_NAME/);
  const { body } = await d.supervisor.metrics.render();
  const served = [...body.matchAll(/^tls_echod_scenario_sessions_total\{scenario="([^"]+)"\} (\d+)$/gm)].map((m) => [m[1], Number(m[2])]);
  assert.deepEqual(served, SCENARIOS.map((s) => [s.name, 1]));
});

test('scenario listener: the per-IP limit and the session slots are the main listener\'s', async (t) => {
  const d = await startWithScenarios(t, { maxConnsPerIp: '1', maxSessions: '2', idleTimeout: '0' });
  // One session from 127.0.0.1 on the main listener: 127.0.0.1 has no room left on either listener.
  const main = tls.connect({ host: '127.0.0.1', port: d.port, ca: d.ca, servername: 'localhost' });
  t.after(() => main.destroy());
  await once(main, 'secureConnect');
  assert.equal((await rawOutcome(d.scenarioPort, '127.0.0.1')).reset, true, 'ip-limit across listeners');
  // A no-echo scenario session from 127.0.0.2 takes the second slot: 127.0.0.3 finds none.
  const held = await connect(t, d.scenarioPort, d.ca, { servername: 'no-echo.localhost', localAddress: '127.0.0.2' });
  assert.equal((await rawOutcome(d.scenarioPort, '127.0.0.3')).reset, true, 'no free session slot');
  assert.equal(await metricOf(d.supervisor, 'tls_echod_connections_refused_total', { reason: 'ip-limit' }), 1);
  assert.equal(await metricOf(d.supervisor, 'tls_echod_connections_refused_total', { reason: 'pool-full' }), 1);
  // The slot comes back when the scenario session ends.
  held.destroy();
  await until(() => d.supervisor.counts.sessions === 1, 5000, 'the scenario slot released');
  const again = await tryEcho(d.scenarioPort, d.ca, { servername: 'valid.localhost', localAddress: '127.0.0.3' } as tls.ConnectionOptions);
  assert.equal(again.echoed, 'ping');
});

test('scenario listener: a no-echo session is bounded by --idle-timeout, a stalled hello by --handshake-timeout', async (t) => {
  const d = await startWithScenarios(t, { idleTimeout: '300', handshakeTimeout: '300' });
  const idle = tls.connect({ host: '127.0.0.1', port: d.scenarioPort, ca: d.ca, servername: 'no-echo.localhost' });
  idle.on('error', () => {});
  await once(idle, 'secureConnect');
  const began = performance.now();
  await new Promise((resolve) => idle.once('close', resolve));
  assert.ok(performance.now() - began >= 250, 'closed at the idle timeout, not before');
  const stalled = tls.connect({ host: '127.0.0.1', port: d.scenarioPort, ca: d.ca, servername: 'stall-handshake.localhost' });
  const errors: string[] = [];
  stalled.on('error', (err: NodeJS.ErrnoException) => errors.push(err.code ?? err.message));
  // Not events.once: it rejects on the 'error' the daemon's close is to this client.
  await new Promise((resolve) => stalled.once('close', resolve));
  assert.deepEqual(errors, ['ECONNRESET']);
  await until(() => d.supervisor.counts.sessions === 0, 5000, 'both reported');
  assert.equal(await metricOf(d.supervisor, 'tls_echod_sessions_closed_total', { reason: 'idle-timeout' }), 1);
  assert.equal(await metricOf(d.supervisor, 'tls_echod_handshake_failures_total', { reason: 'handshake-timeout' }), 1);
});

// Found by the network fuzzer (scripts/soak/net-fuzz.ts): an echo scenario's session (valid,
// intermediate, ...) is an EchoSession, whose idle timeout its server must check; the scenario
// server never did, so a client that went quiet held its session slot and per-IP count for good.
test('scenario listener: an echo scenario\'s silent session is closed at --idle-timeout', async (t) => {
  const d = await startWithScenarios(t, { idleTimeout: '300' });
  const quiet = await connect(t, d.scenarioPort, d.ca, { servername: 'valid.localhost' });
  quiet.on('error', () => {});
  const began = performance.now();
  const closed = new Promise((resolve) => quiet.once('close', resolve));
  const bound = new Promise((resolve) => setTimeout(resolve, 3000, 'still open'));
  assert.equal(await Promise.race([closed, bound]), false, 'closed (no error) within 10 idle timeouts');
  assert.ok(performance.now() - began >= 250, 'closed at the idle timeout, not before');
  await until(() => d.supervisor.counts.sessions === 0, 5000, 'the session reported');
  assert.equal(await metricOf(d.supervisor, 'tls_echod_sessions_closed_total', { reason: 'idle-timeout' }), 1);
  assert.equal(await metricOf(d.supervisor, 'tls_echod_scenario_sessions_total', { scenario: 'valid' }), 1);
});

test('scenario certificates: 400 days on, valid is still valid and expired still expired, renewed without a restart', async (t) => {
  let now = new Date();
  const d = await startWithScenarios(t, {}, () => now);
  const before = await servedLeaf(d.scenarioPort, 'valid');
  assert.ok(validAt(before, new Date()));

  now = new Date(Date.now() + 400 * DAY_MS);
  await d.supervisor.renewIfDue();
  const valid = await servedLeaf(d.scenarioPort, 'valid');
  const expired = await servedLeaf(d.scenarioPort, 'expired');
  const notYet = await servedLeaf(d.scenarioPort, 'not-yet-valid');
  const ca = new X509Certificate(d.ca);
  assert.notEqual(valid.fingerprint256, before.fingerprint256, 'renewed');
  assert.ok(validAt(valid, now), `valid at ${now.toISOString()}: ${valid.validFrom} .. ${valid.validTo}`);
  assert.ok(valid.verify(ca.publicKey), 'from the same local CA');
  assert.ok(new Date(expired.validTo) < now, `expired at ${now.toISOString()}: ${expired.validTo}`);
  assert.ok(new Date(notYet.validFrom) > now, `not yet valid at ${now.toISOString()}: ${notYet.validFrom}`);
  // A renewal check soon after renews nothing more.
  now = new Date(now.getTime() + DAY_MS);
  await d.supervisor.renewIfDue();
  assert.equal((await servedLeaf(d.scenarioPort, 'valid')).fingerprint256, valid.fingerprint256);
});

test('scenario listener (process): the listening line, the session line, SIGTERM with a scenario session open', async (t) => {
  const dir = tempDir(t);
  const d = await spawnDaemon(t, ['--cert-dir', dir, '--scenarios', '127.0.0.1:0', '--drain-timeout', '200', '--workers', '2']);
  const listening = d.lines.find((l) => l.message === 'listening')!;
  assert.equal(listening.scenarioDomain, 'localhost');
  const port = Number(/^127\.0\.0\.1:(\d+)$/.exec(String(listening.scenarios))?.[1]);
  assert.ok(port > 0, `scenarios address in ${JSON.stringify(listening)}`);
  const ca = readFileSync(`${dir}/ca.pem`);
  assert.equal((await tryEcho(port, ca, { servername: 'tls1.2-only.localhost' })).echoed, 'ping');
  const line = await d.waitForLine((l) => l.message === 'session ended' && l.scenario === 'tls1.2-only');
  assert.equal(line.tlsVersion, 'TLSv1.2');
  assert.equal(line.sni, 'tls1.2-only.localhost');
  assert.equal(line.bytesIn, 4);

  const open = tls.connect({ host: '127.0.0.1', port, ca, servername: 'no-echo.localhost' });
  open.on('error', () => {});
  await once(open, 'secureConnect');
  const closed = once(open, 'close');
  assert.equal(await d.stop('SIGTERM'), 0);
  await closed;
  const ended = d.lines.find((l) => l.message === 'session ended' && l.scenario === 'no-echo');
  assert.equal(ended?.reason, 'shutdown');
  // Nothing outside the log: not even Node's warning about dh-1024's small group, which is its point.
  assert.equal(d.stderr(), '');
});

test('--scenarios: with --cert and no local CA, a clear error and exit 1; on the --listen address, exit 2', async (t) => {
  const dir = tempDir(t);
  assert.equal((await runCli(['cert', 'generate', '--cert-dir', `${dir}/given`])).code, 0);
  const given = ['--cert', `${dir}/given/server.pem`, '--key', `${dir}/given/server-key.pem`];
  const noCa = await runCli(['serve', '--listen', '127.0.0.1:0', '--scenarios', '127.0.0.1:0', '--cert-dir', `${dir}/empty`, ...given]);
  assert.equal(noCa.code, 1);
  assert.match(noCa.stderr, /--scenarios: the scenario certificates come from the local CA in --cert-dir .*empty.*tls-echod cert generate --cert-dir/);
  const same = await runCli(['serve', '--listen', '127.0.0.1:4999', '--scenarios', '127.0.0.1:4999']);
  assert.equal(same.code, 2);
  assert.match(same.stderr, /--scenarios 127\.0\.0\.1:4999 is the --listen address/);
  const badDomain = await runCli(['serve', '--scenarios', '127.0.0.1:0', '--scenario-domain', 'not a domain']);
  assert.equal(badDomain.code, 2);
  assert.match(badDomain.stderr, /--scenario-domain: "not a domain" is not a DNS name/);
});

test('scenario listener: a local CA from before pathLen 1 gets a warning naming the fix, and intermediate is refused', async (t) => {
  const dir = tempDir(t);
  prepareCertDir(dir);
  const now = Date.now();
  writePair(dir, 'ca', await createCa('ecdsa-p256', { notBefore: new Date(now - DAY_MS), notAfter: new Date(now + 3650 * DAY_MS) }, { pathLen: 0 }));
  const d = await spawnDaemon(t, ['--cert-dir', dir, '--scenarios', '127.0.0.1:0', '--workers', '0']);
  const warning = d.lines.find((l) => l.level === 'warn' && String(l.message).startsWith('the local CA allows no intermediate'));
  assert.match(String(warning?.message), /tls-echod cert generate --force/);
  const port = Number(String(d.lines.find((l) => l.message === 'listening')!.scenarios).split(':')[1]);
  const refused = await tryEcho(port, readFileSync(`${dir}/ca.pem`), { servername: 'intermediate.localhost' });
  assert.equal(refused.error, 'PATH_LENGTH_EXCEEDED');
});

test('check --scenarios: every scenario of the real daemon behaves as the catalogue says', async (t) => {
  const dir = tempDir(t);
  const d = await spawnDaemon(t, ['--cert-dir', dir, '--scenarios', '127.0.0.1:0', '--scenario-delay', '300', '--workers', '2']);
  const address = String(d.lines.find((l) => l.message === 'listening')!.scenarios);
  assert.equal((await runCli(['cert', 'client', 'alice', '--cert-dir', dir])).code, 0);
  const client = ['--cert', `${dir}/clients/alice.pem`, '--key', `${dir}/clients/alice-key.pem`];
  const r = await runCli(['check', address, '--scenarios', '--ca', `${dir}/ca.pem`, '--scenario-delay', '300', '--json', ...client]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const report = JSON.parse(r.stdout) as { ok: boolean; scenarios: Array<{ name: string; ok: boolean }> };
  assert.equal(report.ok, true);
  for (const { name } of SCENARIOS) assert.ok(report.scenarios.some((row) => row.name === name && row.ok), name);
});
