// Certificates for the test-peer scenarios (issue 15): one TLS server per scenario, each wrong in
// exactly one way, for TLS client test suites. Every leaf is issued fresh, with validity relative
// to `now`, so that `valid` verifies and `expired` is expired on any date; each differs from
// `valid` only in what its name says. Uses node-forge (through x509.ts): the daemon must call it in
// a child process, like issuing the local CA's leaf (src/certs/issuer-process.ts).
//
// What is kept in <certDir>/scenarios/ and why: the second ("untrusted") CA and the intermediate
// CA, because clients may save them (to show that trusting the untrusted CA fixes its scenario,
// or to pass the intermediate as -untrusted), and the rsa-1024 key, because RSA key generation
// is the one slow step. The leaves are not written: they are cheap (P-256 keys, native signing)
// and made again at every call, which is what keeps `expired` and `not-yet-valid` honest.

import { X509Certificate, createPrivateKey, generateKeyPair, type KeyObject } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { prepareCertDir, readCertDirFile, readPairFiles, requireGeneratedPair, syncDir, writeKeyFile, writePairFiles, type Pair } from '../certs/cert-dir';
import { spkiOf } from '../certs/inspect';
import { createCa, generateKey, pairOf } from '../certs/issue';
import { exportKey } from '../certs/tls-material';
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
  type SignatureHash,
  type Validity,
} from '../certs/x509';

export const SCENARIO_CERT_NAMES = [
  'valid',
  'expired',
  'not-yet-valid',
  'wrong-host',
  'self-signed',
  'untrusted-root',
  'incomplete-chain',
  'intermediate',
  'no-san',
  'sha1',
  'rsa-1024',
  'wrong-eku',
] as const;
export type ScenarioCertName = (typeof SCENARIO_CERT_NAMES)[number];

export interface ScenarioCert {
  readonly name: ScenarioCertName;
  /** PEM private key of the leaf. */
  readonly key: string;
  /** PEM leaf followed by whatever chain the scenario sends (what tls.createSecureContext `cert` wants). */
  readonly cert: string;
  readonly leaf: X509Certificate;
}

export interface ScenarioCertOptions {
  /** Holds the local CA (ca.pem, ca-key.pem); the scenarios' own files go to its scenarios/ folder. */
  readonly certDir: string;
  /** Scenario X is served as X.<domain>. */
  readonly domain: string;
  /** Clock for every validity period; default: the real time. */
  readonly now?: Date;
}

/** Files in <certDir>/scenarios/. */
export const SCENARIO_FILES = {
  dir: 'scenarios',
  untrustedCa: 'untrusted-ca.pem',
  untrustedCaKey: 'untrusted-ca-key.pem',
  intermediateCa: 'intermediate-ca.pem',
  intermediateCaKey: 'intermediate-ca-key.pem',
  rsa1024Key: 'rsa-1024-key.pem',
} as const;
const UNTRUSTED_CA_FILES = { cert: SCENARIO_FILES.untrustedCa, key: SCENARIO_FILES.untrustedCaKey } as const;
const INTERMEDIATE_CA_FILES = { cert: SCENARIO_FILES.intermediateCa, key: SCENARIO_FILES.intermediateCaKey } as const;

export const UNTRUSTED_CA_NAME = 'tls-echod untrusted CA';
export const INTERMEDIATE_CA_NAME = 'tls-echod scenario intermediate CA';
/**
 * The only name in wrong-host's certificate. `.invalid` is reserved (RFC 2606, RFC 6761 6.4): it
 * never resolves and nobody can own it, so whatever name a client connects with, this can't match.
 */
export const WRONG_HOST_NAME = 'other.invalid';

const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;
/** A leaf starts an hour back, so a client whose clock is a little behind still accepts `valid`. */
const LEAF_BACKDATE_MS = HOUR_MS;
const LEAF_DAYS = 90;
/** expired: ended a day ago, after 29 days of validity. */
const EXPIRED = { startDaysAgo: 30, endDaysAgo: 1 } as const;
/**
 * not-yet-valid starts 30 days ahead, not one: leaves are issued when the daemon starts, and a
 * daemon that runs for a few days must still serve a certificate that is not valid yet.
 */
const NOT_YET_VALID_START_DAYS = 30;
const UNTRUSTED_CA_YEARS = 10;

const generateKeyPairAsync = promisify(generateKeyPair);

// ---------------------------------------------------------------------------------------------
// Public API

/**
 * Makes every scenario certificate from the local CA in opts.certDir (CertError when it has none),
 * in SCENARIO_CERT_NAMES order: the leaves new at each call, the untrusted CA, the intermediate CA
 * and the rsa-1024 key kept in <certDir>/scenarios/ while they can serve. Calls on one certDir
 * must not overlap: two could each write the same file.
 */
