// The scenario listener's connection path, before it is wired into `serve`: the ClientHello's
// server name picks the scenario; an unknown name or none gets unrecognized_name; each scenario's
// TLS settings hold from the first byte; every connection is reported once.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { requireGeneratedPair } from '../../src/certs/cert-dir';
import { createLeaf } from '../../src/certs/issue';
import type { CloseReason } from '../../src/daemon/session';
import { ensureScenarioCertificates } from '../../src/scenarios/scenario-certs';
import { createLogger } from '../../src/ops/logger';
import { ScenarioServer } from '../../src/scenarios/scenario-server';
import { dh1024Parameters, namedScenarioServerNames, scenarioTlsOptions } from '../../src/scenarios/scenario-tls';
import { issueClient, tryEcho } from '../helpers/client-certs';
import { runCli, tempDir, until } from '../helpers/daemon';

const DOMAIN = 'localhost';
const DAY_MS = 86_400_000;

interface Running {
  readonly port: number;
  readonly ca: Buffer;
  readonly certDir: string;
  readonly server: ScenarioServer;
  readonly closed: Array<{ scenario: string | undefined; reason: CloseReason }>;
  readonly opened: string[];
}

async function start(t: TestContext, timing: { delayMs?: number; handshakeTimeoutMs?: number } = {}): Promise<Running> {
  const certDir = tempDir(t);
  assert.equal((await runCli(['cert', 'generate', '--cert-dir', certDir])).code, 0);
  const certs = await ensureScenarioCertificates({ certDir, domain: DOMAIN });
  const localCa = requireGeneratedPair(certDir, 'ca');
  const names = namedScenarioServerNames(DOMAIN, certs);
  const validity = { notBefore: new Date(Date.now() - DAY_MS), notAfter: new Date(Date.now() + 30 * DAY_MS) };
  const ecdsa = await createLeaf(localCa, names, 'ecdsa-p256', validity);
  const rsa = await createLeaf(localCa, names, 'rsa-2048', validity);
  const closed: Running['closed'] = [];
  const opened: string[] = [];
  const server = new ScenarioServer(
    {
      domain: DOMAIN,
      delayMs: timing.delayMs ?? 200,
      handshakeTimeoutMs: timing.handshakeTimeoutMs ?? 5000,
      limits: { idleTimeoutMs: 0, sessionTimeoutMs: 0, bandwidthBytesPerSec: 0, maxSessionBytes: 0 },
    },
    scenarioTlsOptions({ certs, ecdsa: { key: ecdsa.keyPem, cert: ecdsa.certPem }, rsa: { key: rsa.keyPem, cert: rsa.certPem }, localCa: localCa.certPem, dh1024: dh1024Parameters() }),
    {
      onScenario: () => {},
      onOpen: (_ms, scenario) => opened.push(scenario),
      onClosed: (report, scenario) => closed.push({ scenario, reason: report.reason }),
    },
    createLogger({ level: 'error', format: 'json' }),
  );
  let nextId = 1;
  const listener = net.createServer({ pauseOnConnect: true, noDelay: true }, (socket) => server.accept(socket, { id: nextId++, ip: '127.0.0.1', port: socket.remotePort ?? 0 }));
  listener.listen(0, '127.0.0.1');
  await once(listener, 'listening');
  t.after(() => {
    server.closeAll('shutdown');
    listener.close();
  });
  return { port: (listener.address() as net.AddressInfo).port, ca: readFileSync(path.join(certDir, 'ca.pem')), certDir, server, closed, opened };
}

const at = (scenario: string): { servername: string } => ({ servername: `${scenario}.${DOMAIN}` });

test('scenario server: the server name picks the scenario, and its certificate is served from the first byte', async (t) => {
  const s = await start(t);
  assert.equal((await tryEcho(s.port, s.ca, at('valid'))).echoed, 'ping');
  // (intermediate is left out: `cert generate` makes its CA with pathLen 0, which forbids the
  // intermediate this scenario needs; see scenario-certs.test.ts.)
  assert.equal((await tryEcho(s.port, s.ca, at('expired'))).error, 'CERT_HAS_EXPIRED');
  assert.equal((await tryEcho(s.port, s.ca, at('self-signed'))).error, 'DEPTH_ZERO_SELF_SIGNED_CERT');
  assert.equal((await tryEcho(s.port, s.ca, at('wrong-eku'))).error, 'INVALID_PURPOSE');
  assert.equal((await tryEcho(s.port, s.ca, at('wrong-host'))).error, 'ERR_TLS_CERT_ALTNAME_INVALID');
  await until(() => s.server.size === 0, 5000, 'every connection reported');
  assert.deepEqual(s.opened.filter((n) => n === 'valid'), ['valid']);
  assert.equal(s.closed.length, 5);
  assert.deepEqual(s.closed.find((c) => c.scenario === 'valid')?.reason, 'peer-closed');
});

