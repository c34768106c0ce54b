// Certificates the operator gives as PEM files (--cert, --key, --chain): read, parsed and checked
// (key matches, valid now, fit to serve, loadable by OpenSSL) before serving, each failure a CertError that names the flag and
// the file and says what to do.

import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { CertError, systemErrorCode } from '../errors';
import { describeX509, notAfterOf, notBeforeOf, parseCertificate, splitPemCertificates } from './inspect';
import { serverPurposeProblem } from './server-purpose';
import { exportKey, type TlsMaterial } from './tls-material';

/** Loads user-given PEM files; CertError saying what is wrong and what to do when they can't be served. */
export function loadGivenCertificates(
  files: { certFile: string; keyFile: string; chainFile?: string | undefined },
  now: Date = new Date(),
): TlsMaterial {
  const certs = parseCertificates('--cert', files.certFile, readGivenFile('--cert', files.certFile));
  const key = parsePrivateKey('--key', files.keyFile, readGivenFile('--key', files.keyFile));
  const chain = files.chainFile === undefined ? [] : parseCertificates('--chain', files.chainFile, readGivenFile('--chain', files.chainFile));
  const leaf = certs[0]!;

  if (!leaf.checkPrivateKey(key)) {
    throw new CertError(`--key ${files.keyFile} does not match --cert ${files.certFile} (give the private key the certificate was issued for)`);
  }
  const notAfter = notAfterOf(leaf);
  if (notAfter.getTime() < now.getTime()) {
    throw new CertError(
      `--cert ${files.certFile}: expired on ${notAfter.toISOString()} (renew it, or leave --cert out to generate one in --cert-dir)`,
    );
  }
  // Clients would refuse it as "not yet valid" until then, as they refuse an expired one.
  const notBefore = notBeforeOf(leaf);
  if (notBefore.getTime() > now.getTime()) {
    throw new CertError(
      `--cert ${files.certFile}: not valid until ${notBefore.toISOString()} (check this machine's clock, or give a certificate valid now)`,
    );
  }
  const unfit = purposeProblem(leaf);
  if (unfit !== undefined) throw new CertError(`--cert ${files.certFile}: ${unfit}`);

  // A --cert file may carry its intermediates itself; they go before those from --chain.
  const intermediates = [...certs.slice(1), ...chain];
  const first = intermediates[0];
  const pem = { key: exportKey(key), cert: [leaf, ...intermediates].map((c) => c.toString()).join('') };
  // OpenSSL has the last word on what it can serve (a 1024-bit RSA key is "ee key too small" at
  // its default security level): refused here rather than in every worker.
  try {
    createSecureContext(pem);
  } catch (err) {
    throw new CertError(`--cert ${files.certFile}: OpenSSL can't serve it (${(err as Error).message}) (give a certificate with a stronger key)`, { cause: err });
  }
  return {
    ...pem,
    ca: first?.toString(),
    leaf: describeX509(leaf),
    caInfo: first === undefined ? undefined : describeX509(first),
    source: 'given',
  };
}

/** serverPurposeProblem, with extensions der.ts cannot read as a problem of their own. */
function purposeProblem(leaf: X509Certificate): string | undefined {
  try {
    return serverPurposeProblem(leaf);
  } catch (err) {
    if (!(err instanceof CertError)) throw err;
    return `its extensions can't be read (${err.message}) (give a DER-encoded X.509 server certificate)`;
  }
}

type GivenFlag = '--cert' | '--key' | '--chain';

const GIVEN_FILE_HINTS: Readonly<Record<GivenFlag, string>> = {
  '--cert': 'give a PEM certificate, or leave --cert out to generate one in --cert-dir',
  '--key': 'give the PEM private key of --cert',
  '--chain': 'give the PEM intermediate certificates, or leave --chain out',
};

function readGivenFile(flag: GivenFlag, path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    const code = systemErrorCode(err);
    if (code === 'EACCES') throw new CertError(`${flag} ${path}: permission denied (make it readable by the user the daemon runs as)`, { cause: err });
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a directory' : (err as Error).message;
    throw new CertError(`${flag} ${path}: ${why} (${GIVEN_FILE_HINTS[flag]})`, { cause: err });
  }
}

function parseCertificates(flag: GivenFlag, path: string, text: string): X509Certificate[] {
  const blocks = splitPemCertificates(text);
  if (blocks.length === 0) {
    throw new CertError(
      `${flag} ${path}: no PEM certificate in it (expected -----BEGIN CERTIFICATE-----; convert DER with openssl x509 -inform der)`,
    );
  }
  return blocks.map((block, i) => {
    try {
      return parseCertificate(block);
    } catch (err) {
      throw new CertError(`${flag} ${path}: certificate ${i + 1} is not valid (${(err as Error).message})`, { cause: err });
    }
  });
}

function parsePrivateKey(flag: GivenFlag, path: string, text: string): KeyObject {
  if (/-----BEGIN (?:ENCRYPTED PRIVATE KEY|[A-Z ]+PRIVATE KEY-----\r?\nProc-Type: 4,ENCRYPTED)/.test(text)) {
    throw new CertError(`${flag} ${path}: the key is encrypted (give it unencrypted: openssl pkey -in ${path} -out plain-key.pem)`);
  }
  try {
    return createPrivateKey(text);
  } catch (err) {
    throw new CertError(`${flag} ${path}: not a PEM private key (${(err as Error).message}) (${GIVEN_FILE_HINTS[flag]})`, { cause: err });
  }
}