export async function ensureScenarioCertificates(opts: ScenarioCertOptions): Promise<ScenarioCert[]> {
  const now = opts.now ?? new Date();
  const localCa = requireGeneratedPair(opts.certDir, 'ca');
  const dir = join(opts.certDir, SCENARIO_FILES.dir);
  prepareCertDir(dir);
  const leafValidity = validityFrom(now, -LEAF_BACKDATE_MS, LEAF_DAYS * DAY_MS);
  const kept = {
    untrustedCa: await ensureUntrustedCa(dir, now, leafValidity),
    intermediateCa: await ensureIntermediateCa(dir, localCa, now, leafValidity),
    rsa1024Key: await ensureRsa1024Key(dir),
  };
  syncDir(dir);
  const context: LeafContext = { domain: opts.domain, now, localCa, leafValidity, ...kept };
  const certs: ScenarioCert[] = [];
  for (const name of SCENARIO_CERT_NAMES) certs.push(await issueScenario(leafSpec(name, context)));
  return certs;
}

// ---------------------------------------------------------------------------------------------
// What each scenario is: `valid`, with the one thing its name says changed

interface LeafContext {
  readonly domain: string;
  readonly now: Date;
  readonly localCa: Pair;
  readonly leafValidity: Validity;
  readonly untrustedCa: Pair;
  readonly intermediateCa: Pair;
  readonly rsa1024Key: KeyObject;
}

interface LeafSpec {
  readonly name: ScenarioCertName;
  readonly commonName: string;
  /** undefined: no subjectAltName extension at all. */
  readonly sans: readonly string[] | undefined;
  readonly purposes: readonly string[];
  readonly validity: Validity;
  /** The leaf's own key; undefined: a new P-256 key. */
  readonly key: KeyObject | undefined;
  /** undefined: self-signed by the leaf's own key. */
  readonly issuer: Pair | undefined;
  readonly hash: SignatureHash;
  /** Certificates sent after the leaf. */
  readonly chain: readonly Pair[];
}

function leafSpec(name: ScenarioCertName, context: LeafContext): LeafSpec {
  const host = `${name}.${context.domain}`;
  const valid: LeafSpec = {
    name,
    commonName: host,
    sans: [host],
    purposes: [OID.serverAuth],
    validity: context.leafValidity,
    key: undefined,
    issuer: context.localCa,
    hash: 'sha256',
    // The local CA is not sent, as with the daemon's own leaf (local-ca.ts): clients that trust it have it.
    chain: [],
  };
  switch (name) {
    case 'valid':
      return valid;
    case 'expired':
      return { ...valid, validity: validityFrom(context.now, -EXPIRED.startDaysAgo * DAY_MS, (EXPIRED.startDaysAgo - EXPIRED.endDaysAgo) * DAY_MS) };
    case 'not-yet-valid':
      return { ...valid, validity: validityFrom(context.now, NOT_YET_VALID_START_DAYS * DAY_MS, LEAF_DAYS * DAY_MS) };
    case 'wrong-host':
      return { ...valid, commonName: WRONG_HOST_NAME, sans: [WRONG_HOST_NAME] };
    case 'self-signed':
      return { ...valid, issuer: undefined };
    case 'untrusted-root':
      // The root is sent, as badssl.com's untrusted-root does and as a server set up with a private
      // CA usually does: then the client sees the whole chain and refuses only its root ("self-signed
      // certificate in certificate chain"), which tells this scenario apart from incomplete-chain.
      return { ...valid, issuer: context.untrustedCa, chain: [context.untrustedCa] };
    case 'incomplete-chain':
      return { ...valid, issuer: context.intermediateCa };
    case 'intermediate':
      return { ...valid, issuer: context.intermediateCa, chain: [context.intermediateCa] };
    case 'no-san':
      return { ...valid, sans: undefined };
    case 'sha1':
      return { ...valid, hash: 'sha1' };
    case 'rsa-1024':
      return { ...valid, key: context.rsa1024Key };
    case 'wrong-eku':
      return { ...valid, purposes: [OID.clientAuth] };
  }
}

