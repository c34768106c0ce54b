// `check` and `bench` with --cert/--key (mutual TLS, issue 14): against a bare TLS echo server
// in this process (not the daemon) that asks for a client certificate or not; what the check
// reports, how a refusal reads, and that bench presents the certificate on every connection.
// Certificates come from the CLI: two local CAs, alice from the server's, mallory from the other.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, test, type TestContext } from 'node:test';
import tls from 'node:tls';
import { runCheck } from '../../src/client/check';
import { formatCheckResult } from '../../src/client/check-report';
import { refusalByAlert, tlsAlertName } from '../../src/client/client-cert-refusal';
import { runLoad } from '../../src/client/load-generator';
import { benchOptionsFromFlags } from '../../src/commands/bench';
import { checkOptionsFromFlags } from '../../src/commands/check';
import { ConfigError } from '../../src/errors';
import { runCli } from '../helpers/daemon';

/** A handshake_failure alert as Node names it: SSLV3_ALERT_... with OpenSSL 3.0 (Node 20), SSL/TLS_ALERT_... with 3.5 (Node 22, 24). */
const HANDSHAKE_FAILURE_ALERT = /^ERR_SSL_(SSLV3|SSL\/TLS)_ALERT_HANDSHAKE_FAILURE$/;

interface Pki {
  readonly dir: string;
  /** The server's CA, its server pair, and alice's pair from it. */
  readonly ca: string;
  readonly serverCert: string;
  readonly serverKey: string;
  readonly alice: { cert: string; key: string };
  /** From another CA the server doesn't trust. */
  readonly mallory: { cert: string; key: string };
}

let pki: Pki;

before(async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tls-echod-mtls-client-'));
  const mine = path.join(dir, 'mine');
  const other = path.join(dir, 'other');
  for (const args of [
    ['cert', 'generate', '--cert-dir', mine],
    ['cert', 'client', 'alice', '--cert-dir', mine],
    ['cert', 'generate', '--cert-dir', other],
    ['cert', 'client', 'mallory', '--cert-dir', other],
  ]) {
    const r = await runCli(args);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
  }
  pki = {
    dir,
    ca: path.join(mine, 'ca.pem'),
    serverCert: path.join(mine, 'server.pem'),
    serverKey: path.join(mine, 'server-key.pem'),
    alice: { cert: path.join(mine, 'clients', 'alice.pem'), key: path.join(mine, 'clients', 'alice-key.pem') },
    mallory: { cert: path.join(other, 'clients', 'mallory.pem'), key: path.join(other, 'clients', 'mallory-key.pem') },
  };
});

after(() => {
  if (pki !== undefined) rmSync(pki.dir, { recursive: true, force: true });
});

interface MtlsEchoServer {
  readonly target: string;
  readonly port: number;
  /** The subject CN of each client certificate the server accepted, in order. */
  readonly peers: string[];
}

/** A bare TLS echo on 127.0.0.1 port 0; with `requestCert` it requires a certificate from the CA (like the daemon will). */
async function echoServer(t: TestContext, options: { requestCert: boolean; maxVersion?: tls.SecureVersion }): Promise<MtlsEchoServer> {
  const sockets = new Set<tls.TLSSocket>();
  const peers: string[] = [];
  const server = tls.createServer(
    {
      cert: readFileSync(pki.serverCert),
      key: readFileSync(pki.serverKey),
      ca: readFileSync(pki.ca),
      requestCert: options.requestCert,
      rejectUnauthorized: options.requestCert,
      ...(options.maxVersion === undefined ? {} : { maxVersion: options.maxVersion }),
    },
    (socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => socket.destroy());
      const cn = socket.getPeerCertificate().subject?.CN;
      if (cn !== undefined) peers.push(String(cn));
      socket.pipe(socket);
    },
  );
  // Refused clients: the server drops them; nothing to report here.
  server.on('tlsClientError', () => undefined);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(async () => {
    const closed = new Promise((resolve) => server.close(resolve));
    for (const s of sockets) s.destroy();
    await closed;
  });
  const port = (server.address() as AddressInfo).port;
  return { target: `127.0.0.1:${port}`, port, peers };
}

