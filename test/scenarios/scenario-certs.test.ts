// Test-peer scenario certificates: each differs from `valid` in exactly its fault, as openssl
// shows it (x509 -text, verify) and as a Node TLS client meets it on a real socket; fresh
// validity on any date; what is kept in <certDir>/scenarios/ is kept, and safe.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { prepareCertDir, writePair } from '../../src/certs/cert-dir';
import { createCa } from '../../src/certs/issue';
import {
  INTERMEDIATE_CA_NAME,
  SCENARIO_CERT_NAMES,
  SCENARIO_FILES,
  UNTRUSTED_CA_NAME,
  ensureScenarioCertificates,
  type ScenarioCert,
  type ScenarioCertName,
} from '../../src/scenarios/scenario-certs';
import { allowsIntermediate } from '../../src/scenarios/scenario-cert-process';
import { runCli } from '../helpers/daemon';

const DAY_MS = 86_400_000;
const DOMAIN = 'localhost';

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'tls-echod-scenarios-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A --cert-dir with a local CA made the way users make it: `tls-echod cert generate`. */
async function generatedCertDir(t: TestContext, flags: readonly string[] = []): Promise<string> {
  const certDir = join(tempDir(t), 'certs');
  const run = await runCli(['cert', 'generate', '--cert-dir', certDir, ...flags]);
  assert.equal(run.code, 0, run.stderr);
  return certDir;
}

/** A --cert-dir whose local CA allows one intermediate below it (pathLen 1), unlike `cert generate`'s. */
async function pathLenOneCertDir(t: TestContext): Promise<string> {
  const certDir = join(tempDir(t), 'certs');
  prepareCertDir(certDir);
  const now = Date.now();
  const ca = await createCa('ecdsa-p256', { notBefore: new Date(now - DAY_MS), notAfter: new Date(now + 3650 * DAY_MS) }, { pathLen: 1 });
  writePair(certDir, 'ca', ca);
  return certDir;
}

function byName(certs: readonly ScenarioCert[]): Record<ScenarioCertName, ScenarioCert> {
  return Object.fromEntries(certs.map((c) => [c.name, c])) as Record<ScenarioCertName, ScenarioCert>;
}

/** Writes each scenario's cert (leaf + chain sent) to <dir>/<name>.pem, for openssl. */
function writeScenarioFiles(t: TestContext, certs: readonly ScenarioCert[]): Record<ScenarioCertName, string> {
  const dir = tempDir(t);
  const files = {} as Record<ScenarioCertName, string>;
  for (const cert of certs) {
    files[cert.name] = join(dir, `${cert.name}.pem`);
    writeFileSync(files[cert.name], cert.cert);
  }
  return files;
}

function openssl(args: readonly string[]): { status: number | null; output: string } {
  const run = spawnSync('openssl', args, { encoding: 'utf8' });
  return { status: run.status, output: run.stdout + run.stderr };
}

/**
 * `openssl verify` as a client would: the chain the scenario sends as -untrusted, its host name,
 * at security level 2 (Debian's and Ubuntu's system OpenSSL, Python's default context). Returns
 * 'OK' or the first error's text ("certificate has expired").
 */
function verify(caFile: string, file: string, name: string, options: { untrusted?: string; at?: Date } = {}): string {
  const attime = options.at === undefined ? [] : ['-attime', String(Math.floor(options.at.getTime() / 1000))];
  const run = openssl([
    'verify',
    '-auth_level', '2',
    ...attime,
    '-CAfile', caFile,
    '-untrusted', options.untrusted ?? file,
    '-purpose', 'sslserver',
    '-verify_hostname', `${name}.${DOMAIN}`,
    file,
  ]);
  if (run.status === 0 && run.output.trim() === `${file}: OK`) return 'OK';
  const error = /^error \d+ at \d+ depth lookup: (.*)$/m.exec(run.output);
  assert.ok(error, `unexpected openssl verify output: ${run.output}`);
  return error[1]!;
}

