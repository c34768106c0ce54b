// Certificates: generated chains that OpenSSL and Node accept (by name and by IP), reuse,
// renewal that keeps the CA, safe files on disk, and clear errors for given files.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { X509Certificate, generateKeyPairSync } from 'node:crypto';
import { once } from 'node:events';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import type { KeyType } from '../../src/config/config';
import { CertError } from '../../src/errors';
import { loadGivenCertificates } from '../../src/certs/given-files';
import { describeCertificate, type CertInfo } from '../../src/certs/inspect';
import { defaultSans, ensureCertificates, loadGeneratedCertificates, needsRenewal, type GenerateOptions } from '../../src/certs/local-ca';
import type { TlsMaterial } from '../../src/certs/tls-material';
import { runCli } from '../helpers/daemon';

const DAY_MS = 86_400_000;
const FILES = ['ca-key.pem', 'ca.pem', 'server-key.pem', 'server.pem'];

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'tls-echod-certs-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function generate(t: TestContext, options: Partial<GenerateOptions> = {}) {
  const certDir = join(tempDir(t), 'certs');
  const result = await ensureCertificates({ certDir, sans: [], keyType: 'ecdsa-p256', certDays: 90, ...options });
  return { certDir, ...result };
}

function openssl(args: readonly string[], input?: string): string {
  const run = spawnSync('openssl', args, { encoding: 'utf8', input });
  assert.equal(run.status, 0, `openssl ${args.join(' ')} failed: ${run.stderr}`);
  return run.stdout;
}

/** `openssl verify` as a client would run it; `at` checks at another time than now. */
function opensslVerify(caFile: string, leafFile: string, at?: Date): void {
  const attime = at === undefined ? [] : ['-attime', String(Math.floor(at.getTime() / 1000))];
  const out = openssl(['verify', '-x509_strict', ...attime, '-CAfile', caFile, '-purpose', 'sslserver', leafFile]);
  assert.equal(out.trim(), `${leafFile}: OK`);
}

function x509Text(file: string): string {
  return openssl(['x509', '-in', file, '-text', '-noout']);
}

function opensslDates(file: string): { notBefore: Date; notAfter: Date } {
  const out = openssl(['x509', '-in', file, '-noout', '-startdate', '-enddate']);
  const date = (field: string) => new Date(new RegExp(`^${field}=(.*)$`, 'm').exec(out)?.[1] ?? 'missing');
  return { notBefore: date('notBefore'), notAfter: date('notAfter') };
}

function modeOf(path: string): number {
  return statSync(path).mode & 0o777;
}