test('client-cert-not-requested: a server that asks for none reads `not requested`, with or without --cert', async (t) => {
  const server = await echoServer(t, { requestCert: false });
  for (const flags of [{ ca: pki.ca }, { ca: pki.ca, ...pki.alice }]) {
    const r = await runCheck(checkOptionsFromFlags(server.target, flags));
    assert.equal(r.ok, true, r.error ?? '');
    assert.deepEqual(r.clientCert, { requested: false, sent: null });
    assert.match(formatCheckResult(r), /^client cert {2}not requested$/m);
  }
  assert.deepEqual(server.peers, []);
});

for (const version of ['1.3', '1.2'] as const) {
  test(`client-cert-sent-tls${version}: a server that requires one gets CN=alice and echoes`, async (t) => {
    const server = await echoServer(t, { requestCert: true });
    const r = await runCheck(checkOptionsFromFlags(server.target, { ca: pki.ca, tls: version, ...pki.alice }));
    assert.equal(r.ok, true, r.error ?? '');
    assert.equal(r.tlsVersion, `TLSv${version}`);
    assert.deepEqual(r.clientCert, { requested: true, sent: 'CN=alice' });
    assert.equal(r.bytesEchoed, r.bytesSent);
    assert.deepEqual(server.peers, ['alice']);
    const text = formatCheckResult(r);
    assert.match(text, /^client cert {2}requested; sent CN=alice$/m);
    // Every value starts in the same column.
    const columns = new Set(text.split('\n').filter((l) => l !== 'ok').map((l) => /^\S+(?: \S+)? +/.exec(l)![0].length));
    assert.deepEqual([...columns], [13], text);
  });
}

