// Reading certificate revocation lists (RFC 5280 section 5), for mutual TLS: which client
// certificates a CA has revoked. The serving daemon reads CRLs, so this file uses node:crypto
// and der.ts only, never node-forge (docs/architecture.md, "What serving loads"); making a CRL
// is crl-sign.ts. Signature checking is here too: Node's X509Certificate has no CRL support.
//
//   CertificateList ::= SEQUENCE { tbsCertList, signatureAlgorithm, signatureValue BIT STRING }
//   TBSCertList ::= SEQUENCE { version INTEGER OPTIONAL (v2 only), signature, issuer Name,
//     thisUpdate Time, nextUpdate Time OPTIONAL,
//     revokedCertificates SEQUENCE OF SEQUENCE { serial, revocationDate, extensions OPTIONAL } OPTIONAL,
//     crlExtensions [0] EXPLICIT Extensions OPTIONAL }

import { verify, type X509Certificate } from 'node:crypto';
import { CertError } from '../errors';
import { TAG, childrenOf, contextTag, expectTag, integerValue, oidText, readDer, timeValue, type DerNode } from './der';
import { serialText } from './serial';

export interface RevokedEntry {
  /** Upper-case hex exactly as X509Certificate.serialNumber prints it for the same certificate. */
  readonly serial: string;
  readonly revokedAt: Date;
}

export interface CrlInfo {
  /** This one CRL as PEM. */
  readonly pem: string;
  /** DER of the issuer Name. */
  readonly issuerDer: Buffer;
  readonly thisUpdate: Date;
  readonly nextUpdate: Date | undefined;
  readonly revoked: readonly RevokedEntry[];
  /** The CRL Number extension. */
  readonly number: bigint | undefined;
}

/** The CRL Number extension (RFC 5280 5.2.3). */
export const CRL_NUMBER_OID = '2.5.29.20';

/** Signature algorithms a CRL may be signed with: the hash and the CA key type it needs. */
const SIGNATURE_ALGORITHMS: ReadonlyMap<string, { readonly hash: string; readonly keyType: string }> = new Map([
  ['1.2.840.10045.4.3.2', { hash: 'sha256', keyType: 'ec' }],
  ['1.2.840.10045.4.3.3', { hash: 'sha384', keyType: 'ec' }],
  ['1.2.840.10045.4.3.4', { hash: 'sha512', keyType: 'ec' }],
  ['1.2.840.113549.1.1.11', { hash: 'sha256', keyType: 'rsa' }],
  ['1.2.840.113549.1.1.12', { hash: 'sha384', keyType: 'rsa' }],
  ['1.2.840.113549.1.1.13', { hash: 'sha512', keyType: 'rsa' }],
]);

const PEM_CRL = /-----BEGIN X509 CRL-----([^-]*)-----END X509 CRL-----/g;

/** What checking a signature needs beyond CrlInfo; read again from CrlInfo.pem, so CrlInfo stays plain data that survives a copy. */
interface SignedParts {
  readonly tbsDer: Buffer;
  readonly innerAlgorithmDer: Buffer;
  readonly algorithmOid: string;
  readonly outerAlgorithmDer: Buffer;
  readonly signature: Buffer;
}

/**
 * Every CRL in a PEM text ("-----BEGIN X509 CRL-----" blocks), in order. CertError naming
 * `label` (e.g. "--client-crl /etc/x.pem") and what to do when there is none, or one doesn't parse.
 */
export function parseCrls(text: string, label: string): CrlInfo[] {
  const blocks = [...text.matchAll(PEM_CRL)].map((m) => m[1]!);
  if (blocks.length === 0) {
    const what = text.includes('-----BEGIN CERTIFICATE-----') ? 'holds a certificate, not a CRL' : 'holds no CRL';
    throw new CertError(
      `${label}: ${what} (expected -----BEGIN X509 CRL-----; make one with \`tls-echod cert revoke <name>\`, or give the PEM CRL your CA publishes)`,
    );
  }
  return blocks.map((body, i) => {
    const which = blocks.length === 1 ? 'the CRL' : `CRL ${i + 1} of ${blocks.length}`;
    try {
      return parseCrlDer(base64Body(body)).info;
    } catch (err) {
      if (!(err instanceof CertError)) throw err;
      throw new CertError(`${label}: ${which} is not a valid X.509 CRL (${err.message}; give a PEM CRL, as \`openssl crl\` prints it)`, {
        cause: err,
      });
    }
  });
}

/** The issuer Name DER a certificate's CRL must carry: the certificate's subject, read from X509Certificate.raw. */
export function subjectDerOf(cert: X509Certificate): Buffer {
  const tbs = childrenOf(expectTag(childrenOf(readDer(cert.raw))[0], TAG.sequence, 'TBSCertificate'));
  // TBSCertificate: [0] version (absent in v1), serial, signature, issuer, validity, subject, ...
  const offset = tbs[0]?.tag === contextTag(0) ? 1 : 0;
  return Buffer.from(expectTag(tbs[offset + 4], TAG.sequence, 'certificate subject').raw);
}

/**
 * Whether `ca` issued `crl`: the issuer Name equals ca's subject byte for byte and the signature
 * verifies with ca.publicKey (ECDSA or RSA PKCS#1 v1.5 with SHA-256/384/512; false for any other
 * algorithm, or a key of the wrong type).
 */