async function startEchoServer(t: TestContext, material: TlsMaterial): Promise<number> {
  const server = tls.createServer({ key: material.key, cert: material.cert }, (socket) => socket.pipe(socket));
  t.after(() => server.close());
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

/** Resolves when the handshake is done; rejects (via 'error') when the client refuses the server. */
async function handshake(t: TestContext, options: tls.ConnectionOptions): Promise<tls.TLSSocket> {
  const socket = tls.connect(options);
  t.after(() => socket.destroy());
  await once(socket, 'secureConnect');
  return socket;
}

const KEY_TYPES: readonly { keyType: KeyType; signature: string; keyUsage: string }[] = [
  { keyType: 'ecdsa-p256', signature: 'ecdsa-with-SHA256', keyUsage: 'Digital Signature\n' },
  { keyType: 'rsa-2048', signature: 'sha256WithRSAEncryption', keyUsage: 'Digital Signature, Key Encipherment\n' },
  { keyType: 'rsa-3072', signature: 'sha256WithRSAEncryption', keyUsage: 'Digital Signature, Key Encipherment\n' },
];

for (const { keyType, signature, keyUsage } of KEY_TYPES) {
  test(`a generated ${keyType} chain is accepted by openssl and node`, async (t) => {
    const { certDir, material, action } = await generate(t, { keyType });
    const caFile = join(certDir, 'ca.pem');
    const leafFile = join(certDir, 'server.pem');
    assert.equal(action, 'generated');
    assert.equal(material.source, 'generated');
    assert.equal(material.leaf.keyType, keyType);
    assert.equal(material.caInfo?.keyType, keyType, 'the CA key type follows --key-type');

    await t.test('openssl verify -purpose sslserver', () => {
      opensslVerify(caFile, leafFile);
    });

    await t.test('sha256 signatures and key usage for the key type', () => {
      const leafText = x509Text(leafFile);
      assert.match(x509Text(caFile), new RegExp(`Signature Algorithm: ${signature}`));
      assert.match(leafText, new RegExp(`Signature Algorithm: ${signature}`));
      assert.ok(leafText.includes(`X509v3 Key Usage: critical\n                ${keyUsage}`), leafText);
    });

    await t.test('node accepts the chain by name and by IP', async (st) => {
      const port = await startEchoServer(st, material);
      const byName = await handshake(st, { host: '127.0.0.1', port, ca: material.ca, servername: 'localhost' });
      assert.equal(byName.authorized, true);
      const byIp = await handshake(st, { host: '127.0.0.1', port, ca: material.ca });
      assert.equal(byIp.authorized, true);
    });
  });
}

test('generated certificates carry the extensions clients check', async (t) => {
  const now = new Date();
  const { certDir, material } = await generate(t, { certDays: 30, now });
  const caText = x509Text(join(certDir, 'ca.pem'));
  const leafText = x509Text(join(certDir, 'server.pem'));

  assert.ok(caText.includes('X509v3 Basic Constraints: critical\n                CA:TRUE, pathlen:1'), caText);
  assert.ok(caText.includes('X509v3 Key Usage: critical\n                Certificate Sign, CRL Sign'), caText);
  assert.ok(caText.includes(`Subject: CN = tls-echod local CA (${hostname()})`), caText);
  assert.ok(leafText.includes('X509v3 Basic Constraints: critical\n                CA:FALSE'), leafText);
  assert.ok(leafText.includes('X509v3 Extended Key Usage: \n                TLS Web Server Authentication'), leafText);
  const sanLine = /X509v3 Subject Alternative Name: \n\s+(.*)/.exec(leafText)?.[1] ?? '';
  for (const san of ['DNS:localhost', 'IP Address:127.0.0.1', 'IP Address:0:0:0:0:0:0:0:1', `DNS:${hostname()}`]) {
    assert.ok(sanLine.split(', ').includes(san), `${san} in ${sanLine}`);
  }

  const caKeyId = /X509v3 Subject Key Identifier: \n\s+(\S+)/.exec(caText)?.[1];
  assert.ok(caKeyId !== undefined, 'CA has a subject key identifier');
  assert.match(leafText, /X509v3 Subject Key Identifier: \n\s+[0-9A-F:]{59}\n/);
  assert.ok(leafText.includes(`X509v3 Authority Key Identifier: \n                ${caKeyId}`), 'leaf names the CA key');

  const leafDates = opensslDates(join(certDir, 'server.pem'));
  const expectedNotBefore = Math.floor((now.getTime() - 5 * 60_000) / 1000) * 1000;
  assert.equal(leafDates.notBefore.getTime(), expectedNotBefore, 'notBefore is 5 minutes back');
  assert.equal(leafDates.notAfter.getTime() - leafDates.notBefore.getTime(), 30 * DAY_MS, 'lifetime is certDays');
  const caDates = opensslDates(join(certDir, 'ca.pem'));
  assert.equal(caDates.notAfter.getUTCFullYear() - caDates.notBefore.getUTCFullYear(), 10);

  // 16 bytes, positive, no leading zero byte.
  assert.match(material.leaf.serial, /^(?:0[1-9A-F]|[1-7][0-9A-F])[0-9A-F]{30}$/);
});

test('reuse: a second start keeps CA and leaf', async (t) => {
  const first = await generate(t);
  const before = FILES.map((f) => readFileSync(join(first.certDir, f), 'utf8'));
  const second = await ensureCertificates({ certDir: first.certDir, sans: [], keyType: 'ecdsa-p256', certDays: 90 });
  assert.equal(second.action, 'reused');
  assert.equal(second.material.leaf.fingerprint256, first.material.leaf.fingerprint256);
  assert.equal(second.material.caInfo?.fingerprint256, first.material.caInfo?.fingerprint256);
  assert.deepEqual(FILES.map((f) => readFileSync(join(first.certDir, f), 'utf8')), before, 'files untouched');
});

test('renewal near expiry: new leaf, same CA, old ca.pem still verifies it', async (t) => {
  const start = new Date();
  const opts = { sans: [], keyType: 'ecdsa-p256' as const, certDays: 3 };
  const first = await generate(t, { ...opts, now: start });
  const oldCaFile = join(tempDir(t), 'old-ca.pem');
  writeFileSync(oldCaFile, readFileSync(join(first.certDir, 'ca.pem')));
  const oldCaKey = readFileSync(join(first.certDir, 'ca-key.pem'), 'utf8');

  const early = await ensureCertificates({ ...opts, certDir: first.certDir, now: new Date(start.getTime() + 1 * DAY_MS) });
  assert.equal(early.action, 'reused', 'two thirds of the lifetime left');

  const later = new Date(start.getTime() + 2.5 * DAY_MS);
  const renewed = await ensureCertificates({ ...opts, certDir: first.certDir, now: later });
  assert.equal(renewed.action, 'renewed');
  assert.notEqual(renewed.material.leaf.fingerprint256, first.material.leaf.fingerprint256);
  assert.equal(renewed.material.caInfo?.fingerprint256, first.material.caInfo?.fingerprint256);
  assert.equal(readFileSync(join(first.certDir, 'ca.pem'), 'utf8'), readFileSync(oldCaFile, 'utf8'));
  assert.equal(readFileSync(join(first.certDir, 'ca-key.pem'), 'utf8'), oldCaKey);
  opensslVerify(oldCaFile, join(first.certDir, 'server.pem'), later);

  const again = await ensureCertificates({ ...opts, certDir: first.certDir, now: later });
  assert.equal(again.action, 'reused', 'the renewed leaf is fresh');
});

test('a new --san renews the leaf with that name, same CA', async (t) => {
  const first = await generate(t);
  const sans = ['echo.example.test', '2001:db8::1'];
  const second = await ensureCertificates({ certDir: first.certDir, sans, keyType: 'ecdsa-p256', certDays: 90 });
  assert.equal(second.action, 'renewed');
  assert.equal(second.material.caInfo?.fingerprint256, first.material.caInfo?.fingerprint256);
  const leaf = new X509Certificate(second.material.cert);
  assert.equal(leaf.checkHost('echo.example.test'), 'echo.example.test');
  assert.equal(leaf.checkIP('2001:db8::1'), '2001:db8::1');
  assert.deepEqual(second.material.leaf.sans.slice(-2), sans);
  opensslVerify(join(first.certDir, 'ca.pem'), join(first.certDir, 'server.pem'));
});

test('a changed --key-type renews the leaf, keeps the CA', async (t) => {
  const first = await generate(t);
  const second = await ensureCertificates({ certDir: first.certDir, sans: [], keyType: 'rsa-2048', certDays: 90 });
  assert.equal(second.action, 'renewed');
  assert.equal(second.material.leaf.keyType, 'rsa-2048');
  assert.equal(second.material.caInfo?.fingerprint256, first.material.caInfo?.fingerprint256);
  opensslVerify(join(first.certDir, 'ca.pem'), join(first.certDir, 'server.pem'));
});

test('a CA that does not match ca-key.pem is replaced, and the leaf with it', async (t) => {
  const first = await generate(t);
  const otherKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' });
  writeFileSync(join(first.certDir, 'ca-key.pem'), otherKey);
  const second = await ensureCertificates({ certDir: first.certDir, sans: [], keyType: 'ecdsa-p256', certDays: 90 });
  assert.equal(second.action, 'generated');
  assert.notEqual(second.material.caInfo?.fingerprint256, first.material.caInfo?.fingerprint256);
  opensslVerify(join(first.certDir, 'ca.pem'), join(first.certDir, 'server.pem'));
});

test('a missing ca.pem makes a new CA and leaf', async (t) => {
  const first = await generate(t);
  rmSync(join(first.certDir, 'ca.pem'));
  const second = await ensureCertificates({ certDir: first.certDir, sans: [], keyType: 'ecdsa-p256', certDays: 90 });
  assert.equal(second.action, 'generated');
  opensslVerify(join(first.certDir, 'ca.pem'), join(first.certDir, 'server.pem'));
});

test('a corrupt server.pem is replaced from the same CA', async (t) => {
  const first = await generate(t);
  writeFileSync(join(first.certDir, 'server.pem'), '-----BEGIN CERTIFICATE-----\nnot base64\n');
  const second = await ensureCertificates({ certDir: first.certDir, sans: [], keyType: 'ecdsa-p256', certDays: 90 });
  assert.equal(second.action, 'renewed');
  assert.equal(second.material.caInfo?.fingerprint256, first.material.caInfo?.fingerprint256);
});

test('force makes a new CA and leaf', async (t) => {
  const first = await generate(t);
  const second = await ensureCertificates({ certDir: first.certDir, sans: [], keyType: 'ecdsa-p256', certDays: 90, force: true });
  assert.equal(second.action, 'generated');
  assert.notEqual(second.material.caInfo?.fingerprint256, first.material.caInfo?.fingerprint256);
  assert.notEqual(second.material.leaf.fingerprint256, first.material.leaf.fingerprint256);
});

test('files: keys 0600, directory 0700, nothing else left behind', async (t) => {
  const { certDir } = await generate(t);
  assert.equal(modeOf(certDir), 0o700);
  assert.equal(modeOf(join(certDir, 'ca-key.pem')), 0o600);
  assert.equal(modeOf(join(certDir, 'server-key.pem')), 0o600);
  assert.deepEqual(readdirSync(certDir).sort(), FILES);
});

test('files: an existing directory and loose key modes are tightened', async (t) => {
  const certDir = join(tempDir(t), 'certs');
  mkdirSync(certDir, { mode: 0o755 });
  chmodSync(certDir, 0o755);
  await ensureCertificates({ certDir, sans: [], keyType: 'ecdsa-p256', certDays: 90 });
  assert.equal(modeOf(certDir), 0o700);

  chmodSync(join(certDir, 'server-key.pem'), 0o644);
  const again = await ensureCertificates({ certDir, sans: [], keyType: 'ecdsa-p256', certDays: 90 });
  assert.equal(again.action, 'reused');
  assert.equal(modeOf(join(certDir, 'server-key.pem')), 0o600);
});

test('loadGeneratedCertificates reads what ensureCertificates wrote', async (t) => {
  const { certDir, material } = await generate(t);
  const loaded = loadGeneratedCertificates(certDir);
  assert.deepEqual(loaded, material);
});

test('loadGeneratedCertificates: nothing generated yet is a CertError naming the file', (t) => {
  const certDir = tempDir(t);
  assert.throws(
    () => loadGeneratedCertificates(certDir),
    (err: unknown) => err instanceof CertError && err.code === 'ECHOD_CERT_INVALID' && err.message.includes(`${certDir}: ca.pem: no such file`),
  );
});

test('describeCertificate: fingerprint and SPKI pin match openssl', async (t) => {
  const { certDir } = await generate(t);
  const leafFile = join(certDir, 'server.pem');
  const info = describeCertificate(readFileSync(leafFile, 'utf8'));
  const fingerprint = openssl(['x509', '-in', leafFile, '-noout', '-fingerprint', '-sha256']).trim().split('=')[1];
  assert.equal(info.fingerprint256, fingerprint);
  const publicKeyPem = openssl(['x509', '-in', leafFile, '-noout', '-pubkey']);
  const spkiDer = spawnSync('openssl', ['pkey', '-pubin', '-outform', 'der'], { input: publicKeyPem }).stdout;
  const pin = spawnSync('openssl', ['dgst', '-sha256', '-binary'], { input: spkiDer }).stdout.toString('base64');
  assert.equal(info.spkiPin, pin);
  assert.equal(info.subject, `CN=${hostname()}`);
  assert.equal(info.issuer, `CN=tls-echod local CA (${hostname()})`);
  assert.deepEqual(info.sans.slice(0, 3), ['localhost', '127.0.0.1', '::1']);
});

test('given: a missing --cert file is a CertError naming the path', () => {
  const certFile = join(tmpdir(), 'tls-echod-no-such-cert.pem');
  assert.throws(
    () => loadGivenCertificates({ certFile, keyFile: certFile }),
    (err: unknown) =>
      err instanceof CertError &&
      err.code === 'ECHOD_CERT_INVALID' &&
      err.message.startsWith(`--cert ${certFile}: no such file (`),
  );
});

test('given: a key that does not match the certificate is a CertError', async (t) => {
  const { certDir } = await generate(t);
  const certFile = join(certDir, 'server.pem');
  const keyFile = join(certDir, 'ca-key.pem');
  assert.throws(
    () => loadGivenCertificates({ certFile, keyFile }),
    (err: unknown) => err instanceof CertError && err.message.includes(`--key ${keyFile} does not match --cert ${certFile}`),
  );
});

test('given: a file without a PEM certificate is a CertError', async (t) => {
  const { certDir } = await generate(t);
  const certFile = join(certDir, 'server-key.pem');
  assert.throws(
    () => loadGivenCertificates({ certFile, keyFile: certFile }),
    (err: unknown) => err instanceof CertError && err.message.startsWith(`--cert ${certFile}: no PEM certificate`),
  );
});

test('given: an expired certificate is a CertError naming its not-after date', async (t) => {
  const { certDir, material } = await generate(t, { certDays: 1 });
  const later = new Date(Date.now() + 2 * DAY_MS);
  assert.throws(
    () => loadGivenCertificates({ certFile: join(certDir, 'server.pem'), keyFile: join(certDir, 'server-key.pem') }, later),
    (err: unknown) => err instanceof CertError && err.message.includes(`expired on ${material.leaf.notAfter.toISOString()}`),
  );
});

test('given: valid files are served as given, chain after the leaf', async (t) => {
  const { certDir, material } = await generate(t);
  const given = loadGivenCertificates({
    certFile: join(certDir, 'server.pem'),
    keyFile: join(certDir, 'server-key.pem'),
    chainFile: join(certDir, 'ca.pem'),
  });
  assert.equal(given.source, 'given');
  assert.equal(given.cert, material.cert + material.ca);
  assert.equal(given.ca, material.ca);
  assert.equal(given.leaf.fingerprint256, material.leaf.fingerprint256);
  assert.equal(given.caInfo?.fingerprint256, material.caInfo?.fingerprint256);

  const port = await startEchoServer(t, given);
  const socket = await handshake(t, { host: '127.0.0.1', port, ca: material.ca, servername: 'localhost' });
  assert.equal(socket.authorized, true);
});

test('needsRenewal: true from exactly 1/3 of the lifetime left', () => {
  const leaf = { notBefore: new Date(0), notAfter: new Date(300_000) } as CertInfo;
  assert.equal(needsRenewal(leaf, new Date(0)), false);
  assert.equal(needsRenewal(leaf, new Date(199_999)), false);
  assert.equal(needsRenewal(leaf, new Date(200_000)), true);
  assert.equal(needsRenewal(leaf, new Date(400_000)), true, 'expired');
});

test('defaultSans: local names first, then extras, normalised and deduplicated', () => {
  const sans = defaultSans(['LOCALHOST', '0:0::1', 'Echo.Example.Test.', '10.0.0.1']);
  const host = hostname().toLowerCase();
  assert.deepEqual(sans, [...new Set(['localhost', '127.0.0.1', '::1', host, 'echo.example.test', '10.0.0.1'])]);
});

test('cert-dir: one that can not be a directory is a clear ECHOD_CERT_IO error, never a hang', async (t) => {
  // Under /proc, mkdir answers ENOENT although /proc exists: Node's recursive mkdirSync spins
  // there forever, at full CPU. Run in a child, so a hang is a killed process, not a stuck suite.
  if (statSync('/proc', { throwIfNoEntry: false })?.isDirectory() !== true) return t.skip('no /proc here');
  const underProc = await runCli(['serve', '--workers', '0', '--listen', '127.0.0.1:0', '--cert-dir', '/proc/tls-echod-test/certs'], {}, 10_000);
  assert.equal(underProc.code, 1, `exit ${String(underProc.code)} (null: killed after 10 s); stderr: ${underProc.stderr}`);
  assert.match(underProc.stderr, /--cert-dir \/proc\/tls-echod-test\/certs: can't create or protect the directory: .*ENOENT/);

  const file = join(tempDir(t), 'a-file');
  writeFileSync(file, 'not a directory');
  const onFile = await runCli(['cert', 'generate', '--cert-dir', file], {}, 10_000);
  assert.equal(onFile.code, 1, onFile.stderr);
  assert.match(onFile.stderr, /can't create or protect the directory: not a directory/);
});
