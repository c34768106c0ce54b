// Revoking client certificates of the local CA: `tls-echod cert revoke <name|serial>` adds a
// certificate to <cert-dir>/client.crl, a CRL the CA signs, which a daemon that asks for client
// certificates checks them against. The list lives CRL_VALIDITY_DAYS and must be re-signed before
// then (crlNeedsResigning, resignClientCrl): OpenSSL refuses every client against an expired CRL,
// not just the revoked ones. Signing loads node-forge (crl-sign.ts), so it is imported only to
// sign; a serving daemon re-signs in a child process (crl-process.ts).

import { X509Certificate } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CertError, ConfigError, EchodError, systemErrorCode } from '../errors';
import { readCertDirFile, requireGeneratedPair, writePublicFile, type Pair } from '../certs/cert-dir';
import { describeX509 } from '../certs/inspect';
import { CLIENTS_DIR, isClientName } from './client-cert';
import { crlIssuedBy, parseCrls, type CrlInfo, type RevokedEntry } from './crl';
import { withCrlLock } from './crl-lock';
import { parseSerialInput } from './serial';

export const CLIENT_CRL_FILE = 'client.crl';
/** A signed client.crl's nextUpdate is its thisUpdate plus this many days. */
export const CRL_VALIDITY_DAYS = 7;

const DAY_MS = 86_400_000;

export interface RevokeResult {
  /** The revoked serial, as X509Certificate.serialNumber prints it. */
  readonly serial: string;
  /** The certificate's subject (`CN=alice`) when it was found under <cert-dir>/clients. */
  readonly subject: string | undefined;
  readonly crlFile: string;
  /** True when the CRL listed it already; the file is then left as it was. */
  readonly alreadyRevoked: boolean;
  readonly nextUpdate: Date;
}

/** <certDir>/client.crl. */
export function clientCrlPath(certDir: string): string {
  return join(certDir, CLIENT_CRL_FILE);
}

/**
 * Adds a client certificate to <certDir>/client.crl (created if absent), signed by the local CA,
 * written atomically (temp file + rename, mode 0644). `target` is a name (resolved as
 * <certDir>/clients/<target>.pem, if that file exists) or else a serial in hex (any case,
 * optional 0x, colons allowed). ConfigError (exit 2) for a target that is neither, or a
 * certificate this CA did not issue. Already revoked: alreadyRevoked true, file unchanged.
 */
export async function revokeClientCertificate(opts: { certDir: string; target: string; now?: Date }): Promise<RevokeResult> {
  const { certDir } = opts;
  const now = wholeSeconds(opts.now ?? new Date());
  const ca = requireGeneratedPair(certDir, 'ca');
  const { serial, subject } = resolveTarget(certDir, opts.target, ca.cert);
  const crlFile = clientCrlPath(certDir);
  return withCrlLock(certDir, async () => {
    const current = readClientCrl(certDir, ca.cert);
    if (current?.revoked.some((entry) => entry.serial === serial)) {
      return { serial, subject, crlFile, alreadyRevoked: true, nextUpdate: current.nextUpdate! };
    }
    const revoked = [...(current?.revoked ?? []), { serial, revokedAt: now }];
    const written = await writeClientCrl(certDir, ca, revoked, nextNumber(current), now);
    return { serial, subject, crlFile, alreadyRevoked: false, nextUpdate: written.nextUpdate! };
  });
}

/**
 * True when a third or less of the CRL's validity (thisUpdate to nextUpdate) is left at `now`, or
 * nextUpdate has passed; the same rule as leaf renewal (needsRenewal in certs/local-ca.ts). A CRL
 * without a nextUpdate never expires, so never needs it.
 */
export function crlNeedsResigning(crl: CrlInfo, now: Date): boolean {
  if (crl.nextUpdate === undefined) return false;
  const validityMs = crl.nextUpdate.getTime() - crl.thisUpdate.getTime();
  const leftMs = crl.nextUpdate.getTime() - now.getTime();
  return leftMs <= 0 || leftMs <= validityMs / 3;
}

/**
 * Re-signs <certDir>/client.crl with the same entries, thisUpdate `now` (default: the real
 * time), nextUpdate CRL_VALIDITY_DAYS later and the next CRL number; undefined when there is no
 * client.crl. CertError when client.crl or the CA can't be used.
 */
export async function resignClientCrl(certDir: string, now: Date = new Date()): Promise<CrlInfo | undefined> {
  if (statSync(clientCrlPath(certDir), { throwIfNoEntry: false }) === undefined) return undefined;
  const ca = requireGeneratedPair(certDir, 'ca');
  return withCrlLock(certDir, async () => {
    const current = readClientCrl(certDir, ca.cert);
    if (current === undefined) return undefined; // removed while we waited for the lock
    return writeClientCrl(certDir, ca, current.revoked, nextNumber(current), wholeSeconds(now));
  });
}

// ---------------------------------------------------------------------------------------------
// The target: a client name, or a serial

interface Target {
  readonly serial: string;
  readonly subject: string | undefined;
}

