// Properties of the PEM and CRL files an operator gives (--cert, --key, --chain, --client-ca,
// --client-crl) against damage: garbage bytes, truncation, wrong labels, mutated base64, mutated
// DER inside valid armour, valid and damaged blocks together. Loading gives material OpenSSL
// serves, or a CertError naming the flag and the file; never another exception. The examples
// after the properties are certificates that load but can't serve, refused at start and reload.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { createSecureContext } from 'node:tls';
import fc from 'fast-check';
import { requireGeneratedPair } from '../../src/certs/cert-dir';
import { loadGivenCertificates } from '../../src/certs/given-files';
import { ensureCertificates } from '../../src/certs/local-ca';
import { loadConfig } from '../../src/config/config';
import { CertError } from '../../src/errors';
import { loadClientAuth } from '../../src/mtls/client-auth';
import { parseCrls } from '../../src/mtls/crl';
import { signCrl } from '../../src/mtls/crl-sign';
import { issueClient } from '../helpers/client-certs';
import { startDaemon, tempDir } from '../helpers/daemon';
import { checkProperty } from './budget';

const DAY_MS = 86_400_000;

interface Fixture {
  readonly dir: string;
  readonly certPem: string;
  readonly keyPem: string;
  readonly caPem: string;
  readonly crlPem: string;
}

/** A local CA, its leaf and a CRL it signed, in a fresh --cert-dir. */
async function fixture(t: TestContext): Promise<Fixture> {
  const dir = tempDir(t);
  const { material } = await ensureCertificates({ certDir: dir, sans: [], keyType: 'ecdsa-p256', certDays: 90 });
  const ca = requireGeneratedPair(dir, 'ca');
  const now = Date.now();
  const crlPem = signCrl({ caCert: ca.cert, caKey: ca.key, thisUpdate: new Date(now - DAY_MS), nextUpdate: new Date(now + 7 * DAY_MS), revoked: [], number: 1n });
  return { dir, certPem: material.cert, keyPem: readFileSync(path.join(dir, 'server-key.pem'), 'utf8'), caPem: material.ca!, crlPem };
}

const LABELS = ['CERTIFICATE', 'PRIVATE KEY', 'EC PRIVATE KEY', 'RSA PRIVATE KEY', 'ENCRYPTED PRIVATE KEY', 'X509 CRL', 'PUBLIC KEY', 'TRUSTED CERTIFICATE', ''];
const ARMOUR = /-----BEGIN ([^-]*)-----([\s\S]*?)-----END \1-----/;

/** The PEM text with its (first) block's DER passed through `change`, re-armoured the way PEM is. */
function withDer(pem: string, change: (der: Buffer) => Buffer): string {
  const m = ARMOUR.exec(pem);
  if (m === null) return pem;
  const der = change(Buffer.from(m[2]!.replace(/\s+/g, ''), 'base64'));
  const body = (der.toString('base64').match(/.{1,64}/g) ?? []).join('\n');
  return pem.replace(m[0], `-----BEGIN ${m[1]}-----\n${body}\n-----END ${m[1]}-----`);
}

/** Damaged versions of a valid PEM text, as bytes: every way a file an operator gives goes wrong. */
function damaged(valid: string): fc.Arbitrary<Buffer> {
  const text = fc.oneof(
    fc.nat({ max: valid.length }).map((n) => valid.slice(0, n)),
    fc.constantFrom(...LABELS).map((label) => valid.replace(/(BEGIN|END) [A-Z0-9 ]+-----/g, `$1 ${label}-----`)),
    fc.tuple(fc.nat(), fc.constantFrom(...'AZaz09+/=-_ \n!*')).map(([i, c]) => {
      const body = valid.indexOf('\n') + 1;
      const at = body + (i % Math.max(1, valid.length - body - 30));
      return valid.slice(0, at) + c + valid.slice(at + 1);
    }),
    fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })).map(([i, x]) => withDer(valid, (der) => {
      const copy = Buffer.from(der);
      copy[i % copy.length] ^= x;
      return copy;
    })),
    fc.nat().map((n) => withDer(valid, (der) => der.subarray(0, n % der.length))),
    fc.uint8Array({ maxLength: 64 }).map((extra) => withDer(valid, (der) => Buffer.concat([der, extra]))),
    fc.constantFrom('', '\n', valid.replace(/\n/g, '\r\n'), valid.replace(/-----(BEGIN|END)/g, '----$1')),
  );
  return fc.oneof(
    { weight: 6, arbitrary: text.map((s) => Buffer.from(s, 'latin1')) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 600 }).map((a) => Buffer.from(a)) },
    // Valid and damaged blocks in one file, in either order.
    { weight: 2, arbitrary: fc.tuple(text, fc.boolean()).map(([bad, first]) => Buffer.from(first ? bad + valid : valid + bad, 'latin1')) },
  );
}

