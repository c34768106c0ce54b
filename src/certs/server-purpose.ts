// Whether a certificate may serve as a TLS server's, by the rules OpenSSL's "sslserver" purpose
// applies on the client's side: a certificate that breaks one is refused by every OpenSSL client
// with "unsuitable certificate purpose", so the daemon refuses it at start and reload instead.
// The KeyUsage bits are read from the DER with der.ts: X509Certificate does not expose them, and
// the serving daemon does not load node-forge (docs/architecture.md, "What serving loads").

import type { X509Certificate } from 'node:crypto';
import { TAG, childrenOf, contextTag, expectTag, oidText, readDer } from '../mtls/der';

// The OIDs are written out, not taken from x509.ts: that file loads node-forge.
const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const KEY_USAGE_OID = '2.5.29.15';

/** Extended key usages that allow serving: serverAuth, anyExtendedKeyUsage, and the two SGC ones OpenSSL still honours. */
const SERVER_EKUS: ReadonlySet<string> = new Set([SERVER_AUTH, '2.5.29.37.0', '2.16.840.1.113730.4.1', '1.3.6.1.4.1.311.10.3.3']);

/** KeyUsage bits of which a server certificate needs one (OpenSSL's KU_TLS): digitalSignature, keyEncipherment, keyAgreement. */
const TLS_KEY_USAGE = 0x80 | 0x20 | 0x08;

/** Why `cert` can't serve TLS as a server's certificate, in words with the fix; undefined when it can. CertError for extensions der.ts can't read. */
export function serverPurposeProblem(cert: X509Certificate): string | undefined {
  // A self-signed CA:TRUE certificate is what `openssl req -x509` makes by default: clients that
  // trust it trust it as itself, so it serves. A CA that issues others is the wrong file.
  if (cert.ca && !(cert.checkIssued(cert) && cert.verify(cert.publicKey))) {
    return "is a CA certificate (basicConstraints CA:TRUE), not a server certificate (give the server certificate it issued; the CA goes in --chain if clients don't have it)";
  }
  const bits = keyUsageBits(cert);
  if (bits !== undefined && (bits & TLS_KEY_USAGE) === 0) {
    return `its keyUsage (${keyUsageNames(bits)}) allows no TLS handshake, which needs digitalSignature (or keyEncipherment for RSA) (give a certificate issued for a TLS server)`;
  }
  const ekus = cert.keyUsage; // Node's name for the extendedKeyUsage OIDs; undefined without the extension
  if (ekus !== undefined && !ekus.some((oid) => SERVER_EKUS.has(oid))) {
    return `its extendedKeyUsage (${ekus.join(', ') || 'empty'}) lacks serverAuth (${SERVER_AUTH}): clients refuse it as a server's (give a certificate issued for a TLS server)`;
  }
  return undefined;
}

/** The first byte of the KeyUsage BIT STRING (every bit a server needs is there); undefined without the extension. */
function keyUsageBits(cert: X509Certificate): number | undefined {
  const tbs = childrenOf(expectTag(childrenOf(readDer(cert.raw))[0], TAG.sequence, 'TBSCertificate'));
  const extensions = tbs.find((node) => node.tag === contextTag(3));
  if (extensions === undefined) return undefined;
  for (const ext of childrenOf(expectTag(childrenOf(extensions)[0], TAG.sequence, 'extensions'))) {
    const [id, ...rest] = childrenOf(expectTag(ext, TAG.sequence, 'extension'));
    if (oidText(expectTag(id, TAG.oid, 'extension id')) !== KEY_USAGE_OID) continue;
    const value = expectTag(rest[rest.length - 1], TAG.octetString, 'keyUsage value');
    const bitString = expectTag(readDer(value.value), TAG.bitString, 'keyUsage');
    return bitString.value[1] ?? 0; // value[0] counts the unused bits
  }
  return undefined;
}

function keyUsageNames(bits: number): string {
  const names = ['digitalSignature', 'nonRepudiation', 'keyEncipherment', 'dataEncipherment', 'keyAgreement', 'keyCertSign', 'cRLSign', 'encipherOnly'];
  const set = names.filter((_, i) => (bits & (0x80 >> i)) !== 0);
  return set.length === 0 ? 'no bits' : set.join(', ');
}