test('client-cert-required-tls1.3: no certificate is a failed check naming the alert `certificate required`', async (t) => {
  const server = await echoServer(t, { requestCert: true });
  const r = await runCheck(checkOptionsFromFlags(server.target, { ca: pki.ca, tls: '1.3' }));
  assert.equal(r.ok, false);
  assert.equal(r.code, 'ECHOD_CHECK_FAILED');
  assert.equal(r.reason, 'client-cert');
  assert.equal(r.cause, 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED');
  assert.equal(r.error, 'server refused the client certificate: alert certificate required (no certificate sent; give --cert and --key)');
  assert.deepEqual(r.clientCert, { requested: true, sent: null });
  assert.equal(r.tlsVersion, 'TLSv1.3', 'the client finished its handshake first');
  assert.match(formatCheckResult(r), /^client cert {2}requested; none sent$/m);
});

test('client-cert-required-tls1.2: no certificate is a failed check naming the alert `handshake failure`', async (t) => {
  const server = await echoServer(t, { requestCert: true, maxVersion: 'TLSv1.2' });
  const r = await runCheck(checkOptionsFromFlags(server.target, { ca: pki.ca }));
  assert.equal(r.ok, false);
  assert.equal(r.code, 'ECHOD_CHECK_FAILED');
  assert.equal(r.reason, 'client-cert');
  // OpenSSL 3.0 (Node 20) names it SSLV3_ALERT_..., 3.5 (Node 22, 24) SSL/TLS_ALERT_...
  assert.match(String(r.cause), HANDSHAKE_FAILURE_ALERT);
  assert.equal(r.error, 'server refused the client certificate: alert handshake failure (no certificate sent; give --cert and --key)');
  assert.deepEqual(r.clientCert, { requested: true, sent: null }, 'known although the handshake never finished');
  assert.equal(r.tlsVersion, null);
});

for (const version of ['1.3', '1.2'] as const) {
  test(`client-cert-other-ca-tls${version}: a certificate the server doesn't trust: it closed after the handshake, not accepting CN=mallory`, async (t) => {
    const server = await echoServer(t, { requestCert: true });
    const r = await runCheck(checkOptionsFromFlags(server.target, { ca: pki.ca, tls: version, ...pki.mallory }));
    assert.equal(r.ok, false);
    assert.equal(r.code, 'ECHOD_CHECK_FAILED');
    assert.equal(r.reason, 'client-cert');
    const when = version === '1.3' ? 'right after the handshake without echoing' : 'at the end of the handshake without an alert';
    assert.equal(
      r.error,
      `server closed the connection ${when}, having asked for a client certificate: it did not accept CN=mallory (unknown CA, expired, revoked or wrong purpose; see the server's log)`,
    );
    assert.deepEqual(r.clientCert, { requested: true, sent: 'CN=mallory' });
    assert.equal(r.bytesEchoed, 0);
    assert.deepEqual(server.peers, []);
  });
}

test('client-cert-alerts: each alert about the certificate gets its name and cause; a bare handshake failure only when asked', () => {
  assert.equal(tlsAlertName('ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED'), 'certificate required');
  assert.equal(tlsAlertName('ERR_SSL_TLSV1_ALERT_UNKNOWN_CA'), 'unknown ca');
  assert.equal(tlsAlertName('ECONNRESET'), undefined);
  const cases: Array<[string, RegExp]> = [
    ['ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE', /alert bad certificate \(it could not use CN=alice/],
    ['ERR_SSL_TLSV1_ALERT_UNKNOWN_CA', /alert unknown ca \(it does not trust the CA that issued CN=alice/],
    ['ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED', /alert certificate expired \(CN=alice is expired or not yet valid by the server's clock/],
    ['ERR_SSL_SSLV3_ALERT_CERTIFICATE_REVOKED', /alert certificate revoked \(CN=alice is revoked/],
    ['ERR_SSL_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE', /alert unsupported certificate \(CN=alice is not fit for client authentication/],
    ['ERR_SSL_TLSV1_ALERT_ACCESS_DENIED', /alert access denied \(it verified CN=alice but does not let it in/],
    ['ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE', /alert handshake failure \(it did not accept CN=alice/],
  ];
  for (const [code, message] of cases) assert.match(refusalByAlert(code, true, 'CN=alice') ?? '', new RegExp(`^server refused the client certificate: ${message.source}`), code);
  assert.equal(refusalByAlert('ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE', false, null), undefined, 'not asked: a handshake failure is about something else');
  assert.equal(refusalByAlert('ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE', undefined, null), undefined);
  assert.equal(refusalByAlert('ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION', true, null), undefined, 'not about the certificate');
  assert.match(refusalByAlert('ERR_SSL_TLSV1_ALERT_UNKNOWN_CA', undefined, null) ?? '', /\(no certificate sent; give --cert and --key\)$/);
});

test('client-cert-flags: both or neither, readable PEM, a matching key; each problem names the flag and the file (exit 2)', (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tls-echod-bad-pem-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const notPem = path.join(dir, 'not-pem.txt');
  writeFileSync(notPem, 'hello\n');
  // check and bench read the pair the same way, and say the same.
  const problemsOf = (flags: { cert?: string; key?: string }): string[] => {
    const [forCheck, forBench] = [checkOptionsFromFlags, benchOptionsFromFlags].map((parse) => {
      try {
        parse('127.0.0.1:4433', flags);
      } catch (err) {
        assert.ok(err instanceof ConfigError, String(err));
        assert.equal(err.exitCode, 2);
        return [...err.problems];
      }
      return assert.fail(`${parse.name} accepted ${JSON.stringify(flags)}`);
    });
    assert.deepEqual(forBench, forCheck);
    return forCheck!;
  };
  assert.deepEqual(problemsOf({ cert: pki.alice.cert }), [
    `--cert ${pki.alice.cert} needs --key: give the PEM private key of --cert, e.g. certs/clients/alice-key.pem (or leave --cert out to present no certificate)`,
  ]);
  assert.match(problemsOf({ key: pki.alice.key }).join('\n'), /^--key \S+alice-key\.pem needs --cert: give a PEM client certificate/);
  const missing = problemsOf({ cert: path.join(dir, 'nope.pem'), key: notPem });
  assert.equal(missing.length, 2, missing.join('\n'));
  assert.match(missing[0]!, /^--cert \S+nope\.pem: no such file \(give a PEM client certificate/);
  assert.match(missing[1]!, /^--key \S+not-pem\.txt: no PEM private key in it/);
  assert.match(problemsOf({ cert: notPem, key: pki.alice.key }).join('\n'), /^--cert \S+not-pem\.txt: no PEM certificate in it/);
  assert.deepEqual(problemsOf({ cert: pki.alice.cert, key: pki.mallory.key }), [
    `--key ${pki.mallory.key} does not match --cert ${pki.alice.cert} (give the private key the certificate was issued for)`,
  ]);
  const ok = checkOptionsFromFlags('127.0.0.1:4433', pki.alice);
  assert.equal(ok.clientCert?.name, 'CN=alice');
  assert.equal(checkOptionsFromFlags('127.0.0.1:4433', {}).clientCert, undefined);
});

test('client-cert-cli: check --json gets the clientCert field; a missing --key exits 2 with one message', async (t) => {
  const server = await echoServer(t, { requestCert: true });
  const ok = await runCli(['check', server.target, '--ca', pki.ca, '--cert', pki.alice.cert, '--key', pki.alice.key, '--json']);
  assert.equal(ok.code, 0, ok.stderr);
  const json = JSON.parse(ok.stdout) as { ok: boolean; clientCert: unknown };
  assert.equal(json.ok, true);
  assert.deepEqual(json.clientCert, { requested: true, sent: 'CN=alice' });

  const refused = await runCli(['check', server.target, '--ca', pki.ca, '--tls', '1.3']);
  assert.equal(refused.code, 1);
  assert.match(refused.stdout, /^client cert {2}requested; none sent$/m);
  assert.equal(refused.stderr, 'tls-echod: server refused the client certificate: alert certificate required (no certificate sent; give --cert and --key)\n');

  for (const cmd of ['check', 'bench']) {
    const usage = await runCli([cmd, server.target, '--cert', pki.alice.cert]);
    assert.equal(usage.code, 2, `${cmd}: ${usage.stderr}`);
    assert.equal(usage.stderr.trim().split('\n').length, 1, usage.stderr);
    assert.match(usage.stderr, /^tls-echod: invalid configuration: --cert \S+ needs --key: /);
  }
});

test('client-cert-bench: every connection presents the certificate, in every process; without one every connection fails', async (t) => {
  const server = await echoServer(t, { requestCert: true });
  const flags = { mode: 'handshake', connections: '4', processes: '2', duration: '0.5', warmup: '0', ca: pki.ca };
  const r = await runLoad(benchOptionsFromFlags(server.target, { ...flags, ...pki.alice }));
  assert.equal(r.errors, 0, `errors: ${JSON.stringify(r.errorKinds)} first: ${String(r.firstError)}`);
  assert.ok(r.ops > 0);
  assert.equal(r.processes, 2);
  assert.equal(r.clientCert, 'CN=alice');
  assert.ok(server.peers.length >= r.ops && server.peers.every((cn) => cn === 'alice'), `${server.peers.length} peers for ${r.ops} handshakes`);

  for (const tlsVersion of ['1.3', '1.2']) {
    const bare = await runLoad(benchOptionsFromFlags(server.target, { ...flags, processes: '1', duration: '0.3', tls: tlsVersion }));
    assert.equal(bare.ops, 0, `TLS ${tlsVersion}: no handshake may count`);
    assert.ok(bare.errors > 0);
    assert.equal(bare.clientCert, null);
    const kinds = Object.keys(bare.errorKinds);
    assert.equal(kinds.length, 1, JSON.stringify(bare.errorKinds));
    assert.match(kinds[0]!, tlsVersion === '1.3' ? /^ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED$/ : HANDSHAKE_FAILURE_ALERT);
    assert.match(bare.firstError ?? '', /^server refused the client certificate: alert .*\(no certificate sent; give --cert and --key\)$/);
  }
});

test('client-cert-bench-cli: the report header names the certificate', async (t) => {
  const server = await echoServer(t, { requestCert: true });
  const r = await runCli(['bench', server.target, '--ca', pki.ca, '--cert', pki.alice.cert, '--key', pki.alice.key, '-c', '1', '--duration', '0.3', '--warmup', '0']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout.split('\n')[0]!, /^handshake 127\.0\.0\.1:\d+: 1 connection\(s\) in 1 process\(es\), 64-byte echoes, 0\.3 s measured, client cert CN=alice$/);
});