/** undefined when `err` is a CertError naming one of `names` ("--cert /x.pem"), else why not. */
function notCertErrorNaming(err: unknown, names: readonly string[]): string | undefined {
  if (!(err instanceof CertError)) return `threw ${(err as Error)?.stack ?? String(err)}`;
  return names.some((n) => err.message.includes(n)) ? undefined : `CertError naming none of ${names.join(', ')}: ${err.message}`;
}

test('property: a damaged --cert, --key or --chain loads to material OpenSSL serves, or a CertError naming it', async (t) => {
  const f = await fixture(t);
  const certFile = path.join(f.dir, 'given.pem');
  const keyFile = path.join(f.dir, 'given-key.pem');
  const chainFile = path.join(f.dir, 'given-chain.pem');
  const leafPem = f.certPem.slice(0, f.certPem.indexOf('-----END CERTIFICATE-----') + 26);
  const files = fc.oneof(
    damaged(leafPem).map((cert) => ({ cert, key: Buffer.from(f.keyPem), chain: undefined })),
    damaged(f.keyPem).map((key) => ({ cert: Buffer.from(leafPem), key, chain: undefined })),
    damaged(f.caPem).map((chain) => ({ cert: Buffer.from(leafPem), key: Buffer.from(f.keyPem), chain })),
  );
  await checkProperty(
    fc.property(files, ({ cert, key, chain }) => {
      writeFileSync(certFile, cert);
      writeFileSync(keyFile, key);
      if (chain !== undefined) writeFileSync(chainFile, chain);
      try {
        const material = loadGivenCertificates({ certFile, keyFile, chainFile: chain === undefined ? undefined : chainFile });
        createSecureContext({ key: material.key, cert: material.cert });
      } catch (err) {
        const why = notCertErrorNaming(err, [`--cert ${certFile}`, `--key ${keyFile}`, `--chain ${chainFile}`]);
        assert.equal(why, undefined, why);
      }
    }),
    { runs: 300 },
  );
});

test('property: a damaged CRL parses, or is a CertError naming its label', async (t) => {
  const f = await fixture(t);
  await checkProperty(
    fc.property(damaged(f.crlPem), (bytes) => {
      try {
        for (const crl of parseCrls(bytes.toString('utf8'), '--client-crl /x.crl')) assert.ok(crl.pem.startsWith('-----BEGIN X509 CRL-----'));
      } catch (err) {
        const why = notCertErrorNaming(err, ['--client-crl /x.crl']);
        assert.equal(why, undefined, why);
      }
    }),
    { runs: 1000 },
  );
});

test('property: a damaged --client-ca or --client-crl gives a client policy OpenSSL loads, or a CertError naming it', async (t) => {
  const f = await fixture(t);
  const caFile = path.join(f.dir, 'client-ca.pem');
  const crlFile = path.join(f.dir, 'client-given.crl');
  const config = loadConfig({ flags: { certDir: f.dir, clientAuth: 'require', clientCa: caFile, clientCrl: crlFile }, env: {} });
  const material = loadGivenCertificates({ certFile: path.join(f.dir, 'server.pem'), keyFile: path.join(f.dir, 'server-key.pem') });
  const files = fc.oneof(
    damaged(f.caPem).map((ca) => ({ ca, crl: Buffer.from(f.crlPem) })),
    damaged(f.crlPem).map((crl) => ({ ca: Buffer.from(f.caPem), crl })),
  );
  await checkProperty(
    fc.property(files, ({ ca, crl }) => {
      writeFileSync(caFile, ca);
      writeFileSync(crlFile, crl);
      try {
        const loaded = loadClientAuth(config, material);
        createSecureContext({ ca: loaded.policy.ca, crl: loaded.policy.crl });
      } catch (err) {
        const why = notCertErrorNaming(err, [`--client-ca ${caFile}`, `--client-crl ${crlFile}`]);
        assert.equal(why, undefined, why);
      }
    }),
    { runs: 200 },
  );
});

