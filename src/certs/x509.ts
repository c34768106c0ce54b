// Building and signing X.509 certificates (RFC 5280) in DER. The structure is built with
// node-forge's ASN.1 tools and signed by node:crypto: forge's certificate API can't make ECDSA
// certificates and its RSA is pure JS (seconds per key), while node:crypto signs natively.
// forge works on "binary" (latin1) strings; everything here takes and returns Buffers.

import { createHash, randomBytes, sign, type KeyObject, type X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import forge from 'node-forge';
import { addressBytes } from '../config/cidr';
import { CertError } from '../errors';

/** X.520 upper bound on a CommonName; longer ones are rejected by strict parsers. */
const MAX_COMMON_NAME = 64;

/** Object identifiers used in the certificates we issue. */
export const OID = {
  commonName: '2.5.4.3',
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  sha256WithRsa: '1.2.840.113549.1.1.11',
  ecdsaWithSha1: '1.2.840.10045.4.1',
  sha1WithRsa: '1.2.840.113549.1.1.5',
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  subjectAltName: '2.5.29.17',
  subjectKeyIdentifier: '2.5.29.14',
  authorityKeyIdentifier: '2.5.29.35',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
} as const;

/** KeyUsage bits as they sit in the first byte of the BIT STRING (bit 0 is the most significant). */
export const KEY_USAGE = { digitalSignature: 0x80, keyEncipherment: 0x20, keyCertSign: 0x04, cRLSign: 0x02 } as const;

/** A certificate's validity period; an ASN.1 time holds whole seconds only. */
export interface Validity {
  readonly notBefore: Date;
  readonly notAfter: Date;
}

/**
 * The digest a certificate is signed with. SHA-256 always, except for the `sha1` test-peer
 * scenario (src/scenarios), which serves a SHA-1 signature on purpose for clients to refuse.
 */
export type SignatureHash = 'sha1' | 'sha256';

type Asn1 = forge.asn1.Asn1;
const { Class, Type } = forge.asn1;

export interface CertificateSpec {
  readonly issuer: Asn1;
  readonly subject: Asn1;
  readonly validity: Validity;
  /** SubjectPublicKeyInfo DER of the certified key. */
  readonly spki: Buffer;
  /** Private key of the issuer. */
  readonly signer: KeyObject;
  readonly extensions: readonly Asn1[];
  /** Default 'sha256'. */
  readonly hash?: SignatureHash;
}

/** Builds the TBSCertificate (v3, random serial), signs it with spec.hash (SHA-256) by spec.signer, returns the certificate DER. */
export function signCertificate(spec: CertificateSpec): Buffer {
  const hash = spec.hash ?? 'sha256';
  const algorithm = signatureAlgorithm(spec.signer, hash);
  const tbs = sequence([
    explicit(0, integer(Buffer.from([2]))), // v3, needed for extensions
    integer(randomSerial()),
    algorithm,
    spec.issuer,
    sequence([asn1Time(spec.validity.notBefore), asn1Time(spec.validity.notAfter)]),
    spec.subject,
    parseDer(spec.spki),
    explicit(3, sequence([...spec.extensions])),
  ]);
  return signed(tbs, algorithm, spec.signer, hash);
}

/**
 * Signs a to-be-signed structure (a TBSCertificate, a TBSCertList) with `hash` (SHA-256) and
 * returns the DER of SEQUENCE { tbs, algorithm, signature }. `algorithm` must be
 * signatureAlgorithm(signer, hash), the same one the tbs names inside.
 */
export function signed(tbs: Asn1, algorithm: Asn1, signer: KeyObject, hash: SignatureHash = 'sha256'): Buffer {
  // ECDSA signatures come out DER-encoded (dsaEncoding defaults to 'der'), RSA ones PKCS#1 v1.5: both as X.509 wants.
  const signature = sign(hash, toDer(tbs), signer);
  return toDer(sequence([tbs, algorithm, bitString(signature)]));
}

/** The AlgorithmIdentifier for signing with `hash` (SHA-256) by `signer` (ECDSA or RSA); CertError for another key type. */
export function signatureAlgorithm(signer: KeyObject, hash: SignatureHash = 'sha256'): Asn1 {
  switch (signer.asymmetricKeyType) {
    case 'ec':
      // RFC 5758 (and RFC 3279 for SHA-1): parameters absent, not NULL
      return sequence([oid(hash === 'sha1' ? OID.ecdsaWithSha1 : OID.ecdsaWithSha256)]);
    case 'rsa':
      // RFC 4055 (and RFC 3279 for SHA-1): NULL
      return sequence([oid(hash === 'sha1' ? OID.sha1WithRsa : OID.sha256WithRsa), primitive(Type.NULL, Buffer.alloc(0))]);
    default:
      throw new CertError(`can't sign with a ${String(signer.asymmetricKeyType)} key (use --key-type ecdsa-p256, rsa-2048 or rsa-3072)`);
  }
}

/** 16 random bytes, positive (top bit clear) and without a leading zero byte, so DER keeps all 16. */
function randomSerial(): Buffer {
  const serial = randomBytes(16);
  serial[0] = (serial[0]! & 0x7f) || 0x01;
  return serial;
}

/** A Time (RFC 5280 4.1.2.5): whole seconds, UTC. */
export function asn1Time(date: Date): Asn1 {
  // RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050 on.
  return date.getUTCFullYear() < 2050
    ? forge.asn1.create(Class.UNIVERSAL, Type.UTCTIME, false, forge.asn1.dateToUtcTime(date))
    : forge.asn1.create(Class.UNIVERSAL, Type.GENERALIZEDTIME, false, forge.asn1.dateToGeneralizedTime(date));
}

/** A Name holding only a CommonName (UTF8String), cut to MAX_COMMON_NAME characters. */
export function distinguishedName(commonName: string): Asn1 {
  const cn = forge.util.encodeUtf8(commonName.slice(0, MAX_COMMON_NAME));
  return sequence([set([sequence([oid(OID.commonName), forge.asn1.create(Class.UNIVERSAL, Type.UTF8, false, cn)])])]);
}

/**
 * The CA's subject Name exactly as encoded in its certificate. Chain building matches a leaf's
 * issuer to it, and the CA may come from an earlier run under another host name, so it is
 * copied, not rebuilt. X509Certificate has no raw subject, hence forge's parser here.
 */
export function subjectNameOf(cert: X509Certificate): Asn1 {
  const tbs = asChildren(parseDer(cert.raw))[0];
  const tbsFields = tbs === undefined ? [] : asChildren(tbs);
  // TBSCertificate: [0] version (absent in v1), serial, signature, issuer, validity, subject, ...
  const first = tbsFields[0];
  const offset = first !== undefined && first.tagClass === Class.CONTEXT_SPECIFIC ? 1 : 0;
  const subject = tbsFields[offset + 4];
  if (subject === undefined) throw new CertError('CA certificate has no subject name');
  return subject;
}

// Extensions: each builder returns one Extension ready for CertificateSpec.extensions.

/** pathLen (CAs only, default 0: the CA signs leaves only) counts the intermediates allowed below; null: no limit. */
export function basicConstraintsExtension({ ca, pathLen = 0 }: { ca: boolean; pathLen?: number | null }): Asn1 {
  // cA FALSE is the DER default, so a leaf's value is an empty SEQUENCE.
  const caFields = [primitive(Type.BOOLEAN, Buffer.from([0xff]))];
  if (pathLen !== null) {
    if (!Number.isInteger(pathLen) || pathLen < 0 || pathLen > 127) throw new CertError(`pathLen ${pathLen}: expected 0..127`);
    caFields.push(integer(Buffer.from([pathLen]))); // 0..127: one content octet, no sign byte needed
  }
  const value = ca ? sequence(caFields) : sequence([]);
  return extension(OID.basicConstraints, true, value);
}

export function keyUsageExtension(bits: number): Asn1 {
  return extension(OID.keyUsage, true, bitString(Buffer.from([bits]), trailingZeroBits(bits)));
}

/** DER drops trailing zero bits of a named bit list and says how many are unused. */
function trailingZeroBits(byte: number): number {
  let n = 0;
  while (n < 8 && (byte & (1 << n)) === 0) n++;
  return n;
}

export function extKeyUsageExtension(purposes: readonly string[]): Asn1 {
  return extension(OID.extKeyUsage, false, sequence(purposes.map(oid)));
}

export function subjectAltNameExtension(names: readonly string[]): Asn1 {
  // GeneralName is IMPLICIT tagged: dNSName [2] IA5String, iPAddress [7] OCTET STRING (4 or 16 bytes).
  const generalNames = names.map((name) =>
    isIP(name) !== 0 ? contextPrimitive(7, addressBytes(name)) : contextPrimitive(2, Buffer.from(name, 'ascii')),
  );
  return extension(OID.subjectAltName, false, sequence(generalNames));
}

export function subjectKeyIdentifierExtension(keyId: Buffer): Asn1 {
  return extension(OID.subjectKeyIdentifier, false, primitive(Type.OCTETSTRING, keyId));
}

export function authorityKeyIdentifierExtension(keyId: Buffer): Asn1 {
  return extension(OID.authorityKeyIdentifier, false, sequence([contextPrimitive(0, keyId)]));
}

/** An Extension: its OID, the critical flag when set (FALSE is the DER default, so left out), the value's DER. */
export function extension(id: string, critical: boolean, value: Asn1): Asn1 {
  const fields = [oid(id)];
  if (critical) fields.push(primitive(Type.BOOLEAN, Buffer.from([0xff])));
  fields.push(primitive(Type.OCTETSTRING, toDer(value)));
  return sequence(fields);
}

/**
 * RFC 5280 4.2.1.2 method (1): SHA-1 of the subjectPublicKey BIT STRING's bits. SHA-1 is fine
 * here: a key identifier names a key for chain building, it secures nothing.
 */
export function keyIdentifier(spki: Buffer): Buffer {
  const subjectPublicKey = asChildren(parseDer(spki))[1];
  if (subjectPublicKey === undefined || typeof subjectPublicKey.value !== 'string') throw new CertError('malformed SubjectPublicKeyInfo');
  const bits = Buffer.from(subjectPublicKey.value, 'latin1').subarray(1); // first byte: count of unused bits
  return createHash('sha1').update(bits).digest();
}

// ASN.1 builders, exported for crl-sign.ts (a CRL is built from the same parts).

export function sequence(items: Asn1[]): Asn1 {
  return forge.asn1.create(Class.UNIVERSAL, Type.SEQUENCE, true, items);
}

function set(items: Asn1[]): Asn1 {
  return forge.asn1.create(Class.UNIVERSAL, Type.SET, true, items);
}

function primitive(type: forge.asn1.Type, bytes: Buffer): Asn1 {
  return forge.asn1.create(Class.UNIVERSAL, type, false, bytes.toString('latin1'));
}

/** An INTEGER from its content octets (two's complement, minimal: the caller encodes). */
export function integer(bytes: Buffer): Asn1 {
  return primitive(Type.INTEGER, bytes);
}

function oid(dotted: string): Asn1 {
  return forge.asn1.create(Class.UNIVERSAL, Type.OID, false, forge.asn1.oidToDer(dotted).getBytes());
}

function bitString(bytes: Buffer, unusedBits = 0): Asn1 {
  return primitive(Type.BITSTRING, Buffer.concat([Buffer.from([unusedBits]), bytes]));
}

/** [tag] EXPLICIT around `inner`. */
export function explicit(tag: number, inner: Asn1): Asn1 {
  return forge.asn1.create(Class.CONTEXT_SPECIFIC, tag as forge.asn1.Type, true, [inner]);
}

function contextPrimitive(tag: number, bytes: Buffer): Asn1 {
  return forge.asn1.create(Class.CONTEXT_SPECIFIC, tag as forge.asn1.Type, false, bytes.toString('latin1'));
}

function toDer(node: Asn1): Buffer {
  return Buffer.from(forge.asn1.toDer(node).getBytes(), 'latin1');
}

// @types/node-forge only knows the old boolean `strict` argument. Without decodeBitStrings: false,
// forge guesses whether a BIT STRING holds ASN.1 (an RSA key does) and replaces its bytes with nodes.
const fromDerWithOptions = forge.asn1.fromDer as unknown as (bytes: string, options: { decodeBitStrings: boolean }) => Asn1;

function parseDer(der: Buffer): Asn1 {
  return fromDerWithOptions(der.toString('latin1'), { decodeBitStrings: false });
}

function asChildren(node: Asn1): Asn1[] {
  return Array.isArray(node.value) ? node.value : [];
}