/** The fields of `openssl x509 -text` a scenario may change, with the scenario's own host name as <host>. */
function profile(file: string, name: string): Record<string, string | undefined> {
  const run = openssl(['x509', '-in', file, '-noout', '-text']);
  assert.equal(run.status, 0, run.output);
  const text = run.output.replaceAll(`${name}.${DOMAIN}`, '<host>');
  const field = (re: RegExp): string | undefined => re.exec(text)?.[1]?.trim();
  const extension = (title: string): string | undefined => field(new RegExp(`X509v3 ${title}:(?: critical)? *\\n\\s*(.*)`));
  return {
    signature: field(/Signature Algorithm: (.*)/),
    issuer: field(/Issuer: (.*)/),
    subject: field(/Subject: (.*)/),
    publicKeyAlgorithm: field(/Public Key Algorithm: (.*)/),
    publicKeyBits: field(/Public-Key: \((\d+) bit\)/),
    basicConstraints: extension('Basic Constraints'),
    keyUsage: extension('Key Usage'),
    extendedKeyUsage: extension('Extended Key Usage'),
    subjectAltName: extension('Subject Alternative Name'),
  };
}

test('each scenario certificate differs from valid in its fault only (openssl x509 -text)', async (t) => {
  const certDir = await generatedCertDir(t);
  const now = new Date();
  const certs = byName(await ensureScenarioCertificates({ certDir, domain: DOMAIN, now }));
  assert.deepEqual(Object.keys(certs), [...SCENARIO_CERT_NAMES]);
  const files = writeScenarioFiles(t, Object.values(certs));
  const valid = profile(files.valid, 'valid');
  assert.deepEqual(valid, {
    signature: 'ecdsa-with-SHA256',
    issuer: new X509Certificate(readFileSync(join(certDir, 'ca.pem'))).subject.replace('CN=', 'CN = '),
    subject: 'CN = <host>',
    publicKeyAlgorithm: 'id-ecPublicKey',
    publicKeyBits: '256',
    basicConstraints: 'CA:FALSE',
    keyUsage: 'Digital Signature',
    extendedKeyUsage: 'TLS Web Server Authentication',
    subjectAltName: 'DNS:<host>',
  });
  const expectedChanges: Record<ScenarioCertName, Record<string, string | undefined>> = {
    valid: {},
    expired: {},
    'not-yet-valid': {},
    'wrong-host': { subject: 'CN = other.invalid', subjectAltName: 'DNS:other.invalid' },
    'self-signed': { issuer: 'CN = <host>' },
    'untrusted-root': { issuer: `CN = ${UNTRUSTED_CA_NAME}` },
    'incomplete-chain': { issuer: `CN = ${INTERMEDIATE_CA_NAME}` },
    intermediate: { issuer: `CN = ${INTERMEDIATE_CA_NAME}` },
    'no-san': { subjectAltName: undefined },
    // The local CA signs, so its key type picks the algorithm: `cert generate` makes a P-256 CA.
    sha1: { signature: 'ecdsa-with-SHA1' },
    'rsa-1024': { publicKeyAlgorithm: 'rsaEncryption', publicKeyBits: '1024', keyUsage: 'Digital Signature, Key Encipherment' },
    'wrong-eku': { extendedKeyUsage: 'TLS Web Client Authentication' },
  };
  for (const name of SCENARIO_CERT_NAMES) {
    assert.deepEqual(profile(files[name], name), { ...valid, ...expectedChanges[name] }, name);
  }

  // Validity: only expired and not-yet-valid move, and both away from now.
  for (const name of SCENARIO_CERT_NAMES) {
    const { validFrom, validTo } = certs[name].leaf;
    const [from, to] = [new Date(validFrom).getTime(), new Date(validTo).getTime()];
    if (name === 'expired') assert.ok(to < now.getTime() - DAY_MS / 2, `${name} ends ${validTo}`);
    else if (name === 'not-yet-valid') assert.ok(from > now.getTime() + DAY_MS, `${name} starts ${validFrom}`);
    else assert.deepEqual([from, to], [new Date(certs.valid.leaf.validFrom).getTime(), new Date(certs.valid.leaf.validTo).getTime()], name);
  }
  // What each scenario sends after its leaf.
  const sent = (name: ScenarioCertName): number => certs[name].cert.match(/-----BEGIN CERTIFICATE-----/g)?.length ?? 0;
  assert.deepEqual(
    SCENARIO_CERT_NAMES.filter((name) => sent(name) > 1),
    ['untrusted-root', 'intermediate'],
  );
});

