// The local CA and its leaf: generated into --cert-dir, reused while valid and renewed with the
// same CA, so that clients which trust ca.pem keep trusting across renewals. This file decides
// what to keep and what to issue; issue.ts makes the keys and certificates (with x509.ts), cert-dir.ts
// reads and writes the files, inspect.ts reads the certificates.

import type { X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { hostname } from 'node:os';
import type { KeyType } from '../config/config';
import { CertError } from '../errors';
import {
  CERT_DIR_FILES,
  prepareCertDir,
  readGeneratedPair,
  requireGeneratedPair,
  syncDir,
  tightenKeyModes,
  writePair,
  type Pair,
  type PairRead,
} from './cert-dir';
import { canonicalIp, describeX509, notAfterOf, notBeforeOf, type CertInfo } from './inspect';
import { type TlsMaterial } from './tls-material';
import type { Validity } from './x509';

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

const DAY_MS = 86_400_000;
/** New certificates start this far back, so a client whose clock is a little behind accepts them. */
const BACKDATE_MS = 5 * 60_000;
const CA_YEARS = 10;

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
/** Intermediates the local CA allows below it (basicConstraints pathLen): the scenarios' one. */
export const LOCAL_CA_PATH_LEN = 1;

export async function ensureCertificates(opts: GenerateOptions): Promise<{ material: TlsMaterial; action: EnsureAction }> {
  const now = opts.now ?? new Date();
  const names = defaultSans(opts.sans);
  const kept = keepable(opts, now);
  if (kept.ca !== undefined && kept.leaf !== undefined) return { material: reuse(opts.certDir, kept.ca, kept.leaf), action: 'reused' };

  let ca = kept.ca;
  // The certificate builder (node-forge) is loaded only to issue; the daemon issues in a child
  // process (issuer-process.ts), so that it never holds it (docs/architecture.md).
  const { createCa, createLeaf } = await import('./issue');
  const validity = leafValidity(now, opts.certDays);
  let action: EnsureAction = 'renewed';
  // A leaf that outlives its CA stops verifying when the CA expires: replace the CA now instead.
  if (ca === undefined || notAfterOf(ca.cert) < validity.notAfter) {
    ca = await createCa(opts.keyType, caValidity(now), { pathLen: LOCAL_CA_PATH_LEN });
    writePair(opts.certDir, 'ca', ca);
    action = 'generated';
  }
  const leaf = await createLeaf(ca, names, opts.keyType, validity);
  writePair(opts.certDir, 'leaf', leaf);
  syncDir(opts.certDir);
  return { material: generatedMaterial(ca, leaf), action };
}

/**
 * The CA and leaf in --cert-dir when both can serve as they are (the CA valid, the leaf issued by
 * it, fresh, of the key type and naming every SAN); undefined when something must be issued.
 * Creates the directory if needed and tightens the key files' modes; never issues.
 */
export function reusableCertificates(opts: GenerateOptions, now: Date = opts.now ?? new Date()): TlsMaterial | undefined {
  const { ca, leaf } = keepable(opts, now);
  return ca !== undefined && leaf !== undefined ? reuse(opts.certDir, ca, leaf) : undefined;
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

/** True when at most 1/3 of the leaf's lifetime (notBefore to notAfter) is left at `now`. */
export function needsRenewal(leaf: CertInfo, now: Date = new Date()): boolean {
  const lifetimeMs = leaf.notAfter.getTime() - leaf.notBefore.getTime();
  return leaf.notAfter.getTime() - now.getTime() <= lifetimeMs / 3;
}

// ---------------------------------------------------------------------------------------------
// Deciding what in --cert-dir can be kept

/**
 * What in --cert-dir can be kept as it is (nothing with opts.force): the CA if it is usable, and
 * the leaf if that CA issued it and it can serve. Creates the directory if needed.
 */
function keepable(opts: GenerateOptions, now: Date): { ca: Pair | undefined; leaf: Pair | undefined } {
  prepareCertDir(opts.certDir);
  if (opts.force) return { ca: undefined, leaf: undefined };
  const ca = usableCa(readGeneratedPair(opts.certDir, 'ca'), now);
  const leaf = ca && reusableLeaf(readGeneratedPair(opts.certDir, 'leaf'), ca, defaultSans(opts.sans), opts.keyType, now);
  return { ca, leaf };
}

/** Serves a kept CA and leaf as they are; key files copied in by hand get their mode tightened. */
function reuse(certDir: string, ca: Pair, leaf: Pair): TlsMaterial {
  tightenKeyModes(certDir);
  return generatedMaterial(ca, leaf);
}

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
// Validity of what is issued

function caValidity(now: Date): Validity {
  const notBefore = backdated(now);
  const notAfter = new Date(notBefore);
  notAfter.setUTCFullYear(notAfter.getUTCFullYear() + CA_YEARS);
  return { notBefore, notAfter };
}

/** `certDays` days from a little before `now` (see backdated): what a new leaf or client certificate gets. */
export function leafValidity(now: Date, certDays: number): Validity {
  const notBefore = backdated(now);
  return { notBefore, notAfter: new Date(notBefore.getTime() + certDays * DAY_MS) };
}

/** `now` minus BACKDATE_MS, to the whole second an ASN.1 time can hold, so CertInfo dates equal what was asked for. */
function backdated(now: Date): Date {
  return new Date(Math.floor((now.getTime() - BACKDATE_MS) / 1000) * 1000);
}

// ---------------------------------------------------------------------------------------------
// Names

/** DNS names lower-case without a trailing dot (neither belongs in a SAN); IPs canonical. */
function normalizeName(name: string): string {
  const trimmed = name.trim();
  if (isIP(trimmed) !== 0) return canonicalIp(trimmed);
  return trimmed.toLowerCase().replace(/\.$/, '');
}
