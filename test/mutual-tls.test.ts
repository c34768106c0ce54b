// Mutual TLS (--client-auth): who gets an echo and who is refused, with Node, openssl s_client
// and python3 as clients, TLS 1.2 and 1.3, inline and with worker processes; the refusal's close
// reason and metric; resumption and reload, so that nothing slips past the check.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { copyFileSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import tls from 'node:tls';
import { loadConfig, type Config } from '../src/config/config';
import { parseCrls } from '../src/mtls/crl';
import { revokeClientCertificate } from '../src/mtls/revoke';
import { roundTrip, runCli, spawnDaemon, startDaemon, tempDir, until } from './helpers/daemon';
import { issueClient, tryEcho, type EchoOutcome } from './helpers/client-certs';
import { metricOf } from './helpers/metrics';

const VERSIONS = ['TLSv1.2', 'TLSv1.3'] as const;
const DAY_MS = 86_400_000;

function assertRefused(outcome: EchoOutcome, what: string): void {
  assert.equal(outcome.echoed, '', `${what}: nothing may be echoed`);
}

/** A --cert-dir with a local CA and server certificate in it. */
async function certDir(t: Parameters<typeof tempDir>[0]): Promise<string> {
  const dir = tempDir(t);
  const generated = await runCli(['cert', 'generate', '--cert-dir', dir]);
  assert.equal(generated.code, 0, generated.stderr);
  return dir;
}

for (const workers of ['0', '2']) {
  test(`mutual tls: --client-auth require with --workers ${workers}: only a valid client certificate gets an echo`, async (t) => {
    const dir = await certDir(t);
    const other = await certDir(t);
    const alice = await issueClient(dir, 'alice');
    const expired = await issueClient(dir, 'old', -30, -1);
    const mallory = await issueClient(other, 'mallory');
    const d = await startDaemon(t, { certDir: dir, clientAuth: 'require', workers });
    const serverPair = { cert: readFileSync(path.join(dir, 'server.pem')), key: readFileSync(path.join(dir, 'server-key.pem')) };
    let refused = 0;
    for (const version of VERSIONS) {
      const pin = { minVersion: version, maxVersion: version };
      const ok = await tryEcho(d.port, d.ca, { ...pin, cert: alice.cert, key: alice.key });
      assert.equal(ok.echoed, 'ping', `${version}: alice (${ok.error})`);
      const none = await tryEcho(d.port, d.ca, pin);
      assertRefused(none, `${version}: no certificate`);
      // OpenSSL's own refusal: an alert the client reads (TLS 1.3: after its side of the handshake).
      // (OpenSSL 3.0, in Node 20, names the TLS 1.2 alert SSLV3_ALERT_...; 3.5, in Node 22 and 24, SSL/TLS_ALERT_...)
      assert.match(String(none.error), version === 'TLSv1.3' ? /^ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED$/ : /^ERR_SSL_(SSLV3|SSL\/TLS)_ALERT_HANDSHAKE_FAILURE$/);
      assertRefused(await tryEcho(d.port, d.ca, { ...pin, cert: mallory.cert, key: mallory.key }), `${version}: another CA`);
      assertRefused(await tryEcho(d.port, d.ca, { ...pin, cert: expired.cert, key: expired.key }), `${version}: expired`);
      // The server's own leaf: EKU serverAuth only, so not a client certificate.
      assertRefused(await tryEcho(d.port, d.ca, { ...pin, ...serverPair }), `${version}: serverAuth only`);
      refused += 4;
    }
    await until(() => d.supervisor.counts.sessions === 0, 5000, 'every connection reported');
    assert.equal(await metricOf(d.supervisor, 'tls_echod_handshake_failures_total', { reason: 'client-cert' }), refused);
    assert.equal(await metricOf(d.supervisor, 'tls_echod_handshake_failures_total', { reason: 'handshake-failed' }), 0);
  });
}