// Certificates that parse and match their key but can't serve: refused, naming the file and why.

function openssl(args: readonly string[]): void {
  const r = spawnSync('openssl', args, { encoding: 'utf8' });
  assert.equal(r.status, 0, `openssl ${args.join(' ')}: ${r.stderr}`);
}

function assertRefused(certFile: string, keyFile: string, reason: RegExp, now?: Date): void {
  assert.throws(() => loadGivenCertificates({ certFile, keyFile }, now), (err: unknown) => {
    assert.ok(err instanceof CertError, String(err));
    assert.ok(err.message.startsWith(`--cert ${certFile}: `), err.message);
    assert.match(err.message, reason);
    return true;
  });
}

test('given: the local CA as --cert is refused for its keyUsage (clients said "unsuitable certificate purpose")', async (t) => {
  const f = await fixture(t);
  assertRefused(path.join(f.dir, 'ca.pem'), path.join(f.dir, 'ca-key.pem'), /keyUsage \(keyCertSign, cRLSign\) allows no TLS handshake/);
});

test('given: a client certificate (extendedKeyUsage clientAuth only) as --cert is refused', async (t) => {
  const f = await fixture(t);
  const alice = await issueClient(f.dir, 'alice');
  assertRefused(alice.certFile, alice.keyFile, /extendedKeyUsage \(1\.3\.6\.1\.5\.5\.7\.3\.2\) lacks serverAuth/);
});

test('given: an intermediate CA (CA:TRUE, not self-signed) as --cert is refused; a self-signed `openssl req -x509` one serves', (t) => {
  const dir = tempDir(t);
  const file = (name: string) => path.join(dir, name);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  openssl(['req', '-x509', ...ec, '-keyout', file('root-key.pem'), '-out', file('root.pem'), '-subj', '/CN=root', '-days', '30']);
  openssl(['req', '-new', ...ec, '-keyout', file('mid-key.pem'), '-out', file('mid.csr'), '-subj', '/CN=localhost']);
  writeFileSync(file('ext.cnf'), 'basicConstraints=critical,CA:TRUE\nsubjectAltName=DNS:localhost\n');
  openssl(['x509', '-req', '-in', file('mid.csr'), '-CA', file('root.pem'), '-CAkey', file('root-key.pem'), '-CAcreateserial', '-out', file('mid.pem'), '-days', '30', '-extfile', file('ext.cnf')]);
  assertRefused(file('mid.pem'), file('mid-key.pem'), /is a CA certificate \(basicConstraints CA:TRUE\), not a server certificate/);
  assert.equal(new X509Certificate(readFileSync(file('root.pem'))).ca, true);
  assert.equal(loadGivenCertificates({ certFile: file('root.pem'), keyFile: file('root-key.pem') }).source, 'given');
});

test('given: a certificate not valid yet is refused, naming the date', async (t) => {
  const f = await fixture(t);
  const certFile = path.join(f.dir, 'server.pem');
  const notBefore = new X509Certificate(readFileSync(certFile)).validFrom;
  assertRefused(certFile, path.join(f.dir, 'server-key.pem'), new RegExp(`not valid until ${new Date(notBefore).toISOString()}`), new Date(Date.parse(notBefore) - DAY_MS));
});

test('given: a reload to an unfit certificate is refused and the old one keeps serving', async (t) => {
  const f = await fixture(t);
  const serving = { certDir: f.dir, cert: path.join(f.dir, 'server.pem'), key: path.join(f.dir, 'server-key.pem') };
  let next = loadConfig({ flags: { listen: '127.0.0.1:0', workers: '0', ...serving }, env: {} });
  const d = await startDaemon(t, serving, { reloadConfig: () => next });
  const before = d.supervisor.tls.leaf.fingerprint256;
  next = loadConfig({ flags: { listen: '127.0.0.1:0', workers: '0', certDir: f.dir, cert: path.join(f.dir, 'ca.pem'), key: path.join(f.dir, 'ca-key.pem') }, env: {} });
  assert.equal(await d.supervisor.reload(), false);
  assert.equal(d.supervisor.tls.leaf.fingerprint256, before);
});