async function issueScenario(spec: LeafSpec): Promise<ScenarioCert> {
  const key = spec.key ?? (await generateKey('ecdsa-p256'));
  const spki = spkiOf(key);
  const subject = distinguishedName(spec.commonName);
  const issuerSpki = spec.issuer === undefined ? spki : spkiOf(spec.issuer.cert.publicKey);
  // RSA key exchange (TLS 1.2 without ECDHE) encrypts the premaster secret to an RSA leaf's key.
  const usage = KEY_USAGE.digitalSignature | (key.asymmetricKeyType === 'rsa' ? KEY_USAGE.keyEncipherment : 0);
  const der = signCertificate({
    issuer: spec.issuer === undefined ? subject : subjectNameOf(spec.issuer.cert),
    subject,
    validity: spec.validity,
    spki,
    signer: spec.issuer?.key ?? key,
    hash: spec.hash,
    extensions: [
      basicConstraintsExtension({ ca: false }),
      keyUsageExtension(usage),
      extKeyUsageExtension(spec.purposes),
      ...(spec.sans === undefined ? [] : [subjectAltNameExtension(spec.sans)]),
      subjectKeyIdentifierExtension(keyIdentifier(spki)),
      authorityKeyIdentifierExtension(keyIdentifier(issuerSpki)),
    ],
  });
  const leaf = pairOf(der, key);
  return {
    name: spec.name,
    key: leaf.keyPem,
    cert: [leaf.certPem, ...spec.chain.map((c) => c.certPem)].join(''),
    leaf: leaf.cert,
  };
}

// ---------------------------------------------------------------------------------------------
// What is kept in <certDir>/scenarios/

/** The untrusted CA, kept while it is ours and outlasts a new leaf; else a new one (P-256, 10 years). */
async function ensureUntrustedCa(dir: string, now: Date, leafValidity: Validity): Promise<Pair> {
  const kept = readPairFiles(dir, UNTRUSTED_CA_FILES).pair;
  if (kept !== undefined && kept.cert.ca && isIssuedBy(kept.cert, kept.cert) && covers(kept.cert, now, leafValidity)) return kept;
  const notBefore = new Date(leafValidity.notBefore);
  const notAfter = new Date(notBefore);
  notAfter.setUTCFullYear(notAfter.getUTCFullYear() + UNTRUSTED_CA_YEARS);
  const ca = await createCa('ecdsa-p256', { notBefore, notAfter }, { commonName: UNTRUSTED_CA_NAME });
  writePairFiles(dir, UNTRUSTED_CA_FILES, ca);
  return ca;
}

/**
 * The intermediate CA, kept while the current local CA issued it and it outlasts a new leaf; else
 * a new one (P-256), valid as long as the local CA. Note: a local CA made by `cert generate` has
 * pathLen 0, which forbids any intermediate below it, so clients refuse `intermediate` too
 * ("path length constraint exceeded") until the local CA allows one.
 */
async function ensureIntermediateCa(dir: string, localCa: Pair, now: Date, leafValidity: Validity): Promise<Pair> {
  const kept = readPairFiles(dir, INTERMEDIATE_CA_FILES).pair;
  if (kept !== undefined && kept.cert.ca && isIssuedBy(kept.cert, localCa.cert) && covers(kept.cert, now, leafValidity)) return kept;
  const validity = { notBefore: leafValidity.notBefore, notAfter: new Date(localCa.cert.validTo) };
  const intermediate = await createCa('ecdsa-p256', validity, { commonName: INTERMEDIATE_CA_NAME, issuer: localCa });
  writePairFiles(dir, INTERMEDIATE_CA_FILES, intermediate);
  return intermediate;
}

/** The rsa-1024 leaf's key, kept across calls: the only RSA key the scenarios need, and the slow one to make. */
async function ensureRsa1024Key(dir: string): Promise<KeyObject> {
  const text = readCertDirFile(dir, SCENARIO_FILES.rsa1024Key);
  if (text !== undefined) {
    try {
      const key = createPrivateKey(text);
      if (key.asymmetricKeyType === 'rsa' && key.asymmetricKeyDetails?.modulusLength === 1024) return key;
    } catch {
      // not a key: make a new one below
    }
  }
  const { privateKey } = await generateKeyPairAsync('rsa', { modulusLength: 1024 });
  writeKeyFile(dir, SCENARIO_FILES.rsa1024Key, exportKey(privateKey));
  return privateKey;
}

/** True when `cert` is valid at `now` and until the end of a leaf issued now. */
function covers(cert: X509Certificate, now: Date, leafValidity: Validity): boolean {
  return new Date(cert.validFrom) <= now && leafValidity.notAfter <= new Date(cert.validTo);
}

function isIssuedBy(cert: X509Certificate, issuer: X509Certificate): boolean {
  return cert.checkIssued(issuer) && cert.verify(issuer.publicKey);
}

/** `now + startMs` for `lengthMs`, to the whole second an ASN.1 time holds. */
function validityFrom(now: Date, startMs: number, lengthMs: number): Validity {
  const notBefore = new Date(Math.floor((now.getTime() + startMs) / 1000) * 1000);
  return { notBefore, notAfter: new Date(notBefore.getTime() + lengthMs) };
}