test('mutual tls: --client-auth request echoes without a certificate and refuses one that does not verify', async (t) => {
  const dir = await certDir(t);
  const other = await certDir(t);
  const alice = await issueClient(dir, 'alice');
  const mallory = await issueClient(other, 'mallory');
  const d = await startDaemon(t, { certDir: dir, clientAuth: 'request' });
  for (const version of VERSIONS) {
    const pin = { minVersion: version, maxVersion: version };
    assert.equal((await tryEcho(d.port, d.ca, pin)).echoed, 'ping', `${version}: no certificate`);
    assert.equal((await tryEcho(d.port, d.ca, { ...pin, cert: alice.cert, key: alice.key })).echoed, 'ping', `${version}: alice`);
    assertRefused(await tryEcho(d.port, d.ca, { ...pin, cert: mallory.cert, key: mallory.key }), `${version}: another CA`);
  }
  await until(() => d.supervisor.counts.sessions === 0, 5000, 'every connection reported');
  assert.ok((await metricOf(d.supervisor, 'tls_echod_handshake_failures_total', { reason: 'client-cert' })) >= 2);
});

test('mutual tls: a resumed session keeps its client certificate; none resumes into a policy it was not checked under', async (t) => {
  const dir = await certDir(t);
  const alice = await issueClient(dir, 'alice');
  let next: Config | undefined;
  const d = await startDaemon(t, { certDir: dir }, { reloadConfig: () => next! });
  const reloadTo = async (clientAuth: string): Promise<void> => {
    next = loadConfig({ flags: { listen: '127.0.0.1:0', workers: '0', logLevel: 'error', logFormat: 'json', certDir: dir, clientAuth }, env: {} });
    assert.equal(await d.supervisor.reload(), true);
  };
  for (const version of VERSIONS) {
    const pin = { minVersion: version, maxVersion: version };
    await reloadTo('off');
    const offTicket = (await tryEcho(d.port, d.ca, pin)).session;
    assert.ok(offTicket, `${version}: a ticket under off`);
    assert.equal((await tryEcho(d.port, d.ca, { ...pin, session: offTicket })).resumed, true, `${version}: it resumes under off`);

    await reloadTo('require');
    const stale = await tryEcho(d.port, d.ca, { ...pin, session: offTicket });
    assert.equal(stale.resumed, false, `${version}: a ticket from before the reload gets a full handshake`);
    assertRefused(stale, `${version}: ... which needs a certificate`);

    const first = await tryEcho(d.port, d.ca, { ...pin, cert: alice.cert, key: alice.key });
    assert.equal(first.echoed, 'ping');
    // Resuming needs no certificate: the session is alice's.
    const resumed = await tryEcho(d.port, d.ca, { ...pin, session: first.session });
    assert.equal(resumed.resumed, true, `${version}: alice resumes`);
    assert.equal(resumed.echoed, 'ping');
  }
});

test('mutual tls: a reload with a bad --client-ca is refused whole and the old policy keeps serving', async (t) => {
  const dir = await certDir(t);
  const alice = await issueClient(dir, 'alice');
  let next: Config | undefined;
  const d = await startDaemon(t, { certDir: dir, clientAuth: 'require' }, { reloadConfig: () => next! });
  const open = await tryEcho(d.port, d.ca, { cert: alice.cert, key: alice.key });
  assert.equal(open.echoed, 'ping');
  for (const clientCa of [path.join(dir, 'missing.pem'), path.join(dir, 'server-key.pem')]) {
    next = loadConfig({ flags: { listen: '127.0.0.1:0', workers: '0', certDir: dir, clientAuth: 'require', clientCa }, env: {} });
    assert.equal(await d.supervisor.reload(), false, clientCa);
  }
  assert.equal((await tryEcho(d.port, d.ca, { cert: alice.cert, key: alice.key })).echoed, 'ping');
  assertRefused(await tryEcho(d.port, d.ca), 'no certificate, still required');
});

test('mutual tls: config errors exit 2 naming the option', async (t) => {
  const dir = await certDir(t);
  const withCert = await runCli(['serve', '--cert', path.join(dir, 'server.pem'), '--key', path.join(dir, 'server-key.pem'), '--client-auth', 'require']);
  assert.equal(withCert.code, 2);
  assert.match(withCert.stderr, /--client-auth require with --cert needs --client-ca/);
  const badMode = await runCli(['serve', '--cert-dir', dir, '--client-auth', 'yes']);
  assert.equal(badMode.code, 2);
  assert.match(badMode.stderr, /--client-auth: must be one of off, request, require/);
  const badCa = await runCli(['serve', '--cert-dir', dir, '--listen', '127.0.0.1:0', '--client-auth', 'require', '--client-ca', path.join(dir, 'nope.pem')]);
  assert.equal(badCa.code, 1);
  assert.match(badCa.stderr, /--client-ca .*nope\.pem: no such file/);
});