// Counterexamples the properties found, kept as examples.

/** The PEM of `pem`'s certificate with its DER changed by `change`, which must still parse. */
function alteredCertificate(pem: string, change: (der: Buffer) => void): string {
  const der = Buffer.from(new X509Certificate(pem).raw);
  change(der);
  return new X509Certificate(der).toString();
}

test('given: a --chain certificate whose subjectAltName Node gives as null is served, not a TypeError', async (t) => {
  const f = await fixture(t);
  // The GeneralNames SEQUENCE tag made something else: the certificate parses, the extension doesn't.
  const broken = alteredCertificate(f.certPem, (der) => {
    der[der.indexOf(Buffer.concat([Buffer.from([0x82, 0x09]), Buffer.from('localhost')])) - 2] = 0x3c;
  });
  const chainFile = path.join(f.dir, 'chain.pem');
  writeFileSync(chainFile, broken);
  const load = () => loadGivenCertificates({ certFile: path.join(f.dir, 'server.pem'), keyFile: path.join(f.dir, 'server-key.pem'), chainFile });
  // Node 20 gives the damaged extension as null; Node 24 throws when it is read. Either way the
  // chain serves with no names, or is a CertError naming the file: never another exception.
  let material: ReturnType<typeof loadGivenCertificates>;
  try {
    material = load();
  } catch (err) {
    assert.equal(notCertErrorNaming(err, [`--chain ${chainFile}`]), undefined);
    return;
  }
  assert.deepEqual(material.caInfo?.sans, []);
});

test('given: a certificate whose public key OpenSSL can not decode is a CertError naming the file (--client-ca, --chain)', async (t) => {
  const f = await fixture(t);
  // id-ecPublicKey's first OID byte changed: X509Certificate parses it and throws only on .publicKey.
  const broken = alteredCertificate(f.caPem, (der) => {
    der[der.indexOf(Buffer.from([0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01])) + 2] = 0x2b;
  });
  assert.throws(() => new X509Certificate(broken).publicKey);
  const file = path.join(f.dir, 'broken-ca.pem');
  writeFileSync(file, f.caPem + broken);
  const config = loadConfig({ flags: { certDir: f.dir, clientAuth: 'require', clientCa: file }, env: {} });
  const material = loadGivenCertificates({ certFile: path.join(f.dir, 'server.pem'), keyFile: path.join(f.dir, 'server-key.pem') });
  assert.throws(() => loadClientAuth(config, material), (err: unknown) => err instanceof CertError && err.message.startsWith(`--client-ca ${file}: certificate 2 is not valid (`));
  assert.throws(
    () => loadGivenCertificates({ certFile: path.join(f.dir, 'server.pem'), keyFile: path.join(f.dir, 'server-key.pem'), chainFile: file }),
    (err: unknown) => err instanceof CertError && err.message.startsWith(`--chain ${file}: certificate 2 is not valid (`),
  );
});

test('given: an encrypted --key (PKCS#8 or traditional PEM) is refused, saying how to decrypt it', async (t) => {
  const f = await fixture(t);
  const certFile = path.join(f.dir, 'server.pem');
  const plain = path.join(f.dir, 'server-key.pem');
  for (const [name, args] of [
    ['pkcs8-encrypted.pem', ['pkcs8', '-topk8', '-v2', 'aes-256-cbc', '-passout', 'pass:secret']],
    ['traditional-encrypted.pem', ['ec', '-aes256', '-passout', 'pass:secret']],
  ] as const) {
    const keyFile = path.join(f.dir, name);
    openssl([...args, '-in', plain, '-out', keyFile]);
    assert.throws(() => loadGivenCertificates({ certFile, keyFile }), (err: unknown) => err instanceof CertError && err.message.startsWith(`--key ${keyFile}: the key is encrypted (`));
  }
});
