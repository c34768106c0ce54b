// Certificates: either the PEM files the user gives (--cert, --key, --chain), or a local CA and
// a leaf signed by it, generated into --cert-dir, reused while valid and renewed with the same
// CA, so that clients which trust ca.pem keep trusting across renewals.
//
// Certificates are built with node-forge's ASN.1 tools and signed by node:crypto: forge's
// certificate API can't make ECDSA certificates and its RSA is pure JS (seconds per key), while
// node:crypto makes keys natively. Every parse and check goes through node:crypto's
// X509Certificate, i.e. OpenSSL, the same code that will serve the certificate.

import { X509Certificate, createHash, createPrivateKey, createPublicKey, generateKeyPair, randomBytes, sign, type KeyObject } from 'node:crypto';
import { chmodSync, closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { SocketAddress, isIP } from 'node:net';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import forge from 'node-forge';
import { addressBytes } from '../config/cidr';
import type { KeyType } from '../config/config';
import { CertError, EchodError, systemErrorCode } from '../errors';

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

export interface TlsMaterial {
  /** PEM private key of the leaf. */
  key: string;
  /** PEM leaf followed by the chain (what tls.createSecureContext `cert` wants). */
  cert: string;
  /** PEM CA certificate when self-generated (or the first chain certificate if given), for display. */
  ca: string | undefined;
  leaf: CertInfo;
  caInfo: CertInfo | undefined;
  source: 'generated' | 'given';
}

export interface GenerateOptions {
  certDir: string;
  /** Extra SANs on top of defaultSans(). */
  sans: readonly string[];
  keyType: KeyType;
  /** Lifetime of a new leaf (days). */
  certDays: number;
  /** Clock for validity and renewal decisions; default: the real time. */
  now?: Date;
  /** Make a new CA and leaf even if the existing ones are usable. */
  force?: boolean;
}

/** generated: a new CA (and leaf); renewed: a new leaf signed by the existing CA. */
export type EnsureAction = 'reused' | 'generated' | 'renewed';

/** File names inside --cert-dir. */
export const CERT_DIR_FILES = { ca: 'ca.pem', caKey: 'ca-key.pem', leaf: 'server.pem', leafKey: 'server-key.pem' } as const;

const PAIR_FILES = {
  ca: { cert: CERT_DIR_FILES.ca, key: CERT_DIR_FILES.caKey },
  leaf: { cert: CERT_DIR_FILES.leaf, key: CERT_DIR_FILES.leafKey },
} as const;
type PairKind = keyof typeof PAIR_FILES;

const DIR_MODE = 0o700;
const KEY_MODE = 0o600;
const CERT_MODE = 0o644;

const DAY_MS = 86_400_000;
/** New certificates start this far back, so a client whose clock is a little behind accepts them. */
const BACKDATE_MS = 5 * 60_000;
const CA_YEARS = 10;
/** X.520 upper bound on a CommonName; longer ones are rejected by strict parsers. */
const MAX_COMMON_NAME = 64;

const OID = {
  commonName: '2.5.4.3',
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  sha256WithRsa: '1.2.840.113549.1.1.11',
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  subjectAltName: '2.5.29.17',
  subjectKeyIdentifier: '2.5.29.14',
  authorityKeyIdentifier: '2.5.29.35',
  serverAuth: '1.3.6.1.5.5.7.3.1',
} as const;

/** KeyUsage bits as they sit in the first byte of the BIT STRING (bit 0 is the most significant). */
const KEY_USAGE = { digitalSignature: 0x80, keyEncipherment: 0x20, keyCertSign: 0x04, cRLSign: 0x02 } as const;

/** A certificate with its private key, parsed and as PEM. */
interface Pair {
  readonly cert: X509Certificate;
  readonly key: KeyObject;
  readonly certPem: string;
  readonly keyPem: string;
}

/** A pair read from --cert-dir, or why it can't be used. */
type PairRead = { readonly pair: Pair; readonly problem?: undefined } | { readonly pair?: undefined; readonly problem: string };

interface Validity {
  readonly notBefore: Date;
  readonly notAfter: Date;
}

// ---------------------------------------------------------------------------------------------
// Public API

/** The SANs of a generated leaf: localhost, 127.0.0.1, ::1, this host's name, then `extra`; normalised and deduplicated. */
export function defaultSans(extra: readonly string[]): string[] {
  const names = ['localhost', '127.0.0.1', '::1', hostname(), ...extra].map(normalizeName).filter((n) => n !== '');
  return [...new Set(names)];
}

/**
 * Makes sure --cert-dir holds a usable CA and leaf covering defaultSans(opts.sans) and returns
 * them: reuses both while the leaf has more than 1/3 of its lifetime left, issues a new leaf from
 * the same CA otherwise, and makes a new CA only when the old one is missing, broken, expired or
 * would expire before a new leaf. Calls must not overlap (the supervisor owns certificate state):
 * two at once could each write a pair.
 */
export async function ensureCertificates(opts: GenerateOptions): Promise<{ material: TlsMaterial; action: EnsureAction }> {
  const now = opts.now ?? new Date();
  const names = defaultSans(opts.sans);
  prepareCertDir(opts.certDir);

  let ca = opts.force ? undefined : usableCa(readGeneratedPair(opts.certDir, 'ca'), now);
  if (ca !== undefined) {
    const leaf = reusableLeaf(readGeneratedPair(opts.certDir, 'leaf'), ca, names, opts.keyType, now);
    if (leaf !== undefined) {
      tightenKeyModes(opts.certDir);
      return { material: generatedMaterial(ca, leaf), action: 'reused' };
    }
  }

  const validity = leafValidity(now, opts.certDays);
  let action: EnsureAction = 'renewed';
  // A leaf that outlives its CA stops verifying when the CA expires: replace the CA now instead.
  if (ca === undefined || notAfterOf(ca.cert) < validity.notAfter) {
    ca = await createCa(opts.keyType, now);
    writePair(opts.certDir, 'ca', ca);
    action = 'generated';
  }
  const leaf = await createLeaf(ca, names, opts.keyType, validity);
  writePair(opts.certDir, 'leaf', leaf);
  syncDir(opts.certDir);
  return { material: generatedMaterial(ca, leaf), action };
}

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

  // A --cert file may carry its intermediates itself; they go before those from --chain.
  const intermediates = [...certs.slice(1), ...chain];
  const first = intermediates[0];
  return {
    key: exportKey(key),
    cert: [leaf, ...intermediates].map((c) => c.toString()).join(''),
    ca: first?.toString(),
    leaf: describeX509(leaf),
    caInfo: first === undefined ? undefined : describeX509(first),
    source: 'given',
  };
}