test('openssl verify refuses each faulty scenario for its own reason', async (t) => {
  const certDir = await generatedCertDir(t);
  const caFile = join(certDir, 'ca.pem');
  const certs = await ensureScenarioCertificates({ certDir, domain: DOMAIN });
  const files = writeScenarioFiles(t, certs);
  const expected: Record<ScenarioCertName, string> = {
    valid: 'OK',
    expired: 'certificate has expired',
    'not-yet-valid': 'certificate is not yet valid',
    'wrong-host': 'hostname mismatch',
    'self-signed': 'self-signed certificate',
    // The root is sent (badssl.com does too): the chain is whole, its root untrusted.
    'untrusted-root': 'self-signed certificate in certificate chain',
    'incomplete-chain': 'unable to get local issuer certificate',
    // `cert generate` makes its CA with pathLen 1: one intermediate may sit below it.
    intermediate: 'OK',
    // OpenSSL (like Node and Python) falls back to the CN when a certificate has no SAN at all.
    'no-san': 'OK',
    sha1: 'CA signature digest algorithm too weak',
    'rsa-1024': 'EE certificate key too weak',
    // OpenSSL 3.0's words for X509_V_ERR_INVALID_PURPOSE.
    'wrong-eku': 'unsuitable certificate purpose',
  };
  const actual = Object.fromEntries(SCENARIO_CERT_NAMES.map((name) => [name, verify(caFile, files[name], name)]));
  assert.deepEqual(actual, expected);

  // Given the intermediate, incomplete-chain's leaf verifies as intermediate's does: only the intermediate is missing.
  const intermediateCa = join(certDir, SCENARIO_FILES.dir, SCENARIO_FILES.intermediateCa);
  assert.equal(verify(caFile, files['incomplete-chain'], 'incomplete-chain', { untrusted: intermediateCa }), 'OK');
  // At security level 1 (OpenSSL's own default, and Node's), a 1024-bit RSA key passes; SHA-1 does not.
  const level1 = (name: ScenarioCertName): string =>
    openssl(['verify', '-auth_level', '1', '-CAfile', caFile, '-purpose', 'sslserver', files[name]]).output.trim();
  assert.equal(level1('rsa-1024'), `${files['rsa-1024']}: OK`);
  assert.match(level1('sha1'), /CA signature digest algorithm too weak/);
});

