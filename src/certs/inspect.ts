// Inspecting certificates: subject, SANs, validity, fingerprint, SPKI pin and key type (CertInfo),
// for `cert show`, the daemon's log and the reuse and renewal decisions. Every parse goes through
// node:crypto's X509Certificate, i.e. OpenSSL, the same code that will serve the certificate.
// Nothing here loads node-forge, so the `check` client can split SANs without it.

import { X509Certificate, createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { SocketAddress, isIP } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { CertError } from '../errors';

export interface CertInfo {
  /** Distinguished name, RDNs joined with ", " (`CN=localhost`). */
  subject: string;
  issuer: string;
  /** DNS names as written, IP addresses in canonical form (`::1`), other kinds as `URI:...`. */
  sans: string[];
  notBefore: Date;
  notAfter: Date;
  /** SHA-256 of the DER certificate, colon-separated upper-case hex (as openssl prints it). */
  fingerprint256: string;
  /** base64 SHA-256 of the SubjectPublicKeyInfo DER: HPKP pin, curl --pinnedpubkey "sha256//<pin>". */
  spkiPin: string;
  /** Upper-case hex. */
  serial: string;
  /** `ecdsa-p256`, `rsa-2048`, `rsa-3072`; other keys as `rsa-<bits>`, `ecdsa-<curve>`, `ed25519`, ... */
  keyType: string;
}

/** Describes the first certificate in a PEM text. */
export function describeCertificate(pem: string): CertInfo {
  const first = splitPemCertificates(pem)[0];
  if (first === undefined) throw new CertError('no PEM certificate found (expected -----BEGIN CERTIFICATE-----)');
  try {
    return describeX509(new X509Certificate(first));
  } catch (err) {
    throw new CertError(`not a valid certificate (${(err as Error).message})`, { cause: err });
  }
}

/**
 * A certificate from one PEM block, its public key read too: X509Certificate accepts a certificate
 * whose key OpenSSL can't decode and throws only when the key is first read, far from the file.
 */
export function parseCertificate(pem: string): X509Certificate {
  const cert = new X509Certificate(pem);
  if (cert.publicKey.type !== 'public') throw new Error(`its key is a ${cert.publicKey.type} key, not a public key`);
  return cert;
}

/** CertInfo of a parsed certificate. */
export function describeX509(cert: X509Certificate): CertInfo {
  return {
    subject: distinguishedNameText(cert.subject),
    issuer: distinguishedNameText(cert.issuer),
    sans: parseSubjectAltName(subjectAltNameText(cert)),
    notBefore: notBeforeOf(cert),
    notAfter: notAfterOf(cert),
    fingerprint256: cert.fingerprint256,
    spkiPin: createHash('sha256').update(spkiOf(cert.publicKey)).digest('base64'),
    serial: cert.serialNumber,
    keyType: keyTypeOf(cert.publicKey),
  };
}

// Node 20 has no validFromDate; V8 parses OpenSSL's "Nov 22 00:56:52 2026 GMT" form.
export function notBeforeOf(cert: X509Certificate): Date {
  return new Date(cert.validFrom);
}

/** The certificate's notAfter as a Date (see notBeforeOf). */
export function notAfterOf(cert: X509Certificate): Date {
  return new Date(cert.validTo);
}

/** An X509Certificate subject or issuer (one RDN a line) as one line: `C=DE, O=x, CN=y`. */
export function distinguishedNameText(dn: string): string {
  return dn.split('\n').filter((rdn) => rdn !== '').join(', ');
}

/** A TLS peer's certificate as the logs name it. */
export interface PeerCertificate {
  /** As distinguishedNameText writes it: `CN=alice, O=example`. */
  readonly subject: string;
  readonly fingerprint256: string;
}

/**
 * The certificate the peer of a TLS socket sent, or undefined when it sent none (or the socket
 * is gone). Read through the legacy getPeerCertificate(), never getPeerX509Certificate(): on a
 * server socket whose client sent a chain (leaf and CA, as a client with the CA in its context
 * does), Node 20.20.2's getPeerX509Certificate() leaks about 4 KiB of native memory per call,
 * garbage collection or not (measured: 24,000 calls grew RSS by 110 MiB; the legacy object stays
 * flat). The chaos soak found it as a worker growing 7 MiB a minute under --client-auth request.
 */
export function peerCertificate(socket: TLSSocket): PeerCertificate | undefined {
  const peer = socket.destroyed ? undefined : socket.getPeerCertificate();
  if (peer === undefined || peer === null || peer.fingerprint256 === undefined) return undefined;
  // The legacy subject is an object in the certificate's order; a repeated attribute is an array.
  const rdns = Object.entries(peer.subject ?? {}).flatMap(([type, value]) => (value === undefined ? [] : Array.isArray(value) ? value : [value]).map((v) => `${type}=${v}`));
  return { subject: rdns.join(', '), fingerprint256: peer.fingerprint256 };
}

/**
 * Node's text of a certificate's subjectAltName. A damaged extension is null on Node 20 and
 * throws when read on Node 24: null on both, so such a certificate has no names rather than
 * failing the load in a message naming no file.
 */
function subjectAltNameText(cert: X509Certificate): string | null | undefined {
  try {
    return cert.subjectAltName;
  } catch {
    return null;
  }
}

/** Leaf SANs as names: DNS names as they are, IPs canonical, anything else as `kind:value`. */
function parseSubjectAltName(text: string | null | undefined): string[] {
  return subjectAltNameEntries(text).map(({ kind, value }) => {
    if (kind === 'DNS') return value;
    if (kind === 'IP Address' && isIP(value) !== 0) return canonicalIp(value);
    return `${kind}:${value}`;
  });
}

/**
 * Splits Node's subjectAltName text (`DNS:a, IP Address:0:0:0:0:0:0:0:1`, the same on an
 * X509Certificate and a peer certificate) into entries. A value holding a comma or a quote
 * comes JSON-quoted (`DNS:"a,b"`), so a plain split on commas would cut it in two.
 */
export function subjectAltNameEntries(text: string | null | undefined): Array<{ kind: string; value: string }> {
  // Node gives null, not undefined, for an extension it can't decode (a damaged DER length).
  if (text === undefined || text === null) return [];
  const entries = text.match(/(?:[^,"]|"(?:[^"\\]|\\.)*")+/g) ?? [];
  return entries.flatMap((entry) => {
    const e = entry.trim();
    const colon = e.indexOf(':');
    if (colon === -1) return [];
    const raw = e.slice(colon + 1);
    return [{ kind: e.slice(0, colon), value: raw.startsWith('"') ? (JSON.parse(raw) as string) : raw }];
  });
}

function keyTypeOf(key: KeyObject): string {
  const details = key.asymmetricKeyDetails ?? {};
  switch (key.asymmetricKeyType) {
    case 'ec':
      return details.namedCurve === 'prime256v1' ? 'ecdsa-p256' : `ecdsa-${String(details.namedCurve)}`;
    case 'rsa':
      return `rsa-${String(details.modulusLength)}`;
    default:
      return String(key.asymmetricKeyType);
  }
}

/** SubjectPublicKeyInfo DER of a key (the public half of a private key). */
export function spkiOf(key: KeyObject): Buffer {
  const publicKey = key.type === 'private' ? createPublicKey(key) : key;
  return publicKey.export({ type: 'spki', format: 'der' });
}

/** An IP address as a SAN holds it: canonical form (`::1`), without a zone. */
export function canonicalIp(ip: string): string {
  const withoutZone = ip.replace(/%.*$/, ''); // a SAN has no room for an interface
  const family = isIP(withoutZone) === 6 ? 'ipv6' : 'ipv4';
  return new SocketAddress({ address: withoutZone, family }).address;
}

/** The PEM certificate blocks in a text, in order; text around them is ignored. */
export function splitPemCertificates(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}
