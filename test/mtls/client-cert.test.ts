// `tls-echod cert client <name>`: a client certificate from the local CA, for mutual TLS. Files
// and modes, what the certificate says (CN, EKU clientAuth only), that a TLS server asking for
// client certificates accepts it, that it can't pass for a server's, and clear refusals.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync, statSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import tls from 'node:tls';
import { runCli, tempDir } from '../helpers/daemon';

async function certDirWithCa(t: TestContext): Promise<string> {
  const certDir = join(tempDir(t), 'certs');
  const r = await runCli(['cert', 'generate', '--cert-dir', certDir]);
  assert.equal(r.code, 0, r.stderr);
  return certDir;
}

test('cert client: CN=<name>, EKU clientAuth only, key 0600 and certificate 0644 under clients/, chain verifies for sslclient only', async (t) => {
  const certDir = await certDirWithCa(t);
  const r = await runCli(['cert', 'client', 'alice', '--cert-dir', certDir, '--days', '7', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { certFile: string; keyFile: string; caFile: string; subject: string; serial: string; notAfter: string };
  assert.equal(out.certFile, join(certDir, 'clients', 'alice.pem'));
  assert.equal(out.keyFile, join(certDir, 'clients', 'alice-key.pem'));
  assert.equal(statSync(out.keyFile).mode & 0o777, 0o600);
  assert.equal(statSync(out.certFile).mode & 0o777, 0o644);
  assert.equal(statSync(join(certDir, 'clients')).mode & 0o777, 0o700);

  const cert = new X509Certificate(readFileSync(out.certFile));
  assert.equal(cert.subject, 'CN=alice');
  assert.equal(cert.serialNumber, out.serial);
  assert.deepEqual(cert.keyUsage, ['1.3.6.1.5.5.7.3.2'], 'extended key usage: clientAuth only');
  assert.equal(cert.ca, false);
  const days = (Date.parse(cert.validTo) - Date.parse(cert.validFrom)) / 86_400_000;
  assert.equal(Math.round(days), 7);
  assert.ok(cert.checkPrivateKey(createPrivateKey(readFileSync(out.keyFile))), 'key matches');

  const verify = (purpose: string) => spawnSync('openssl', ['verify', '-CAfile', out.caFile, '-purpose', purpose, out.certFile], { encoding: 'utf8' });
  assert.equal(verify('sslclient').status, 0, verify('sslclient').stderr);
  assert.notEqual(verify('sslserver').status, 0, 'a client certificate must not pass as a server certificate');
});

test('cert client: a TLS server that requires client certificates from ca.pem accepts it; it cannot serve as a server certificate', async (t) => {
  const certDir = await certDirWithCa(t);
  const r = await runCli(['cert', 'client', 'bob', '--cert-dir', certDir, '--key-type', 'rsa-2048', '--out', join(certDir, 'elsewhere', 'b')]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /openssl s_client -connect 127\.0\.0\.1:4433 .* -cert \S+elsewhere\/b\.pem -key \S+elsewhere\/b-key\.pem/);
  const ca = readFileSync(join(certDir, 'ca.pem'));
  const clientCert = readFileSync(join(certDir, 'elsewhere', 'b.pem'));
  const clientKey = readFileSync(join(certDir, 'elsewhere', 'b-key.pem'));

  const server = tls.createServer({
    cert: readFileSync(join(certDir, 'server.pem')),
    key: readFileSync(join(certDir, 'server-key.pem')),
    ca,
    requestCert: true,
    rejectUnauthorized: true,
  });
  const peers: string[] = [];
  server.on('secureConnection', (socket) => {
    peers.push(socket.getPeerX509Certificate()?.subject ?? 'none');
    socket.end('ok');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => server.close());
  const client = tls.connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, ca, cert: clientCert, key: clientKey, servername: 'localhost' });
  t.after(() => client.destroy());
  const [reply] = (await once(client, 'data')) as [Buffer];
  assert.equal(reply.toString(), 'ok');
  assert.deepEqual(peers, ['CN=bob']);

  // Served as a server certificate, a verifying client refuses it (wrong purpose).
  const impostor = tls.createServer({ cert: clientCert, key: clientKey }, (s) => s.end());
  impostor.listen(0, '127.0.0.1');
  await once(impostor, 'listening');
  t.after(() => impostor.close());
  const victim = tls.connect({ host: '127.0.0.1', port: (impostor.address() as AddressInfo).port, ca, servername: 'localhost' });
  t.after(() => victim.destroy());
  const [err] = (await once(victim, 'error')) as [NodeJS.ErrnoException];
  assert.equal(err.code, 'INVALID_PURPOSE');
});

test('cert client: refuses to overwrite without --force, a bad name or --days (exit 2), and a --cert-dir without a CA', async (t) => {
  const certDir = await certDirWithCa(t);
  assert.equal((await runCli(['cert', 'client', 'carol', '--cert-dir', certDir])).code, 0);
  const first = new X509Certificate(readFileSync(join(certDir, 'clients', 'carol.pem'))).serialNumber;

  const again = await runCli(['cert', 'client', 'carol', '--cert-dir', certDir]);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /carol-key\.pem exists \(pass --force to replace it|carol\.pem exists \(pass --force to replace it/);
  assert.equal(new X509Certificate(readFileSync(join(certDir, 'clients', 'carol.pem'))).serialNumber, first, 'nothing replaced');

  const forced = await runCli(['cert', 'client', 'carol', '--cert-dir', certDir, '--force']);
  assert.equal(forced.code, 0, forced.stderr);
  assert.notEqual(new X509Certificate(readFileSync(join(certDir, 'clients', 'carol.pem'))).serialNumber, first, 'a new certificate, new serial');

  const bad = await runCli(['cert', 'client', '../escape', '--cert-dir', certDir, '--days', '0']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /client name "\.\.\/escape": use 1-64 letters/);
  assert.match(bad.stderr, /--days: must be a whole number of days from 1 to 3650/);

  const noCa = await runCli(['cert', 'client', 'dave', '--cert-dir', join(tempDir(t), 'empty')]);
  assert.equal(noCa.code, 1);
  assert.match(noCa.stderr, /ca\.pem: no such file \(start the daemon once to generate certificates there/);
});