test('under a local CA that allows an intermediate, intermediate verifies and incomplete-chain needs it', async (t) => {
  const certDir = await pathLenOneCertDir(t);
  const caFile = join(certDir, 'ca.pem');
  const certs = await ensureScenarioCertificates({ certDir, domain: DOMAIN });
  const files = writeScenarioFiles(t, certs);
  const intermediateCa = join(certDir, SCENARIO_FILES.dir, SCENARIO_FILES.intermediateCa);
  assert.equal(verify(caFile, files.intermediate, 'intermediate'), 'OK');
  assert.equal(verify(caFile, files['incomplete-chain'], 'incomplete-chain'), 'unable to get local issuer certificate');
  assert.equal(verify(caFile, files['incomplete-chain'], 'incomplete-chain', { untrusted: intermediateCa }), 'OK');

  const ca = readFileSync(caFile);
  const byScenario = byName(certs);
  assert.equal(await handshake(t, byScenario.intermediate, ca), 'OK');
  assert.equal(await handshake(t, byScenario['incomplete-chain'], ca), 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
});

/** A TLS server on 127.0.0.1:0 with the scenario's key and cert; throws what loading them throws. */
async function startScenarioServer(t: TestContext, cert: ScenarioCert, serverOptions: tls.TlsOptions = {}): Promise<number> {
  const server = tls.createServer({ key: cert.key, cert: cert.cert, ...serverOptions }, (socket) => socket.end());
  t.after(() => server.close());
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

/**
 * 'OK' when a client trusting `ca` completes the handshake to the scenario's server name, else the
 * error code; with `message`, "<code> <message>" (Node 24 appends advice to some messages, so only
 * codes are compared across versions).
 */
async function handshake(t: TestContext, cert: ScenarioCert, ca: Buffer, options: { client?: tls.ConnectionOptions; server?: tls.TlsOptions; message?: boolean } = {}): Promise<string> {
  const port = await startScenarioServer(t, cert, options.server);
  const socket = tls.connect({ host: '127.0.0.1', port, ca, servername: `${cert.name}.${DOMAIN}`, ...options.client });
  t.after(() => socket.destroy());
  return once(socket, 'secureConnect').then(
    () => 'OK',
    (err: NodeJS.ErrnoException) => (options.message === true ? `${err.code} ${err.message}` : String(err.code)),
  );
}

test('a Node TLS client meets each scenario on a real socket', async (t) => {
  const certDir = await generatedCertDir(t);
  const ca = readFileSync(join(certDir, 'ca.pem'));
  const certs = byName(await ensureScenarioCertificates({ certDir, domain: DOMAIN }));
  const expected: Partial<Record<ScenarioCertName, string>> = {
    valid: 'OK',
    expired: 'CERT_HAS_EXPIRED',
    'not-yet-valid': 'CERT_NOT_YET_VALID',
    'wrong-host': 'ERR_TLS_CERT_ALTNAME_INVALID',
    'self-signed': 'DEPTH_ZERO_SELF_SIGNED_CERT',
    'untrusted-root': 'SELF_SIGNED_CERT_IN_CHAIN',
    'incomplete-chain': 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
    'wrong-eku': 'INVALID_PURPOSE',
    // tls.checkServerIdentity falls back to the CN when there are no DNS SANs: Node accepts no-san.
    'no-san': 'OK',
  };
  for (const [name, outcome] of Object.entries(expected) as [ScenarioCertName, string][]) {
    assert.equal(await handshake(t, certs[name], ca), outcome, name);
  }
  // A client that checks SANs only (Go, rustls, browsers) finds no name in no-san.
  assert.equal(certs['no-san'].leaf.checkHost(`no-san.${DOMAIN}`, { subject: 'never' }), undefined);
  assert.equal(certs['no-san'].leaf.checkHost(`no-san.${DOMAIN}`), `no-san.${DOMAIN}`);

  // sha1: Node 20's server refuses even to load it at its default security level
  // (ERR_SSL_CA_MD_TOO_WEAK), so it is served at level 0; the client refuses it then.
  const sha1 = await handshake(t, certs.sha1, ca, { server: { ciphers: 'DEFAULT@SECLEVEL=0' }, message: true });
  assert.match(sha1, /digest algorithm too weak/, sha1);

  // rsa-1024: refused from security level 2 (80-bit keys pass level 1, Node's default), on either side.
  // (Node 24's server refuses to load it at its default level: ERR_SSL_EE_KEY_TOO_SMALL.)
  const atDefault = await handshake(t, certs['rsa-1024'], ca).catch((err: NodeJS.ErrnoException) => `server refuses it: ${err.code}`);
  t.diagnostic(`rsa-1024 at Node's default security level: ${atDefault}`);
  const rsa1024 = await handshake(t, certs['rsa-1024'], ca, { server: { ciphers: 'DEFAULT@SECLEVEL=0' }, client: { ciphers: 'DEFAULT@SECLEVEL=2' }, message: true });
  assert.match(rsa1024, /key too weak|key too small/i, rsa1024);
  await assert.rejects(startScenarioServer(t, certs['rsa-1024'], { ciphers: 'DEFAULT@SECLEVEL=2' }), { code: 'ERR_SSL_EE_KEY_TOO_SMALL' });
});

test('an RSA local CA signs the sha1 leaf with sha1WithRSAEncryption, refused alike', async (t) => {
  const certDir = await generatedCertDir(t, ['--key-type', 'rsa-2048']);
  const certs = byName(await ensureScenarioCertificates({ certDir, domain: DOMAIN }));
  const files = writeScenarioFiles(t, [certs.valid, certs.sha1]);
  assert.equal(profile(files.valid, 'valid').signature, 'sha256WithRSAEncryption');
  assert.equal(profile(files.sha1, 'sha1').signature, 'sha1WithRSAEncryption');
  assert.equal(verify(join(certDir, 'ca.pem'), files.valid, 'valid'), 'OK');
  assert.equal(verify(join(certDir, 'ca.pem'), files.sha1, 'sha1'), 'CA signature digest algorithm too weak');
});

test('400 days from now, valid is still valid and expired still expired', async (t) => {
  const certDir = await generatedCertDir(t);
  const caFile = join(certDir, 'ca.pem');
  await ensureScenarioCertificates({ certDir, domain: DOMAIN });
  const later = new Date(Date.now() + 400 * DAY_MS);
  const certs = await ensureScenarioCertificates({ certDir, domain: DOMAIN, now: later });
  const files = writeScenarioFiles(t, certs);
  assert.equal(verify(caFile, files.valid, 'valid', { at: later }), 'OK');
  assert.equal(verify(caFile, files.expired, 'expired', { at: later }), 'certificate has expired');
  assert.equal(verify(caFile, files['not-yet-valid'], 'not-yet-valid', { at: later }), 'certificate is not yet valid');
  // Made for `later`, valid is not valid yet today: proof that the clock given is the one used.
  assert.equal(verify(caFile, files.valid, 'valid'), 'certificate is not yet valid');
});

test('the untrusted CA, the intermediate CA and the rsa-1024 key are kept; leaves are new at each call', async (t) => {
  const certDir = await generatedCertDir(t);
  const dir = join(certDir, SCENARIO_FILES.dir);
  let start = process.hrtime.bigint();
  const first = byName(await ensureScenarioCertificates({ certDir, domain: DOMAIN }));
  const coldMs = Number(process.hrtime.bigint() - start) / 1e6;
  const kept = [SCENARIO_FILES.untrustedCa, SCENARIO_FILES.intermediateCa, SCENARIO_FILES.rsa1024Key].map((f) => readFileSync(join(dir, f), 'utf8'));
  start = process.hrtime.bigint();
  const second = byName(await ensureScenarioCertificates({ certDir, domain: DOMAIN }));
  const warmMs = Number(process.hrtime.bigint() - start) / 1e6;
  t.diagnostic(`ensureScenarioCertificates: cold ${coldMs.toFixed(0)} ms, warm ${warmMs.toFixed(0)} ms`);

  assert.deepEqual([SCENARIO_FILES.untrustedCa, SCENARIO_FILES.intermediateCa, SCENARIO_FILES.rsa1024Key].map((f) => readFileSync(join(dir, f), 'utf8')), kept);
  assert.equal(second['rsa-1024'].leaf.publicKey.export({ type: 'spki', format: 'pem' }), first['rsa-1024'].leaf.publicKey.export({ type: 'spki', format: 'pem' }));
  for (const name of SCENARIO_CERT_NAMES) assert.notEqual(second[name].leaf.serialNumber, first[name].leaf.serialNumber, name);
  assert.equal(statSync(dir).mode & 0o777, 0o700);
  for (const key of [SCENARIO_FILES.untrustedCaKey, SCENARIO_FILES.intermediateCaKey, SCENARIO_FILES.rsa1024Key]) {
    assert.equal(statSync(join(dir, key)).mode & 0o777, 0o600, key);
  }

  // A new local CA: the intermediate is issued again by it; the untrusted CA stays.
  const regenerated = await runCli(['cert', 'generate', '--cert-dir', certDir, '--force']);
  assert.equal(regenerated.code, 0, regenerated.stderr);
  const third = byName(await ensureScenarioCertificates({ certDir, domain: DOMAIN }));
  assert.notEqual(readFileSync(join(dir, SCENARIO_FILES.intermediateCa), 'utf8'), kept[1]);
  assert.equal(readFileSync(join(dir, SCENARIO_FILES.untrustedCa), 'utf8'), kept[0]);
  assert.ok(third.valid.leaf.checkIssued(new X509Certificate(readFileSync(join(certDir, 'ca.pem')))));
});

test('without a local CA in --cert-dir, says to make one', async (t) => {
  const certDir = tempDir(t);
  await assert.rejects(ensureScenarioCertificates({ certDir, domain: DOMAIN }), { code: 'ECHOD_CERT_INVALID', message: /ca\.pem: no such file/ });
});

test('allowsIntermediate reads the local CA\'s pathLen: 0 forbids the intermediate scenario, 1 or none allows it', async () => {
  const validity = { notBefore: new Date(Date.now() - DAY_MS), notAfter: new Date(Date.now() + DAY_MS) };
  assert.equal(allowsIntermediate((await createCa('ecdsa-p256', validity, { pathLen: 0 })).cert), false);
  assert.equal(allowsIntermediate((await createCa('ecdsa-p256', validity, { pathLen: 1 })).cert), true);
  assert.equal(allowsIntermediate((await createCa('ecdsa-p256', validity, { pathLen: null })).cert), true);
});