test('scenario server: no server name, or one that is no scenario, gets a fatal unrecognized_name alert', async (t) => {
  const s = await start(t);
  for (const options of [{}, at('valdi'), { servername: 'valid.example' }]) {
    const outcome = await tryEcho(s.port, s.ca, options);
    assert.equal(outcome.echoed, '');
    assert.match(String(outcome.error), /UNRECOGNIZED_NAME/, JSON.stringify(options));
  }
  const handshakeAlert = await tryEcho(s.port, s.ca, at('handshake-alert'));
  assert.match(String(handshakeAlert.error), /HANDSHAKE_FAILURE/);
  await until(() => s.server.size === 0, 5000, 'every connection reported');
  assert.deepEqual(s.closed.map((c) => c.scenario), [undefined, undefined, undefined, 'handshake-alert']);
});

test('scenario server: protocol and client-certificate scenarios hold their settings', async (t) => {
  const s = await start(t);
  const v12 = await tryEcho(s.port, s.ca, at('tls1.2-only'));
  assert.equal(v12.echoed, 'ping');
  assert.ok((await tryEcho(s.port, s.ca, { ...at('tls1.2-only'), minVersion: 'TLSv1.3' })).error);
  assert.ok((await tryEcho(s.port, s.ca, { ...at('tls1.3-only'), maxVersion: 'TLSv1.2' })).error);
  assert.ok((await tryEcho(s.port, s.ca, at('tls1.0'))).error, 'a default client refuses TLS 1.0');
  assert.equal((await tryEcho(s.port, s.ca, { ...at('tls1.0'), minVersion: 'TLSv1', ciphers: 'DEFAULT@SECLEVEL=0' })).echoed, 'ping');
  assert.equal((await tryEcho(s.port, s.ca, at('static-rsa'))).echoed, 'ping', 'a default client still offers RSA key exchange');
  assert.ok((await tryEcho(s.port, s.ca, { ...at('static-rsa'), ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256' })).error, 'a forward-secret-only client finds no shared cipher');

  const alice = await issueClient(s.certDir, 'alice');
  assert.equal((await tryEcho(s.port, s.ca, { ...at('client-cert-required'), cert: alice.cert, key: alice.key })).echoed, 'ping');
  assert.equal((await tryEcho(s.port, s.ca, at('client-cert-required'))).echoed, '');
  assert.equal((await tryEcho(s.port, s.ca, at('client-cert-requested'))).echoed, 'ping');
});

test('scenario server: slow-handshake answers after the delay; stall-handshake never does and closes at the deadline', async (t) => {
  const s = await start(t, { delayMs: 300, handshakeTimeoutMs: 600 });
  let began = performance.now();
  assert.equal((await tryEcho(s.port, s.ca, at('slow-handshake'))).echoed, 'ping');
  assert.ok(performance.now() - began >= 300, 'no sooner than --scenario-delay');
  began = performance.now();
  const stalled = await tryEcho(s.port, s.ca, at('stall-handshake'));
  assert.equal(stalled.secure, false);
  assert.ok(performance.now() - began >= 600, 'closed at the deadline, not before');
  await until(() => s.server.size === 0, 5000, 'every connection reported');
  assert.deepEqual(s.closed.find((c) => c.scenario === 'stall-handshake')?.reason, 'handshake-timeout');
});

test('scenario server: behaviour scenarios run after a correct handshake', async (t) => {
  const s = await start(t, { delayMs: 200 });
  const closed = await tryEcho(s.port, s.ca, at('close-after-handshake'));
  assert.equal(closed.secure, true);
  assert.equal(closed.echoed, '');
  assert.equal(closed.error, undefined, 'a clean close_notify');
  const began = performance.now();
  assert.equal((await tryEcho(s.port, s.ca, at('slow-echo'))).echoed, 'ping');
  assert.ok(performance.now() - began >= 200, 'no sooner than the delay');
  assert.equal((await tryEcho(s.port, s.ca, at('small-records'))).echoed, 'ping');
  await until(() => s.server.size === 0, 5000, 'every connection reported');
  assert.deepEqual(s.opened, ['close-after-handshake', 'slow-echo', 'small-records']);
});