export function crlIssuedBy(crl: CrlInfo, ca: X509Certificate): boolean {
  let parsed: { info: CrlInfo; parts: SignedParts };
  try {
    parsed = parseCrlDer(base64Body(new RegExp(PEM_CRL.source).exec(crl.pem)?.[1] ?? ''));
  } catch {
    return false; // not a CRL this parser reads: not one we can call issued by anyone
  }
  const { info, parts } = parsed;
  if (!info.issuerDer.equals(subjectDerOf(ca))) return false;
  // RFC 5280 5.1.1.2: the signed and the unsigned algorithm must be the same.
  if (!parts.innerAlgorithmDer.equals(parts.outerAlgorithmDer)) return false;
  const algorithm = SIGNATURE_ALGORITHMS.get(parts.algorithmOid);
  if (algorithm === undefined || ca.publicKey.asymmetricKeyType !== algorithm.keyType) return false;
  try {
    // ECDSA signatures are DER (dsaEncoding's default), RSA ones PKCS#1 v1.5 (the default padding).
    return verify(algorithm.hash, parts.tbsDer, ca.publicKey, parts.signature);
  } catch {
    return false; // a signature OpenSSL can't even decode does not verify
  }
}

function base64Body(body: string): Buffer {
  const compact = body.replace(/\s+/g, '');
  // Buffer.from skips what isn't base64; a CRL with stray characters is a damaged CRL.
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(compact) || compact.length % 4 !== 0) throw new CertError('the PEM body is not base64');
  if (compact.length === 0) throw new CertError('the PEM block is empty');
  return Buffer.from(compact, 'base64');
}

function parseCrlDer(der: Buffer): { info: CrlInfo; parts: SignedParts } {
  const [tbsNode, outerAlgorithm, signatureNode, ...extra] = childrenOf(expectTag(readDer(der), TAG.sequence, 'CertificateList'));
  if (extra.length > 0) throw new CertError('CertificateList has more than 3 fields');
  const signatureBits = expectTag(signatureNode, TAG.bitString, 'signatureValue').value;
  if (signatureBits[0] !== 0) throw new CertError('signatureValue is not whole bytes');

  const fields = childrenOf(expectTag(tbsNode, TAG.sequence, 'TBSCertList'));
  let i = 0;
  if (fields[i]?.tag === TAG.integer) {
    if (integerValue(fields[i]!) !== 1n) throw new CertError('CRL version is not v2');
    i++;
  }
  const innerAlgorithm = expectTag(fields[i++], TAG.sequence, 'signature algorithm');
  const issuer = expectTag(fields[i++], TAG.sequence, 'issuer');
  const thisUpdate = timeValue(expectTime(fields[i++], 'thisUpdate'));
  let nextUpdate: Date | undefined;
  if (isTime(fields[i])) nextUpdate = timeValue(fields[i++]!);
  let revoked: RevokedEntry[] = [];
  if (fields[i]?.tag === TAG.sequence) revoked = childrenOf(fields[i++]!).map(revokedEntry);
  let number: bigint | undefined;
  if (fields[i]?.tag === contextTag(0)) number = crlNumber(expectTag(childrenOf(fields[i++]!)[0], TAG.sequence, 'crlExtensions'));
  if (i !== fields.length) throw new CertError(`unexpected field ${i + 1} in TBSCertList`);

  const info: CrlInfo = {
    pem: crlPem(der),
    issuerDer: Buffer.from(issuer.raw), // a copy: a view would keep the whole DER alive
    thisUpdate,
    nextUpdate,
    revoked,
    number,
  };
  const parts: SignedParts = {
    tbsDer: tbsNode!.raw,
    innerAlgorithmDer: innerAlgorithm.raw,
    algorithmOid: oidText(expectTag(childrenOf(innerAlgorithm)[0], TAG.oid, 'signature algorithm')),
    outerAlgorithmDer: expectTag(outerAlgorithm, TAG.sequence, 'signatureAlgorithm').raw,
    signature: signatureBits.subarray(1),
  };
  return { info, parts };
}

function revokedEntry(node: DerNode): RevokedEntry {
  // Entry extensions (reason code, invalidity date) are not needed to refuse a certificate.
  const [serial, date] = childrenOf(expectTag(node, TAG.sequence, 'revoked certificate'));
  return {
    serial: serialText(integerValue(expectTag(serial, TAG.integer, 'revoked serial'))),
    revokedAt: timeValue(expectTime(date, 'revocationDate')),
  };
}

/** The CRL Number from the CRL's Extensions, if it has one. */
function crlNumber(extensions: DerNode): bigint | undefined {
  for (const ext of childrenOf(extensions)) {
    const [id, ...rest] = childrenOf(expectTag(ext, TAG.sequence, 'extension'));
    if (oidText(expectTag(id, TAG.oid, 'extension id')) !== CRL_NUMBER_OID) continue;
    // extnValue is the last field; a critical BOOLEAN may come before it.
    const value = expectTag(rest[rest.length - 1], TAG.octetString, 'CRL Number value');
    return integerValue(readDer(value.value));
  }
  return undefined;
}

function isTime(node: DerNode | undefined): boolean {
  return node?.tag === TAG.utcTime || node?.tag === TAG.generalizedTime;
}

function expectTime(node: DerNode | undefined, what: string): DerNode {
  if (node === undefined) throw new CertError(`${what} is missing`);
  if (!isTime(node)) throw new CertError(`${what}: expected a time, found tag 0x${node.tag.toString(16)}`);
  return node;
}

/** A CRL's DER as PEM, 64 base64 characters a line. */
export function crlPem(der: Buffer): string {
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return ['-----BEGIN X509 CRL-----', ...lines, '-----END X509 CRL-----', ''].join('\n');
}
