// Issuing from the local CA: a new key, and a certificate built and signed by x509.ts with the
// extensions each kind needs (the CA, the server leaf, a client certificate). Loaded by local-ca.ts only when it must issue, so that a
// daemon reusing its certificates never loads node-forge.

import { X509Certificate, generateKeyPair, type KeyObject } from 'node:crypto';
import { hostname } from 'node:os';
import { promisify } from 'node:util';
import type { KeyType } from '../config/config';
import type { Pair } from './cert-dir';
import { spkiOf } from './inspect';
import { exportKey } from './tls-material';
import {
  KEY_USAGE,
  OID,
  authorityKeyIdentifierExtension,
  basicConstraintsExtension,
  distinguishedName,
  extKeyUsageExtension,
  keyIdentifier,
  keyUsageExtension,
  signCertificate,
  subjectAltNameExtension,
  subjectKeyIdentifierExtension,
  subjectNameOf,
  type Validity,
} from './x509';

const generateKeyPairAsync = promisify(generateKeyPair);

/** A new private key of `keyType`. */
export async function generateKey(keyType: KeyType): Promise<KeyObject> {
  const { privateKey } =
    keyType === 'ecdsa-p256'
      ? await generateKeyPairAsync('ec', { namedCurve: 'P-256' })
      : await generateKeyPairAsync('rsa', { modulusLength: keyType === 'rsa-2048' ? 2048 : 3072 });
  return privateKey;
}

export interface CaOptions {
  /** Default `tls-echod local CA (<hostname>)`. */
  readonly commonName?: string;
  /** Intermediates allowed below the CA (basicConstraints pathLen); default 0, null for no limit. */
  readonly pathLen?: number | null;
  /** The CA that signs it, making it an intermediate; default: self-signed (a root). */
  readonly issuer?: Pair;
}

/** A new CA: a self-signed root, or an intermediate signed by `options.issuer`. */
export async function createCa(keyType: KeyType, validity: Validity, options: CaOptions = {}): Promise<Pair> {
  const key = await generateKey(keyType);
  const spki = spkiOf(key);
  const name = distinguishedName(options.commonName ?? `tls-echod local CA (${hostname()})`);
  const issuer = options.issuer;
  const der = signCertificate({
    issuer: issuer === undefined ? name : subjectNameOf(issuer.cert),
    subject: name,
    validity,
    spki,
    signer: issuer?.key ?? key,
    extensions: [
      basicConstraintsExtension({ ca: true, pathLen: options.pathLen }),
      keyUsageExtension(KEY_USAGE.keyCertSign | KEY_USAGE.cRLSign),
      subjectKeyIdentifierExtension(keyIdentifier(spki)),
      ...(issuer === undefined ? [] : [authorityKeyIdentifierExtension(keyIdentifier(spkiOf(issuer.cert.publicKey)))]),
    ],
  });
  return pairOf(der, key);
}

/** A new server leaf for `names`, signed by `ca`. */
export async function createLeaf(ca: Pair, names: readonly string[], keyType: KeyType, validity: Validity): Promise<Pair> {
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

/** A Pair from a certificate's DER and its private key. */
export function pairOf(der: Buffer, key: KeyObject): Pair {
  const cert = new X509Certificate(der);
  return { cert, key, certPem: cert.toString(), keyPem: exportKey(key) };
}

/** A new client certificate for `name` (CN only, no SANs), signed by `ca`: EKU clientAuth and nothing else. */
export async function createClientCertificate(ca: Pair, name: string, keyType: KeyType, validity: Validity): Promise<Pair> {
  const key = await generateKey(keyType);
  const spki = spkiOf(key);
  const der = signCertificate({
    issuer: subjectNameOf(ca.cert),
    subject: distinguishedName(name),
    validity,
    spki,
    signer: ca.key,
    extensions: [
      basicConstraintsExtension({ ca: false }),
      // A TLS client signs (CertificateVerify) with any key type: no keyEncipherment.
      keyUsageExtension(KEY_USAGE.digitalSignature),
      extKeyUsageExtension([OID.clientAuth]),
      subjectKeyIdentifierExtension(keyIdentifier(spki)),
      authorityKeyIdentifierExtension(keyIdentifier(spkiOf(ca.cert.publicKey))),
    ],
  });
  return pairOf(der, key);
}
