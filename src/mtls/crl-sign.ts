// Making a CRL (RFC 5280 section 5): a v2 TBSCertList built with x509.ts's ASN.1 builders and
// signed the way certificates are (ECDSA or RSA with SHA-256, by the CA's key). Loads
// node-forge, so revoke.ts imports it only when it signs, and the daemon signs in a child
// process (crl-process.ts); reading a CRL is crl.ts.

import type { KeyObject, X509Certificate } from 'node:crypto';
import { spkiOf } from '../certs/inspect';
import {
  asn1Time,
  authorityKeyIdentifierExtension,
  explicit,
  extension,
  integer,
  keyIdentifier,
  sequence,
  signatureAlgorithm,
  signed,
  subjectNameOf,
} from '../certs/x509';
import { CRL_NUMBER_OID, crlPem, type RevokedEntry } from './crl';
import { serialValue } from './serial';

export interface CrlSpec {
  /** The CA certificate: its subject becomes the CRL's issuer, its key id the authority key id. */
  readonly caCert: X509Certificate;
  /** The CA's private key, which signs. */
  readonly caKey: KeyObject;
  readonly thisUpdate: Date;
  readonly nextUpdate: Date;
  readonly revoked: readonly RevokedEntry[];
  /** The CRL Number: must grow with every CRL the CA issues (RFC 5280 5.2.3). */
  readonly number: bigint;
}

/** A signed v2 CRL as PEM. */
export function signCrl(spec: CrlSpec): string {
  const algorithm = signatureAlgorithm(spec.caKey);
  const entries = spec.revoked.map((entry) => sequence([integer(integerBytes(serialValue(entry.serial))), asn1Time(entry.revokedAt)]));
  const tbs = sequence([
    integer(Buffer.from([1])), // v2: needed for extensions
    algorithm,
    subjectNameOf(spec.caCert), // copied, not rebuilt: a verifier matches it to the CA's subject byte for byte
    asn1Time(spec.thisUpdate),
    asn1Time(spec.nextUpdate),
    // RFC 5280 5.1.2.6: with no revoked certificates the list is absent, not empty.
    ...(entries.length > 0 ? [sequence(entries)] : []),
    explicit(
      0,
      sequence([
        authorityKeyIdentifierExtension(keyIdentifier(spkiOf(spec.caCert.publicKey))),
        extension(CRL_NUMBER_OID, false, integer(integerBytes(spec.number))),
      ]),
    ),
  ]);
  return crlPem(signed(tbs, algorithm, spec.caKey));
}

/** The minimal two's complement content octets of an INTEGER. */
function integerBytes(value: bigint): Buffer {
  if (value < 0n) {
    // Bytes needed so that the top bit is set: add 2^(8n) to get the unsigned pattern.
    let bytes = 1;
    while (-value > 1n << BigInt(bytes * 8 - 1)) bytes++;
    const pattern = (1n << BigInt(bytes * 8)) + value;
    return Buffer.from(pattern.toString(16).padStart(bytes * 2, '0'), 'hex');
  }
  let hex = value.toString(16);
  if (hex.length % 2 === 1) hex = `0${hex}`;
  // A leading zero byte keeps a value whose top bit is set from reading as negative.
  if (parseInt(hex.slice(0, 2), 16) >= 0x80) hex = `00${hex}`;
  return Buffer.from(hex, 'hex');
}