test('mutual tls: openssl s_client and python3 present a client certificate, and are refused without one', async (t) => {
  const dir = await certDir(t);
  const alice = await issueClient(dir, 'alice');
  const d = await startDaemon(t, { certDir: dir, clientAuth: 'require' });
  const ca = path.join(dir, 'ca.pem');

  const sClient = async (extra: string[]): Promise<{ out: string; err: string }> => {
    const child = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${d.port}`, '-servername', 'localhost', '-CAfile', ca, '-verify_return_error', '-quiet', ...extra]);
    t.after(() => child.kill('SIGKILL'));
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      if (out === 'ping\n') child.kill('SIGINT');
    });
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.stdin.write('ping\n');
    await new Promise((resolve) => child.once('close', resolve));
    return { out, err };
  };
  assert.equal((await sClient(['-cert', alice.certFile, '-key', alice.keyFile])).out, 'ping\n');
  const refused = await sClient([]);
  assert.equal(refused.out, '');
  assert.match(refused.err, /alert certificate required/);

  const python = async (withCert: boolean): Promise<string> => {
    const script = [
      'import socket, ssl, sys',
      'ctx = ssl.create_default_context(cafile=sys.argv[2])',
      'if len(sys.argv) > 3: ctx.load_cert_chain(sys.argv[3], sys.argv[4])',
      "s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', int(sys.argv[1]))), server_hostname='localhost')",
      "s.sendall(b'ping')",
      'try: print("echo", s.recv(4).decode())',
      'except ssl.SSLError as e: print("refused", e.reason)',
    ].join('\n');
    const args = ['-c', script, String(d.port), ca, ...(withCert ? [alice.certFile, alice.keyFile] : [])];
    const child = spawn('python3', args);
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    let err = '';
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    await new Promise((resolve) => child.once('close', resolve));
    return out.trim() || err;
  };
  assert.equal(await python(true), 'echo ping');
  assert.equal(await python(false), 'refused TLSV13_ALERT_CERTIFICATE_REQUIRED');
});

test('mutual tls: cert revoke + SIGHUP refuses the revoked certificate, also on resumption, while its open session keeps echoing', async (t) => {
  const dir = await certDir(t);
  const alice = await issueClient(dir, 'alice');
  const bob = await issueClient(dir, 'bob');
  const d = await spawnDaemon(t, ['--cert-dir', dir, '--client-auth', 'require', '--workers', '2']);
  const ca = readFileSync(path.join(dir, 'ca.pem'));
  const asAlice = { cert: alice.cert, key: alice.key };

  const open = tls.connect({ host: '127.0.0.1', port: d.port, ca, servername: 'localhost', ...asAlice });
  t.after(() => open.destroy());
  await once(open, 'secureConnect');
  assert.equal((await roundTrip(open, Buffer.from('before'))).toString(), 'before');
  const tickets = new Map<string, Buffer | undefined>();
  for (const version of VERSIONS) tickets.set(version, (await tryEcho(d.port, ca, { ...asAlice, minVersion: version, maxVersion: version })).session);

  const revoked = await runCli(['cert', 'revoke', alice.serial, '--cert-dir', dir]);
  assert.equal(revoked.code, 0, revoked.stderr);
  d.child.kill('SIGHUP');
  assert.equal((await d.waitForLine((l) => l.message === 'client certificates' && l.event === 'reload')).revoked, 1);

  assert.equal((await roundTrip(open, Buffer.from('after'))).toString(), 'after', 'a session open before the reload keeps echoing');
  for (const version of VERSIONS) {
    const pin = { minVersion: version, maxVersion: version };
    assertRefused(await tryEcho(d.port, ca, { ...asAlice, ...pin }), `${version}: revoked alice`);
    const ticket = tickets.get(version);
    assert.ok(ticket, `${version}: alice had a ticket`);
    const resumed = await tryEcho(d.port, ca, { ...asAlice, ...pin, session: ticket });
    assert.equal(resumed.resumed, false, `${version}: the ticket from before the CRL does not resume`);
    assertRefused(resumed, `${version}: ... and the full handshake refuses the revoked certificate`);
    const fresh = await tryEcho(d.port, ca, { cert: bob.cert, key: bob.key, ...pin });
    assert.equal(fresh.echoed, 'ping', `${version}: bob is not revoked`);
    const again = await tryEcho(d.port, ca, { ...pin, session: fresh.session });
    assert.equal(again.resumed, true, `${version}: bob resumes under the new CRL`);
  }
  const refusal = await d.waitForLine((l) => l.message === 'client certificate refused' && l.problem === 'revoked');
  assert.equal(refusal.error, 'CERT_REVOKED');
  const resumedLine = await d.waitForLine((l) => l.message === 'session ended' && l.resumed === true);
  assert.equal(resumedLine.clientSubject, 'CN=bob', 'a resumed session is logged with the certificate it resumed');
  assert.match(String(resumedLine.clientFingerprint256), /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
});

test('mutual tls: the daemon re-signs its client.crl before the next update, at start and at the renewal check, and keeps refusing what it lists', async (t) => {
  const dir = await certDir(t);
  const alice = await issueClient(dir, 'alice');
  const bob = await issueClient(dir, 'bob');
  const carol = await issueClient(dir, 'carol');
  const sixDaysAgo = new Date(Date.now() - 6 * DAY_MS);
  // Signed six days ago: one day of its seven left, less than the third that triggers re-signing.
  await revokeClientCertificate({ certDir: dir, target: alice.serial, now: sixDaysAgo });
  const crlFile = path.join(dir, 'client.crl');
  const nextUpdate = (): number => parseCrls(readFileSync(crlFile, 'utf8'), crlFile)[0]!.nextUpdate!.getTime();
  assert.ok(nextUpdate() < Date.now() + 2 * DAY_MS);

  const d = await startDaemon(t, { certDir: dir, clientAuth: 'require' });
  assert.ok(nextUpdate() > Date.now() + 6 * DAY_MS, 'NOT re-signed at start');
  assertRefused(await tryEcho(d.port, d.ca, { cert: alice.cert, key: alice.key }), 'alice stays revoked');
  assert.equal((await tryEcho(d.port, d.ca, { cert: bob.cert, key: bob.key })).echoed, 'ping');

  // Another revocation, written as if six days ago again; the renewal check re-signs it and serves it without a SIGHUP.
  await revokeClientCertificate({ certDir: dir, target: bob.serial, now: sixDaysAgo });
  await d.supervisor.renewIfDue();
  assert.ok(nextUpdate() > Date.now() + 6 * DAY_MS, 'NOT re-signed at the renewal check');
  assertRefused(await tryEcho(d.port, d.ca, { cert: bob.cert, key: bob.key }), 'bob, revoked in the re-signed CRL');
  assert.equal((await tryEcho(d.port, d.ca, { cert: carol.cert, key: carol.key })).echoed, 'ping');
});

test('mutual tls: a --client-crl past its next update, or from another CA, stops the start with a message naming it', async (t) => {
  const dir = await certDir(t);
  const other = await certDir(t);
  const stale = await issueClient(dir, 'stale');
  await revokeClientCertificate({ certDir: dir, target: stale.serial, now: new Date(Date.now() - 8 * DAY_MS) });
  // A copy: the daemon's own client.crl would be re-signed before it is read; a given one is the operator's to refresh.
  const staleCrl = path.join(dir, 'given.crl');
  copyFileSync(path.join(dir, 'client.crl'), staleCrl);
  rmSync(path.join(dir, 'client.crl'));
  const expired = await runCli(['serve', '--cert-dir', dir, '--listen', '127.0.0.1:0', '--client-auth', 'require', '--client-crl', staleCrl]);
  assert.equal(expired.code, 1);
  assert.match(expired.stderr, /--client-crl .*given\.crl: the CRL expired on .* OpenSSL would refuse every client/);

  const foreign = await issueClient(other, 'foreign');
  await revokeClientCertificate({ certDir: other, target: foreign.serial });
  const wrongCa = await runCli(['serve', '--cert-dir', dir, '--listen', '127.0.0.1:0', '--client-auth', 'require', '--client-crl', path.join(other, 'client.crl')]);
  assert.equal(wrongCa.code, 1);
  assert.match(wrongCa.stderr, /--client-crl .*client\.crl: the CRL is not signed by any of the client CAs/);
});
