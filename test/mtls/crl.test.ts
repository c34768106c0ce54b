// Certificate revocation lists: the CRLs `cert revoke` signs are what openssl and Node's TLS
// accept, parseCrls reads them and openssl's own (v1 and v2, UTCTime and GeneralizedTime),
// crlIssuedBy tells our CA's from another's and from a tampered one, and anything that is not a
// CRL is a CertError naming where it came from.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { CertError } from '../../src/errors';
import { crlIssuedBy, parseCrls, subjectDerOf, type CrlInfo } from '../../src/mtls/crl';
import { signCrl } from '../../src/mtls/crl-sign';
import { runCli, tempDir } from '../helpers/daemon';

const LABEL = '--client-crl /etc/test.pem';

async function cli(args: readonly string[]): Promise<string> {
  const r = await runCli(args);
  assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** A --cert-dir with a CA (of `keyType`) and client certificates for `clients`. */
async function certDirWithClients(t: TestContext, keyType: string, clients: readonly string[]): Promise<string> {
  const certDir = join(tempDir(t), 'certs');
  await cli(['cert', 'generate', '--cert-dir', certDir, '--key-type', keyType]);
  for (const name of clients) await cli(['cert', 'client', name, '--cert-dir', certDir]);
  return certDir;
}

function openssl(args: readonly string[]): { status: number | null; output: string } {
  const r = spawnSync('openssl', args, { encoding: 'utf8' });
  return { status: r.status, output: r.stdout + r.stderr };
}

function certAt(file: string): X509Certificate {
  return new X509Certificate(readFileSync(file));
}

function parseOne(text: string): CrlInfo {
  const crls = parseCrls(text, LABEL);
  assert.equal(crls.length, 1);
  return crls[0]!;
}

for (const keyType of ['ecdsa-p256', 'rsa-2048']) {
  test(`crl: with a ${keyType} CA, openssl verifies the CRL cert revoke signs, lists the serial, and refuses the revoked certificate only`, async (t) => {
    const certDir = await certDirWithClients(t, keyType, ['alice', 'bob']);
    await cli(['cert', 'revoke', 'alice', '--cert-dir', certDir]);
    const crlFile = join(certDir, 'client.crl');
    const caFile = join(certDir, 'ca.pem');

    const verified = openssl(['crl', '-in', crlFile, '-CAfile', caFile, '-noout']);
    assert.equal(verified.status, 0, verified.output);
    assert.match(verified.output, /verify OK/);

    const text = openssl(['crl', '-in', crlFile, '-text', '-noout']).output;
    const alice = certAt(join(certDir, 'clients', 'alice.pem')).serialNumber;
    assert.match(text, new RegExp(`Serial Number: ${alice}\\n`));
    assert.match(text, /Version 2 \(0x1\)/);
    assert.match(text, keyType === 'ecdsa-p256' ? /Signature Algorithm: ecdsa-with-SHA256/ : /Signature Algorithm: sha256WithRSAEncryption/);
    assert.match(text, /X509v3 CRL Number: \n\s+1\n/);
    assert.match(text, /X509v3 Authority Key Identifier/);

    const verify = (name: string) => openssl(['verify', '-crl_check', '-CAfile', caFile, '-CRLfile', crlFile, join(certDir, 'clients', `${name}.pem`)]);
    const revoked = verify('alice');
    assert.notEqual(revoked.status, 0);
    assert.match(revoked.output, /certificate revoked/);
    const fine = verify('bob');
    assert.equal(fine.status, 0, fine.output);

    // Our own reader agrees: the serial as X509Certificate prints it, issued by this CA.
    const crl = parseOne(readFileSync(crlFile, 'utf8'));
    assert.deepEqual(crl.revoked.map((e) => e.serial), [alice]);
    assert.ok(crlIssuedBy(crl, certAt(caFile)));
  });
}

test('crl: parseCrls reads back what signCrl makes: serials in X509Certificate form, dates (UTCTime and GeneralizedTime), number, issuer', async (t) => {
  const certDir = await certDirWithClients(t, 'ecdsa-p256', ['alice']);
  const caCert = certAt(join(certDir, 'ca.pem'));
  const caKey = createPrivateKey(readFileSync(join(certDir, 'ca-key.pem')));
  const alice = certAt(join(certDir, 'clients', 'alice.pem'));
  const thisUpdate = new Date('2049-12-31T23:59:59Z'); // the last UTCTime
  const nextUpdate = new Date('2050-01-07T00:00:00Z'); // GeneralizedTime from 2050 on
  // A leading zero nibble (0A), a top bit set (80, encoded with a sign byte), a 16-byte serial, zero.
  const revoked = [
    { serial: alice.serialNumber, revokedAt: new Date('2026-01-02T03:04:05Z') },
    { serial: '0A', revokedAt: new Date('1999-12-31T23:59:59Z') },
    { serial: '80', revokedAt: new Date('2050-06-01T12:00:00Z') },
    { serial: '0', revokedAt: new Date('2000-01-01T00:00:00Z') },
  ];
  const pem = signCrl({ caCert, caKey, thisUpdate, nextUpdate, revoked, number: 1n << 70n });
  const crl = parseOne(pem);
  assert.equal(crl.pem, pem);
  assert.deepEqual(crl.revoked, revoked);
  assert.deepEqual(crl.thisUpdate, thisUpdate);
  assert.deepEqual(crl.nextUpdate, nextUpdate);
  assert.equal(crl.number, 1n << 70n);
  assert.deepEqual(crl.issuerDer, subjectDerOf(caCert));
  assert.ok(crlIssuedBy(crl, caCert));

  // openssl reads the same serials and dates.
  const file = join(certDir, 'made.crl');
  writeFileSync(file, pem);
  const text = openssl(['crl', '-in', file, '-text', '-noout']).output;
  for (const serial of [alice.serialNumber, '0A', '80']) assert.match(text, new RegExp(`Serial Number: ${serial}\\n`));
  assert.match(text, /Next Update: Jan {2}7 00:00:00 2050 GMT/);

  // No revoked certificates: the field is left out (RFC 5280), and the list reads back empty.
  const empty = signCrl({ caCert, caKey, thisUpdate, nextUpdate, revoked: [], number: 1n });
  writeFileSync(file, empty);
  assert.match(openssl(['crl', '-in', file, '-text', '-noout']).output, /No Revoked Certificates\./);
  assert.deepEqual(parseOne(empty).revoked, []);
});

/** A CRL from `openssl ca -gencrl` (a minimal CA database in `dir`), revoking `revoke` with reason keyCompromise. */
function opensslCrl(dir: string, certDir: string, opts: { crlNumber?: string; revoke?: string; nextUpdate?: string; md: string }): string {
  const conf = join(dir, 'ca.cnf');
  writeFileSync(join(dir, 'index.txt'), '');
  const lines = ['[ca]', 'default_ca = d', '[d]', `database = ${join(dir, 'index.txt')}`, `default_md = ${opts.md}`, 'default_crl_days = 3'];
  if (opts.crlNumber !== undefined) {
    // With a crlnumber file, openssl writes a v2 CRL with the number; without, a v1 CRL.
    writeFileSync(join(dir, 'crlnumber'), `${opts.crlNumber}\n`);
    lines.push(`crlnumber = ${join(dir, 'crlnumber')}`);
  }
  writeFileSync(conf, lines.join('\n') + '\n');
  const ca = ['-config', conf, '-keyfile', join(certDir, 'ca-key.pem'), '-cert', join(certDir, 'ca.pem')];
  if (opts.revoke !== undefined) {
    const r = openssl(['ca', ...ca, '-revoke', opts.revoke, '-crl_compromise', '20260101000000Z']);
    assert.equal(r.status, 0, r.output);
  }
  const out = join(dir, 'openssl.crl');
  const r = openssl(['ca', ...ca, '-gencrl', '-out', out, ...(opts.nextUpdate ? ['-crl_nextupdate', opts.nextUpdate] : [])]);
  assert.equal(r.status, 0, r.output);
  return readFileSync(out, 'utf8');
}

test('crl: parseCrls reads CRLs openssl makes, v2 (number, SHA-384, GeneralizedTime, entry extensions) and v1, and crlIssuedBy verifies them', async (t) => {
  const certDir = await certDirWithClients(t, 'ecdsa-p256', ['alice']);
  const caCert = certAt(join(certDir, 'ca.pem'));
  const alice = certAt(join(certDir, 'clients', 'alice.pem'));

  const v2 = parseOne(opensslCrl(tempDir(t), certDir, { crlNumber: '1000', revoke: join(certDir, 'clients', 'alice.pem'), nextUpdate: '20600101000000Z', md: 'sha384' }));
  assert.deepEqual(v2.revoked.map((e) => e.serial), [alice.serialNumber]);
  assert.equal(v2.number, 0x1000n);
  assert.deepEqual(v2.nextUpdate, new Date('2060-01-01T00:00:00Z'));
  assert.ok(Math.abs(v2.thisUpdate.getTime() - Date.now()) < 60_000, 'thisUpdate is now');
  assert.ok(crlIssuedBy(v2, caCert), 'ecdsa-with-SHA384 verifies');

  const v1 = parseOne(opensslCrl(tempDir(t), certDir, { md: 'sha512' }));
  assert.equal(v1.number, undefined);
  assert.deepEqual(v1.revoked, []);
  assert.equal(v1.nextUpdate!.getTime() - v1.thisUpdate.getTime(), 3 * 86_400_000);
  assert.ok(crlIssuedBy(v1, caCert), 'ecdsa-with-SHA512 verifies');

  // Two CRLs in one text, in order, each with its own PEM.
  const both = parseCrls(`# comment\n${v2.pem}\nsome text\n${v1.pem}`, LABEL);
  assert.deepEqual(both.map((c) => c.number), [0x1000n, undefined]);
  assert.deepEqual(both.map((c) => c.pem), [v2.pem, v1.pem]);
});

test('crl: crlIssuedBy is true for its CA, false for another CA, a tampered signature or a tampered entry', async (t) => {
  const certDir = await certDirWithClients(t, 'ecdsa-p256', ['alice']);
  await cli(['cert', 'revoke', 'alice', '--cert-dir', certDir]);
  const otherDir = await certDirWithClients(t, 'ecdsa-p256', []);
  const rsaDir = await certDirWithClients(t, 'rsa-2048', []);
  const crl = parseOne(readFileSync(join(certDir, 'client.crl'), 'utf8'));
  const ca = certAt(join(certDir, 'ca.pem'));
  assert.equal(crlIssuedBy(crl, ca), true);
  // Same subject (the CA's name is the host's), another key.
  assert.equal(crlIssuedBy(crl, certAt(join(otherDir, 'ca.pem'))), false);
  assert.equal(crlIssuedBy(crl, certAt(join(rsaDir, 'ca.pem'))), false);

  const der = Buffer.from(crl.pem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
  const tampered = (offset: number): CrlInfo => {
    const copy = Buffer.from(der);
    copy[offset] = copy[offset]! ^ 0x01;
    return parseOne(`-----BEGIN X509 CRL-----\n${copy.toString('base64')}\n-----END X509 CRL-----\n`);
  };
  // The last byte is the signature's; the revoked serial sits in the TBS.
  assert.equal(crlIssuedBy(tampered(der.length - 1), ca), false);
  const serialAt = der.indexOf(Buffer.from(crl.revoked[0]!.serial, 'hex'));
  assert.ok(serialAt > 0);
  const changed = tampered(serialAt + 3);
  assert.notEqual(changed.revoked[0]!.serial, crl.revoked[0]!.serial);
  assert.equal(crlIssuedBy(changed, ca), false);
  // A CrlInfo copied (as over IPC) still carries what crlIssuedBy needs: its PEM.
  assert.equal(crlIssuedBy({ ...crl }, ca), true);
});

test('crl: no CRL, garbage, a certificate, truncated or damaged DER: a CertError naming the label, never another exception', async (t) => {
  const certDir = await certDirWithClients(t, 'ecdsa-p256', ['alice']);
  await cli(['cert', 'revoke', 'alice', '--cert-dir', certDir]);
  const good = readFileSync(join(certDir, 'client.crl'), 'utf8');
  const der = Buffer.from(good.replace(/-----[^-]+-----|\s/g, ''), 'base64');
  const pem = (bytes: Buffer): string => `-----BEGIN X509 CRL-----\n${bytes.toString('base64')}\n-----END X509 CRL-----\n`;

  const refused = (text: string, message: RegExp): void => {
    assert.throws(
      () => parseCrls(text, LABEL),
      (err: unknown) => err instanceof CertError && err.code === 'ECHOD_CERT_INVALID' && err.message.startsWith(`${LABEL}: `) && message.test(err.message),
      JSON.stringify(text.slice(0, 80)),
    );
  };
  refused('', /holds no CRL \(expected -----BEGIN X509 CRL-----; make one with `tls-echod cert revoke <name>`/);
  refused('garbage', /holds no CRL/);
  refused(readFileSync(join(certDir, 'ca.pem'), 'utf8'), /holds a certificate, not a CRL/);
  refused('-----BEGIN X509 CRL-----\n-----END X509 CRL-----\n', /the CRL is not a valid X\.509 CRL \(the PEM block is empty; give a PEM CRL/);
  refused('-----BEGIN X509 CRL-----\nnot base64!\n-----END X509 CRL-----\n', /not base64/);
  refused(pem(Buffer.from('just some bytes')), /not a valid X\.509 CRL/);
  refused(good + pem(der.subarray(0, 40)), /CRL 2 of 2 is not a valid X\.509 CRL/);
  // A certificate's DER in a CRL block: the right outer shape, the wrong fields.
  refused(pem(certAt(join(certDir, 'ca.pem')).raw), /not a valid X\.509 CRL/);
  refused(pem(Buffer.from([0x30, 0x80, 0x00, 0x00])), /indefinite length/);
  refused(pem(Buffer.from([0x30, 0x84, 0xff, 0xff, 0xff, 0xff, 0x00])), /runs past the end/);
  refused(pem(Buffer.from([0x30, 0x89, 1, 2, 3, 4, 5, 6, 7, 8, 9])), /length of 9 bytes/);
  refused(pem(Buffer.concat([der, Buffer.from([0])])), /trailing data/);

  // Every truncation is refused; every one-byte change is refused or still parses, never a TypeError.
  for (let length = 0; length < der.length; length++) refused(pem(der.subarray(0, length)), /not a valid X\.509 CRL/);
  for (let offset = 0; offset < der.length; offset++) {
    for (const mask of [0x01, 0x80, 0xff]) {
      const copy = Buffer.from(der);
      copy[offset] = copy[offset]! ^ mask;
      try {
        parseCrls(pem(copy), LABEL);
      } catch (err) {
        assert.ok(err instanceof CertError && err.message.startsWith(`${LABEL}: `), `byte ${offset} ^ ${mask}: ${(err as Error).stack}`);
      }
    }
  }
});