/** Reads the CA and leaf in --cert-dir without generating anything (for `cert show`); CertError if missing or broken. */
export function loadGeneratedCertificates(certDir: string): TlsMaterial {
  const ca = requireGeneratedPair(certDir, 'ca');
  const leaf = requireGeneratedPair(certDir, 'leaf');
  if (!isIssuedBy(leaf.cert, ca.cert)) {
    throw new CertError(
      `--cert-dir ${certDir}: ${CERT_DIR_FILES.leaf} was not issued by ${CERT_DIR_FILES.ca} (start the daemon to issue a new one)`,
    );
  }
  return generatedMaterial(ca, leaf);
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

/** True when at most 1/3 of the leaf's lifetime (notBefore to notAfter) is left at `now`. */
export function needsRenewal(leaf: CertInfo, now: Date = new Date()): boolean {
  const lifetimeMs = leaf.notAfter.getTime() - leaf.notBefore.getTime();
  return leaf.notAfter.getTime() - now.getTime() <= lifetimeMs / 3;
}

// ---------------------------------------------------------------------------------------------
// Deciding what in --cert-dir can be kept

function usableCa(read: PairRead, now: Date): Pair | undefined {
  if (read.pair === undefined) return undefined;
  const { cert } = read.pair;
  return cert.ca && isIssuedBy(cert, cert) && isValidAt(cert, now) ? read.pair : undefined;
}

function reusableLeaf(read: PairRead, ca: Pair, names: readonly string[], keyType: KeyType, now: Date): Pair | undefined {
  if (read.pair === undefined) return undefined;
  const { cert } = read.pair;
  const info = describeX509(cert);
  const usable =
    isIssuedBy(cert, ca.cert) &&
    // A changed --key-type takes effect at the next start; the CA stays, so trust does too.
    info.keyType === keyType &&
    names.every((name) => covers(cert, name)) &&
    isValidAt(cert, now) &&
    !needsRenewal(info, now);
  return usable ? read.pair : undefined;
}

function isIssuedBy(cert: X509Certificate, issuer: X509Certificate): boolean {
  return cert.checkIssued(issuer) && cert.verify(issuer.publicKey);
}

function isValidAt(cert: X509Certificate, now: Date): boolean {
  return notBeforeOf(cert) <= now && now <= notAfterOf(cert);
}

function covers(cert: X509Certificate, name: string): boolean {
  if (isIP(name) !== 0) return cert.checkIP(name) !== undefined;
  return cert.checkHost(name, { subject: 'never' }) !== undefined;
}

function generatedMaterial(ca: Pair, leaf: Pair): TlsMaterial {
  // The CA is not sent: clients that trust it have it already, and those that don't won't start to.
  return {
    key: leaf.keyPem,
    cert: leaf.certPem,
    ca: ca.certPem,
    leaf: describeX509(leaf.cert),
    caInfo: describeX509(ca.cert),
    source: 'generated',
  };
}

// ---------------------------------------------------------------------------------------------
// Issuing

const generateKeyPairAsync = promisify(generateKeyPair);

async function generateKey(keyType: KeyType): Promise<KeyObject> {
  const { privateKey } =
    keyType === 'ecdsa-p256'
      ? await generateKeyPairAsync('ec', { namedCurve: 'P-256' })
      : await generateKeyPairAsync('rsa', { modulusLength: keyType === 'rsa-2048' ? 2048 : 3072 });
  return privateKey;
}

async function createCa(keyType: KeyType, now: Date): Promise<Pair> {
  const key = await generateKey(keyType);
  const spki = spkiOf(key);
  const name = distinguishedName(`tls-echod local CA (${hostname()})`);
  const notBefore = backdated(now);
  const notAfter = new Date(notBefore);
  notAfter.setUTCFullYear(notAfter.getUTCFullYear() + CA_YEARS);
  const der = signCertificate({
    issuer: name,
    subject: name,
    validity: { notBefore, notAfter },
    spki,
    signer: key,
    extensions: [
      basicConstraintsExtension({ ca: true }),
      keyUsageExtension(KEY_USAGE.keyCertSign | KEY_USAGE.cRLSign),
      subjectKeyIdentifierExtension(keyIdentifier(spki)),
    ],
  });
  return pairOf(der, key);
}

async function createLeaf(ca: Pair, names: readonly string[], keyType: KeyType, validity: Validity): Promise<Pair> {
  const key = await generateKey(keyType);
  const spki = spkiOf(key);
  // RSA key exchange (TLS 1.2 without ECDHE) encrypts the premaster secret to the leaf's key.
  const usage = KEY_USAGE.digitalSignature | (keyType === 'ecdsa-p256' ? 0 : KEY_USAGE.keyEncipherment);
  const der = signCertificate({
    issuer: subjectNameOf(ca.cert),
    subject: distinguishedName(hostname() || 'localhost'),
    validity,
    spki,
    signer: ca.key,
    extensions: [
      basicConstraintsExtension({ ca: false }),
      keyUsageExtension(usage),
      extKeyUsageExtension([OID.serverAuth]),
      subjectAltNameExtension(names),
      subjectKeyIdentifierExtension(keyIdentifier(spki)),
      authorityKeyIdentifierExtension(keyIdentifier(spkiOf(ca.cert.publicKey))),
    ],
  });
  return pairOf(der, key);
}

function leafValidity(now: Date, certDays: number): Validity {
  const notBefore = backdated(now);
  return { notBefore, notAfter: new Date(notBefore.getTime() + certDays * DAY_MS) };
}

/** `now` minus BACKDATE_MS, to the whole second an ASN.1 time can hold, so CertInfo dates equal what was asked for. */
function backdated(now: Date): Date {
  return new Date(Math.floor((now.getTime() - BACKDATE_MS) / 1000) * 1000);
}

function pairOf(der: Buffer, key: KeyObject): Pair {
  const cert = new X509Certificate(der);
  return { cert, key, certPem: cert.toString(), keyPem: exportKey(key) };
}

function exportKey(key: KeyObject): string {
  return key.export({ type: 'pkcs8', format: 'pem' }).toString();
}

function spkiOf(key: KeyObject): Buffer {
  const publicKey = key.type === 'private' ? createPublicKey(key) : key;
  return publicKey.export({ type: 'spki', format: 'der' });
}

// ---------------------------------------------------------------------------------------------
// X.509 in ASN.1 (RFC 5280), with forge.asn1 nodes; forge works on "binary" (latin1) strings.

type Asn1 = forge.asn1.Asn1;
const { Class, Type } = forge.asn1;

interface CertificateSpec {
  readonly issuer: Asn1;
  readonly subject: Asn1;
  readonly validity: Validity;
  /** SubjectPublicKeyInfo DER of the certified key. */
  readonly spki: Buffer;
  /** Private key of the issuer. */
  readonly signer: KeyObject;
  readonly extensions: readonly Asn1[];
}

function signCertificate(spec: CertificateSpec): Buffer {
  const algorithm = signatureAlgorithm(spec.signer);
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
  const tbsDer = toDer(tbs);
  // ECDSA signatures come out DER-encoded (dsaEncoding defaults to 'der'), RSA ones PKCS#1 v1.5: both as X.509 wants.
  const signature = sign('sha256', tbsDer, spec.signer);
  return toDer(sequence([tbs, algorithm, bitString(signature)]));
}

function signatureAlgorithm(signer: KeyObject): Asn1 {
  switch (signer.asymmetricKeyType) {
    case 'ec':
      return sequence([oid(OID.ecdsaWithSha256)]); // RFC 5758: parameters absent, not NULL
    case 'rsa':
      return sequence([oid(OID.sha256WithRsa), primitive(Type.NULL, Buffer.alloc(0))]); // RFC 4055: NULL
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

function asn1Time(date: Date): Asn1 {
  // RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050 on.
  return date.getUTCFullYear() < 2050
    ? forge.asn1.create(Class.UNIVERSAL, Type.UTCTIME, false, forge.asn1.dateToUtcTime(date))
    : forge.asn1.create(Class.UNIVERSAL, Type.GENERALIZEDTIME, false, forge.asn1.dateToGeneralizedTime(date));
}

function distinguishedName(commonName: string): Asn1 {
  const cn = forge.util.encodeUtf8(commonName.slice(0, MAX_COMMON_NAME));
  return sequence([set([sequence([oid(OID.commonName), forge.asn1.create(Class.UNIVERSAL, Type.UTF8, false, cn)])])]);
}

/**
 * The CA's subject Name exactly as encoded in its certificate. Chain building matches a leaf's
 * issuer to it, and the CA may come from an earlier run under another host name, so it is
 * copied, not rebuilt. X509Certificate has no raw subject, hence forge's parser here.
 */
function subjectNameOf(cert: X509Certificate): Asn1 {
  const tbs = asChildren(parseDer(cert.raw))[0];
  const tbsFields = tbs === undefined ? [] : asChildren(tbs);
  // TBSCertificate: [0] version (absent in v1), serial, signature, issuer, validity, subject, ...
  const first = tbsFields[0];
  const offset = first !== undefined && first.tagClass === Class.CONTEXT_SPECIFIC ? 1 : 0;
  const subject = tbsFields[offset + 4];
  if (subject === undefined) throw new CertError('CA certificate has no subject name');
  return subject;
}

function basicConstraintsExtension({ ca }: { ca: boolean }): Asn1 {
  // cA FALSE is the DER default, so a leaf's value is an empty SEQUENCE. pathLen 0: the CA signs leaves only.
  const value = ca ? sequence([primitive(Type.BOOLEAN, Buffer.from([0xff])), integer(Buffer.from([0]))]) : sequence([]);
  return extension(OID.basicConstraints, true, value);
}

function keyUsageExtension(bits: number): Asn1 {
  return extension(OID.keyUsage, true, bitString(Buffer.from([bits]), trailingZeroBits(bits)));
}

/** DER drops trailing zero bits of a named bit list and says how many are unused. */
function trailingZeroBits(byte: number): number {
  let n = 0;
  while (n < 8 && (byte & (1 << n)) === 0) n++;
  return n;
}

function extKeyUsageExtension(purposes: readonly string[]): Asn1 {
  return extension(OID.extKeyUsage, false, sequence(purposes.map(oid)));
}

function subjectAltNameExtension(names: readonly string[]): Asn1 {
  // GeneralName is IMPLICIT tagged: dNSName [2] IA5String, iPAddress [7] OCTET STRING (4 or 16 bytes).
  const generalNames = names.map((name) =>
    isIP(name) !== 0 ? contextPrimitive(7, addressBytes(name)) : contextPrimitive(2, Buffer.from(name, 'ascii')),
  );
  return extension(OID.subjectAltName, false, sequence(generalNames));
}

function subjectKeyIdentifierExtension(keyId: Buffer): Asn1 {
  return extension(OID.subjectKeyIdentifier, false, primitive(Type.OCTETSTRING, keyId));
}

function authorityKeyIdentifierExtension(keyId: Buffer): Asn1 {
  return extension(OID.authorityKeyIdentifier, false, sequence([contextPrimitive(0, keyId)]));
}

function extension(id: string, critical: boolean, value: Asn1): Asn1 {
  const fields = [oid(id)];
  if (critical) fields.push(primitive(Type.BOOLEAN, Buffer.from([0xff])));
  fields.push(primitive(Type.OCTETSTRING, toDer(value)));
  return sequence(fields);
}

/**
 * RFC 5280 4.2.1.2 method (1): SHA-1 of the subjectPublicKey BIT STRING's bits. SHA-1 is fine
 * here: a key identifier names a key for chain building, it secures nothing.
 */
function keyIdentifier(spki: Buffer): Buffer {
  const subjectPublicKey = asChildren(parseDer(spki))[1];
  if (subjectPublicKey === undefined || typeof subjectPublicKey.value !== 'string') throw new CertError('malformed SubjectPublicKeyInfo');
  const bits = Buffer.from(subjectPublicKey.value, 'latin1').subarray(1); // first byte: count of unused bits
  return createHash('sha1').update(bits).digest();
}

function sequence(items: Asn1[]): Asn1 {
  return forge.asn1.create(Class.UNIVERSAL, Type.SEQUENCE, true, items);
}

function set(items: Asn1[]): Asn1 {
  return forge.asn1.create(Class.UNIVERSAL, Type.SET, true, items);
}

function primitive(type: forge.asn1.Type, bytes: Buffer): Asn1 {
  return forge.asn1.create(Class.UNIVERSAL, type, false, bytes.toString('latin1'));
}

function integer(bytes: Buffer): Asn1 {
  return primitive(Type.INTEGER, bytes);
}

function oid(dotted: string): Asn1 {
  return forge.asn1.create(Class.UNIVERSAL, Type.OID, false, forge.asn1.oidToDer(dotted).getBytes());
}

function bitString(bytes: Buffer, unusedBits = 0): Asn1 {
  return primitive(Type.BITSTRING, Buffer.concat([Buffer.from([unusedBits]), bytes]));
}

function explicit(tag: number, inner: Asn1): Asn1 {
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

// ---------------------------------------------------------------------------------------------
// Inspecting certificates (node:crypto)

function describeX509(cert: X509Certificate): CertInfo {
  return {
    subject: distinguishedNameText(cert.subject),
    issuer: distinguishedNameText(cert.issuer),
    sans: parseSubjectAltName(cert.subjectAltName),
    notBefore: notBeforeOf(cert),
    notAfter: notAfterOf(cert),
    fingerprint256: cert.fingerprint256,
    spkiPin: createHash('sha256').update(spkiOf(cert.publicKey)).digest('base64'),
    serial: cert.serialNumber,
    keyType: keyTypeOf(cert.publicKey),
  };
}

// Node 20 has no validFromDate; V8 parses OpenSSL's "Nov 22 00:56:52 2026 GMT" form.
function notBeforeOf(cert: X509Certificate): Date {
  return new Date(cert.validFrom);
}

function notAfterOf(cert: X509Certificate): Date {
  return new Date(cert.validTo);
}

/** Node gives one RDN per line. */
function distinguishedNameText(dn: string): string {
  return dn.split('\n').filter((rdn) => rdn !== '').join(', ');
}

/** Leaf SANs as names: DNS names as they are, IPs canonical, anything else as `kind:value`. */
function parseSubjectAltName(text: string | undefined): string[] {
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
export function subjectAltNameEntries(text: string | undefined): Array<{ kind: string; value: string }> {
  if (text === undefined) return [];
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

// ---------------------------------------------------------------------------------------------
// Names and addresses

/** DNS names lower-case without a trailing dot (neither belongs in a SAN); IPs canonical. */
function normalizeName(name: string): string {
  const trimmed = name.trim();
  if (isIP(trimmed) !== 0) return canonicalIp(trimmed);
  return trimmed.toLowerCase().replace(/\.$/, '');
}

function canonicalIp(ip: string): string {
  const withoutZone = ip.replace(/%.*$/, ''); // a SAN has no room for an interface
  const family = isIP(withoutZone) === 6 ? 'ipv6' : 'ipv4';
  return new SocketAddress({ address: withoutZone, family }).address;
}

// ---------------------------------------------------------------------------------------------
// Given files

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
      return new X509Certificate(block);
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

function splitPemCertificates(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

// ---------------------------------------------------------------------------------------------
// --cert-dir on disk

function requireGeneratedPair(certDir: string, kind: PairKind): Pair {
  const read = readGeneratedPair(certDir, kind);
  if (read.pair === undefined) {
    throw new CertError(
      `--cert-dir ${certDir}: ${read.problem} (start the daemon once to generate certificates there, or give the --cert-dir it uses)`,
    );
  }
  return read.pair;
}

function readGeneratedPair(certDir: string, kind: PairKind): PairRead {
  const files = PAIR_FILES[kind];
  const certText = readCertDirFile(certDir, files.cert);
  const keyText = readCertDirFile(certDir, files.key);
  if (certText === undefined) return { problem: `${files.cert}: no such file` };
  if (keyText === undefined) return { problem: `${files.key}: no such file` };
  let cert: X509Certificate;
  let key: KeyObject;
  try {
    cert = new X509Certificate(certText);
  } catch {
    return { problem: `${files.cert}: not a PEM certificate` };
  }
  try {
    key = createPrivateKey(keyText);
  } catch {
    return { problem: `${files.key}: not a PEM private key` };
  }
  if (!cert.checkPrivateKey(key)) return { problem: `${files.key} does not match ${files.cert}` };
  return { pair: { cert, key, certPem: cert.toString(), keyPem: exportKey(key) } };
}

/** The file's text, or undefined when it does not exist; other failures are not ours to paper over. */
function readCertDirFile(certDir: string, name: string): string | undefined {
  try {
    return readFileSync(join(certDir, name), 'utf8');
  } catch (err) {
    if (systemErrorCode(err) === 'ENOENT') return undefined;
    throw certDirError(certDir, `can't read ${name}`, err);
  }
}

function prepareCertDir(certDir: string): void {
  try {
    mkdirSync(certDir, { recursive: true, mode: DIR_MODE }); // fails with EEXIST on a file
    const stat = statSync(certDir);
    // Only our own directory: chmod on someone else's fails, and is not ours to decide.
    if (stat.uid === process.getuid?.() && (stat.mode & 0o777) !== DIR_MODE) chmodSync(certDir, DIR_MODE);
  } catch (err) {
    throw certDirError(certDir, "can't create or protect the directory", err);
  }
}

/** Key files copied in by hand may be readable by others; ours never are. */
function tightenKeyModes(certDir: string): void {
  for (const kind of ['ca', 'leaf'] as const) {
    const path = join(certDir, PAIR_FILES[kind].key);
    try {
      const stat = statSync(path);
      if ((stat.mode & 0o077) !== 0 && stat.uid === process.getuid?.()) chmodSync(path, KEY_MODE);
    } catch (err) {
      throw certDirError(certDir, `can't protect ${PAIR_FILES[kind].key}`, err);
    }
  }
}

function writePair(certDir: string, kind: PairKind, pair: Pair): void {
  // A crash between the two writes leaves a key that doesn't match its certificate, which the
  // next start detects and replaces.
  writeFileAtomic(certDir, PAIR_FILES[kind].key, pair.keyPem, KEY_MODE);
  writeFileAtomic(certDir, PAIR_FILES[kind].cert, pair.certPem, CERT_MODE);
}

/**
 * Writes `name` in `certDir` so that it is either the old file or the whole new one, never part:
 * a temp file in the same directory (rename is atomic only within a filesystem), created with its
 * final mode (a key is never readable by others, not even for an instant), fsynced, renamed over.
 */
function writeFileAtomic(certDir: string, name: string, data: string, mode: number): void {
  const tmp = join(certDir, `.${name}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  let fd: number | undefined;
  try {
    fd = openSync(tmp, 'wx', mode);
    writeFileSync(fd, data);
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, join(certDir, name));
  } catch (err) {
    if (fd !== undefined) closeSync(fd);
    rmSync(tmp, { force: true });
    throw certDirError(certDir, `can't write ${name}`, err);
  }
}

/** Makes the renames durable: without it a power cut can bring back the old directory entries. */
function syncDir(certDir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(certDir, 'r');
    fsyncSync(fd);
  } catch {
    // Some filesystems can't fsync a directory; the files themselves are complete either way.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

function certDirError(certDir: string, what: string, err: unknown): EchodError {
  const why = systemErrorCode(err) === 'EACCES' ? 'permission denied' : (err as Error).message;
  return new EchodError(
    'ECHOD_CERT_IO',
    `--cert-dir ${certDir}: ${what}: ${why} (make it writable by the user the daemon runs as, or choose another --cert-dir)`,
    { cause: err },
  );
}
