// The scenario listener's connection path, in-process (listener.test.ts runs it inside the
// daemon): the ClientHello's server name picks the scenario; an unknown name or none gets
// unrecognized_name; each scenario's TLS settings hold from the first byte; every connection is
// reported once.

import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import type { CloseReason } from '../../src/daemon/session';
import type { ScenarioServer } from '../../src/scenarios/scenario-server';
import { issueClient, tryEcho } from '../helpers/client-certs';
import { until } from '../helpers/daemon';
import { startScenarioListener } from '../helpers/scenario-listener';

const DOMAIN = 'localhost';

interface Running {
  readonly port: number;
  readonly ca: Buffer;
  readonly certDir: string;
  readonly server: ScenarioServer;
  readonly closed: Array<{ scenario: string | undefined; reason: CloseReason }>;
  readonly opened: string[];
}

async function start(t: TestContext, timing: { delayMs?: number; handshakeTimeoutMs?: number } = {}): Promise<Running> {
  const closed: Running['closed'] = [];
  const opened: string[] = [];
  const listener = await startScenarioListener(t, {
    domain: DOMAIN,
    delayMs: timing.delayMs ?? 200,
    handshakeTimeoutMs: timing.handshakeTimeoutMs ?? 5000,
    events: {
      onOpen: (_ms, scenario) => opened.push(scenario),
      onClosed: (report, scenario) => closed.push({ scenario, reason: report.reason }),
    },
  });
  return { port: listener.port, ca: Buffer.from(listener.caPem), certDir: listener.certDir, server: listener.server, closed, opened };
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
