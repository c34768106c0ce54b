// `tls-echod cert revoke <name|serial>` and client.crl: revoking by name or by serial (any case,
// 0x, colons), once only, with clear refusals; the file (mode, CRL number); re-signing in and
// out of process and when it is due; one writer at a time; and a Node TLS server given the CRL
// refuses the revoked client and accepts the others.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { copyFileSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import tls from 'node:tls';
import { EchodError } from '../../src/errors';
import { crlIssuedBy, parseCrls, type CrlInfo } from '../../src/mtls/crl';
import { resignClientCrlInChild } from '../../src/mtls/crl-process';
import { CLIENT_CRL_FILE, CRL_VALIDITY_DAYS, clientCrlPath, crlNeedsResigning, resignClientCrl, revokeClientCertificate } from '../../src/mtls/revoke';
import { runCli, tempDir } from '../helpers/daemon';

const DAY_MS = 86_400_000;

async function cli(args: readonly string[]): Promise<string> {
  const r = await runCli(args);
  assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

async function certDirWithClients(t: TestContext, clients: readonly string[]): Promise<string> {
  const certDir = join(tempDir(t), 'certs');
  await cli(['cert', 'generate', '--cert-dir', certDir]);
  for (const name of clients) await cli(['cert', 'client', name, '--cert-dir', certDir]);
  return certDir;
}

function serialOf(certDir: string, name: string): string {
  return new X509Certificate(readFileSync(join(certDir, 'clients', `${name}.pem`))).serialNumber;
}

function readCrl(certDir: string): CrlInfo {
  const [crl] = parseCrls(readFileSync(clientCrlPath(certDir), 'utf8'), CLIENT_CRL_FILE);
  return crl!;
}

interface RevokeJson {
  serial: string;
  subject: string | null;
  crlFile: string;
  alreadyRevoked: boolean;
  nextUpdate: string;
  reload: string;
}

test('cert revoke: by name, by serial in any case with colons or 0x; twice is alreadyRevoked with the file unchanged; mode 0644; the CRL number grows', async (t) => {
  const certDir = await certDirWithClients(t, ['alice', 'bob', 'carol']);
  const [alice, bob, carol] = ['alice', 'bob', 'carol'].map((name) => serialOf(certDir, name)) as [string, string, string];

  const byName = await runCli(['cert', 'revoke', 'alice', '--cert-dir', certDir]);
  assert.equal(byName.code, 0, byName.stderr);
  assert.match(byName.stdout, new RegExp(`^revoked: CN=alice \\(serial ${alice}\\)\\n`));
  assert.ok(byName.stdout.includes(`crl:          ${join(certDir, 'client.crl')}`));
  assert.match(byName.stdout, /next update: {2}\d{4}-\d\d-\d\dT/);
  assert.match(byName.stdout, /systemctl reload tls-echod, or kill -HUP <pid>/);
  assert.equal(statSync(clientCrlPath(certDir)).mode & 0o777, 0o644);
  assert.equal(readCrl(certDir).number, 1n);

  // bob by his serial, lower case with colons, as openssl prints fingerprints.
  const colons = bob.toLowerCase().match(/../g)!.join(':');
  const bySerial = JSON.parse(await cli(['cert', 'revoke', colons, '--cert-dir', certDir, '--json'])) as RevokeJson;
  assert.equal(bySerial.serial, bob);
  assert.equal(bySerial.subject, 'CN=bob', 'found under clients/ by its serial');
  assert.equal(bySerial.alreadyRevoked, false);
  assert.equal(bySerial.crlFile, join(certDir, 'client.crl'));
  const crl = readCrl(certDir);
  assert.equal(crl.number, 2n);
  assert.equal(Date.parse(bySerial.nextUpdate), crl.nextUpdate!.getTime());
  assert.equal(crl.nextUpdate!.getTime() - crl.thisUpdate.getTime(), CRL_VALIDITY_DAYS * DAY_MS);

  // carol as 0x and upper case, in process; then a serial no certificate here has.
  const viaApi = await revokeClientCertificate({ certDir, target: `0x${carol}` });
  assert.deepEqual([viaApi.serial, viaApi.subject, viaApi.alreadyRevoked], [carol, 'CN=carol', false]);
  const unknown = await revokeClientCertificate({ certDir, target: 'a:BC' });
  assert.deepEqual([unknown.serial, unknown.subject], ['0ABC', undefined]);
  assert.deepEqual(readCrl(certDir).revoked.map((e) => e.serial), [alice, bob, carol, '0ABC']);
  assert.equal(readCrl(certDir).number, 4n);

  const before = readFileSync(clientCrlPath(certDir));
  const again = JSON.parse(await cli(['cert', 'revoke', 'alice', '--cert-dir', certDir, '--json'])) as RevokeJson;
  assert.equal(again.alreadyRevoked, true);
  assert.equal(again.serial, alice);
  const againBySerial = await runCli(['cert', 'revoke', bob, '--cert-dir', certDir]);
  assert.match(againBySerial.stdout, /^already revoked: CN=bob/);
  assert.deepEqual(readFileSync(clientCrlPath(certDir)), before, 'file unchanged');

  const verify = spawnSync('openssl', ['verify', '-crl_check', '-CAfile', join(certDir, 'ca.pem'), '-CRLfile', clientCrlPath(certDir), join(certDir, 'clients', 'carol.pem')], {
    encoding: 'utf8',
  });
  assert.match(verify.stdout + verify.stderr, /certificate revoked/);
});

test('cert revoke: an unknown name or a bad target is exit 2 with the fix; a certificate of another CA is exit 2; no CA is exit 1', async (t) => {
  const certDir = await certDirWithClients(t, ['alice']);
  const unknown = await runCli(['cert', 'revoke', 'mallory', '--cert-dir', certDir]);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /"mallory": no client certificate \S+clients\/mallory\.pem, and not a serial in hex \(give a name `cert client` issued, or the serial/);
  const outside = await runCli(['cert', 'revoke', '../ca', '--cert-dir', certDir]);
  assert.equal(outside.code, 2);
  assert.match(outside.stderr, /"\.\.\/ca": not a client name, and not a serial in hex/);
  const tooLong = await runCli(['cert', 'revoke', '0x' + 'ab'.repeat(21), '--cert-dir', certDir]);
  assert.equal(tooLong.code, 2, 'longer than the 20 octets RFC 5280 allows');
  assert.equal(statSync(clientCrlPath(certDir), { throwIfNoEntry: false }), undefined, 'nothing written');

  // A certificate from another CA dropped into clients/.
  const otherDir = await certDirWithClients(t, ['eve']);
  copyFileSync(join(otherDir, 'clients', 'eve.pem'), join(certDir, 'clients', 'eve.pem'));
  const foreign = await runCli(['cert', 'revoke', 'eve', '--cert-dir', certDir]);
  assert.equal(foreign.code, 2);
  assert.match(foreign.stderr, /clients\/eve\.pem was not issued by the CA in --cert-dir/);

  const noCa = await runCli(['cert', 'revoke', 'alice', '--cert-dir', join(tempDir(t), 'empty')]);
  assert.equal(noCa.code, 1);
  assert.match(noCa.stderr, /ca\.pem: no such file \(start the daemon once/);

  // A client.crl that is not ours to extend: exit 1, left alone.
  writeFileSync(clientCrlPath(certDir), 'not a crl');
  const broken = await runCli(['cert', 'revoke', 'alice', '--cert-dir', certDir]);
  assert.equal(broken.code, 1);
  assert.match(broken.stderr, /client\.crl: holds no CRL/);
  assert.equal(readFileSync(clientCrlPath(certDir), 'utf8'), 'not a crl');
  await cli(['cert', 'revoke', 'eve', '--cert-dir', otherDir]);
  copyFileSync(clientCrlPath(otherDir), clientCrlPath(certDir));
  const foreignCrl = await runCli(['cert', 'revoke', 'alice', '--cert-dir', certDir]);
  assert.equal(foreignCrl.code, 1);
  assert.match(foreignCrl.stderr, /client\.crl: not signed by the CA in --cert-dir \(if ca\.pem was replaced, remove client\.crl/);
});

test('client.crl: resignClientCrl keeps the entries, moves the dates on and takes the next number; in a child process too, with the same errors', async (t) => {
  const certDir = await certDirWithClients(t, ['alice']);
  assert.equal(await resignClientCrl(certDir), undefined, 'no client.crl: nothing to re-sign');
  await resignClientCrlInChild(certDir, new Date());
  assert.equal(statSync(clientCrlPath(certDir), { throwIfNoEntry: false }), undefined, 'still none');

  const start = new Date('2030-01-01T00:00:00Z');
  await revokeClientCertificate({ certDir, target: 'alice', now: start });
  const first = readCrl(certDir);
  assert.deepEqual(first.thisUpdate, start);

  const later = new Date(start.getTime() + 5 * DAY_MS + 999); // milliseconds are dropped
  const resigned = await resignClientCrl(certDir, later);
  assert.ok(resigned);
  assert.deepEqual(resigned.revoked, first.revoked);
  assert.deepEqual(resigned.thisUpdate, new Date(start.getTime() + 5 * DAY_MS));
  assert.deepEqual(resigned.nextUpdate, new Date(start.getTime() + (5 + CRL_VALIDITY_DAYS) * DAY_MS));
  assert.equal(resigned.number, 2n);
  assert.deepEqual(readCrl(certDir), resigned);

  const inChild = new Date(start.getTime() + 10 * DAY_MS);
  await resignClientCrlInChild(certDir, inChild);
  const fromChild = readCrl(certDir);
  assert.deepEqual(fromChild.thisUpdate, inChild);
  assert.deepEqual(fromChild.revoked, first.revoked);
  assert.equal(fromChild.number, 3n);
  assert.equal(statSync(clientCrlPath(certDir)).mode & 0o777, 0o644);
  assert.ok(crlIssuedBy(fromChild, new X509Certificate(readFileSync(join(certDir, 'ca.pem')))));

  // A damaged client.crl: the child's error comes back with the code and message it had.
  writeFileSync(clientCrlPath(certDir), '-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n');
  const inProcess = await resignClientCrl(certDir).then(
    () => assert.fail('re-signed a damaged CRL'),
    (err: unknown) => err as EchodError,
  );
  assert.equal(inProcess.code, 'ECHOD_CERT_INVALID');
  await assert.rejects(resignClientCrlInChild(certDir, new Date()), (err: unknown) => {
    assert.ok(err instanceof EchodError);
    assert.equal(err.code, inProcess.code);
    assert.equal(err.message, inProcess.message);
    return true;
  });
});

test('client.crl: crlNeedsResigning once a third or less of its validity is left, or it has expired', () => {
  const thisUpdate = new Date('2030-01-01T00:00:00Z');
  const crl: CrlInfo = { pem: '', issuerDer: Buffer.alloc(0), thisUpdate, nextUpdate: new Date(thisUpdate.getTime() + 9 * DAY_MS), revoked: [], number: 1n };
  const at = (days: number): Date => new Date(thisUpdate.getTime() + days * DAY_MS);
  assert.equal(crlNeedsResigning(crl, at(0)), false);
  assert.equal(crlNeedsResigning(crl, at(5.99)), false);
  assert.equal(crlNeedsResigning(crl, at(6)), true, 'exactly a third left');
  assert.equal(crlNeedsResigning(crl, at(9)), true);
  assert.equal(crlNeedsResigning(crl, at(30)), true, 'expired');
  assert.equal(crlNeedsResigning({ ...crl, nextUpdate: undefined }, at(3650)), false, 'no nextUpdate: never expires');
});

test('client.crl: revocations at once all land (one writer at a time), and a lock left by a dead process is taken over', async (t) => {
  const certDir = await certDirWithClients(t, ['alice', 'bob', 'carol']);
  const names = ['alice', 'bob', 'carol'];
  await revokeClientCertificate({ certDir, target: 'alice' });
  // Two CLI processes revoking and this one re-signing twice, all at once.
  const [revokes] = await Promise.all([
    Promise.all(['bob', 'carol'].map((name) => runCli(['cert', 'revoke', name, '--cert-dir', certDir]))),
    resignClientCrl(certDir),
    resignClientCrl(certDir),
  ]);
  for (const r of revokes) assert.equal(r.code, 0, r.stderr);
  const crl = readCrl(certDir);
  assert.deepEqual(crl.revoked.map((e) => e.serial).sort(), names.map((name) => serialOf(certDir, name)).sort());
  assert.equal(crl.number, 5n, 'five signings, five numbers');

  // A process that has exited holds no lock, whatever its file says.
  const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  writeFileSync(join(certDir, '.client.crl.lock'), `${dead.stdout} leftover\n`);
  const resigned = await resignClientCrl(certDir);
  assert.equal(resigned?.number, crl.number! + 1n);
  assert.equal(statSync(join(certDir, '.client.crl.lock'), { throwIfNoEntry: false }), undefined, 'released');
});

test('client.crl: a Node TLS server given the CRL refuses the revoked client (CERT_REVOKED) and accepts the others', async (t) => {
  const certDir = await certDirWithClients(t, ['alice', 'bob']);
  await cli(['cert', 'revoke', 'alice', '--cert-dir', certDir]);
  const read = (name: string): Buffer => readFileSync(join(certDir, name));
  const ca = read('ca.pem');
  const server = tls.createServer({ cert: read('server.pem'), key: read('server-key.pem'), ca, crl: read('client.crl'), requestCert: true, rejectUnauthorized: true });
  server.on('secureConnection', (socket) => socket.end(socket.getPeerX509Certificate()?.subject ?? 'none'));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => server.close());
  const port = (server.address() as AddressInfo).port;
  const connect = (name: string): tls.TLSSocket => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca, cert: read(`clients/${name}.pem`), key: read(`clients/${name}-key.pem`), servername: 'localhost' });
    socket.on('error', () => {}); // a refused client sees a reset; the server says why
    t.after(() => socket.destroy());
    return socket;
  };

  const refusal = once(server, 'tlsClientError') as Promise<[Error, tls.TLSSocket]>;
  const alice = connect('alice');
  const [, refusedSocket] = await refusal;
  assert.equal(refusedSocket.authorizationError, 'CERT_REVOKED');
  await once(alice, 'close');

  const bob = connect('bob');
  const [reply] = (await once(bob, 'data')) as [Buffer];
  assert.equal(reply.toString(), 'CN=bob');
});