function resolveTarget(certDir: string, target: string, caCert: X509Certificate): Target {
  // Only a valid name is looked up, so a target can't name a file outside clients/ ("../ca").
  const file = isClientName(target) ? join(certDir, CLIENTS_DIR, `${target}.pem`) : undefined;
  const text = file === undefined ? undefined : readIfExists(file);
  if (file !== undefined && text !== undefined) {
    const cert = parseCertificate(file, text);
    if (!isIssuedBy(cert, caCert)) {
      throw new ConfigError([
        `${file} was not issued by the CA in --cert-dir ${certDir} (its CRL can't revoke it: revoke it with the CA that issued it, or give the --cert-dir that holds that CA)`,
      ]);
    }
    return { serial: cert.serialNumber, subject: describeX509(cert).subject };
  }
  const serial = parseSerialInput(target);
  if (serial !== undefined) return { serial, subject: subjectBySerial(certDir, serial, caCert) };
  const notAName = file === undefined ? 'not a client name' : `no client certificate ${file}`;
  throw new ConfigError([
    `${JSON.stringify(target)}: ${notAName}, and not a serial in hex ` +
      '(give a name `cert client` issued, or the serial `openssl x509 -noout -serial -in <cert.pem>` prints)',
  ]);
}

/** The subject of the certificate in <certDir>/clients that this CA issued with `serial`, if there is one. */
function subjectBySerial(certDir: string, serial: string, caCert: X509Certificate): string | undefined {
  const dir = join(certDir, CLIENTS_DIR);
  let names: string[];
  try {
    names = readdirSync(dir).filter((name) => name.endsWith('.pem') && !name.endsWith('-key.pem'));
  } catch {
    return undefined; // no clients/ folder: the serial stands on its own
  }
  for (const name of names) {
    const cert = certificateAt(join(dir, name));
    if (cert?.serialNumber === serial && isIssuedBy(cert, caCert)) return describeX509(cert).subject;
  }
  return undefined;
}

/** The certificate in `file`, or undefined for anything else (unreadable, not PEM): only a name for the output hangs on it. */
function certificateAt(file: string): X509Certificate | undefined {
  try {
    return new X509Certificate(readFileSync(file));
  } catch {
    return undefined;
  }
}

function parseCertificate(file: string, text: string): X509Certificate {
  try {
    return new X509Certificate(text);
  } catch (err) {
    throw new CertError(`${file}: not a PEM certificate (${(err as Error).message}; issue a new one with \`tls-echod cert client\`, or revoke it by serial)`, {
      cause: err,
    });
  }
}

function isIssuedBy(cert: X509Certificate, ca: X509Certificate): boolean {
  return cert.checkIssued(ca) && cert.verify(ca.publicKey);
}

function readIfExists(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    if (systemErrorCode(err) === 'ENOENT') return undefined;
    throw new EchodError('ECHOD_CERT_IO', `${file}: can't read it (${(err as Error).message})`, { cause: err });
  }
}

// ---------------------------------------------------------------------------------------------
// client.crl on disk

/** client.crl, checked: one CRL, signed by `caCert`, with a nextUpdate; undefined when there is none. */
function readClientCrl(certDir: string, caCert: X509Certificate): CrlInfo | undefined {
  const text = readCertDirFile(certDir, CLIENT_CRL_FILE);
  if (text === undefined) return undefined;
  const file = clientCrlPath(certDir);
  const crls = parseCrls(text, file);
  const problem = clientCrlProblem(crls, caCert);
  if (problem !== undefined) throw new CertError(`${file}: ${problem}`);
  return crls[0];
}

/** What makes client.crl unusable, and the fix; undefined when it is as `cert revoke` writes it: one CRL, signed by the CA, with a nextUpdate. */
function clientCrlProblem(crls: readonly CrlInfo[], caCert: X509Certificate): string | undefined {
  const restore = 'restore it from a backup, or remove it to start an empty list, which un-revokes what it listed';
  if (crls.length !== 1) return `holds ${crls.length} CRLs where \`cert revoke\` writes one (${restore})`;
  if (!crlIssuedBy(crls[0]!, caCert)) {
    return 'not signed by the CA in --cert-dir (if ca.pem was replaced, remove client.crl: the certificates it lists no longer verify anyway; else restore it from a backup)';
  }
  if (crls[0]!.nextUpdate === undefined) return `has no nextUpdate where \`cert revoke\` always writes one (${restore})`;
  return undefined;
}

async function writeClientCrl(certDir: string, ca: Pair, revoked: readonly RevokedEntry[], number: bigint, now: Date): Promise<CrlInfo> {
  // The CRL builder (node-forge) is loaded only to sign, as certificates are in local-ca.ts.
  const { signCrl } = await import('./crl-sign');
  const pem = signCrl({ caCert: ca.cert, caKey: ca.key, thisUpdate: now, nextUpdate: new Date(now.getTime() + CRL_VALIDITY_DAYS * DAY_MS), revoked, number });
  writePublicFile(certDir, CLIENT_CRL_FILE, pem);
  return parseCrls(pem, clientCrlPath(certDir))[0]!;
}

/** The CRL number after `current`'s: 1 for the first list. Deleting client.crl starts over, as its entries go with it. */
function nextNumber(current: CrlInfo | undefined): bigint {
  return (current?.number ?? 0n) + 1n;
}

/** An ASN.1 time holds whole seconds: rounding down first makes the Dates returned equal what is written. */
function wholeSeconds(date: Date): Date {
  return new Date(Math.floor(date.getTime() / 1000) * 1000);
}
