// The client-certificate policy the TLS server enforces: the mode, the CAs a client certificate
// must chain to, and the CRLs of revoked ones, read and checked in full before any of it serves
// (at start, at reload, after the daemon re-signs its CRL). Anything wrong is a CertError naming
// the flag and the file, so a bad reload is refused whole and the old policy keeps serving.
//
// Each policy carries a session ID context that digests it. OpenSSL stores the context in every
// session and ticket it issues and resumes only sessions whose context matches the server's, so a
// policy change makes every earlier ticket a miss: the client gets a full handshake, checked under
// the new policy. That is what keeps a revoked certificate's holder, or a client that never sent
// a certificate, from resuming its way past a reload.

import { X509Certificate, createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createSecureContext } from 'node:tls';
import type { ClientAuthMode, Config } from '../config/config';
import { CertError, systemErrorCode } from '../errors';
import { parseCertificate, splitPemCertificates } from '../certs/inspect';
import type { TlsMaterial } from '../certs/tls-material';
import { crlIssuedBy, parseCrls, type CrlInfo } from './crl';
import { resignClientCrlInChild } from './crl-process';
import { CLIENT_CRL_FILE, crlNeedsResigning } from './revoke';

/** What the TLS server needs to ask for and check client certificates; the same in every worker. */
export interface ClientAuthPolicy {
  readonly mode: ClientAuthMode;
  /** PEM CA certificates a client certificate must chain to (undefined when off). */
  readonly ca: string | undefined;
  /** PEM CRLs (undefined when there are none). */
  readonly crl: string | undefined;
  /** OpenSSL session ID context: a digest of the above, at most 32 characters. */
  readonly context: string;
}

/** The policy and where it came from, for the supervisor's logs and CRL upkeep. */
export interface LoadedClientAuth {
  readonly policy: ClientAuthPolicy;
  /** The file the CAs came from (the local ca.pem by default); undefined when off. */
  readonly caFile: string | undefined;
  readonly crlFile: string | undefined;
  /** The CRLs in force, parsed. */
  readonly crls: readonly CrlInfo[];
  /** The CRL is the local CA's own client.crl, which the daemon keeps signed. */
  readonly localCrl: boolean;
}

/** The policy when client certificates are off. */
export const CLIENT_AUTH_OFF: ClientAuthPolicy = { mode: 'off', ca: undefined, crl: undefined, context: contextOf('off', '', '') };

/**
 * Reads and checks the client CAs and CRLs the config names (or the defaults: the local CA, and
 * its client.crl when present). `material` is what the server serves: its CA is the local one
 * when the certificates are self-generated.
 */
export function loadClientAuth(config: Config, material: TlsMaterial, now = new Date()): LoadedClientAuth {
  if (config.clientAuth === 'off') return { policy: CLIENT_AUTH_OFF, caFile: undefined, crlFile: undefined, crls: [], localCrl: false };

  const caFile = config.clientCaFile ?? join(config.certDir, 'ca.pem');
  const caFlag = config.clientCaFile === undefined ? '--cert-dir' : '--client-ca';
  const caText = config.clientCaFile === undefined && material.source === 'generated' && material.ca !== undefined ? material.ca : readPolicyFile(caFlag, caFile);
  const cas = parseCaCertificates(caFlag, caFile, caText);

  const localCa = readLocalCa(config.certDir);
  const localIsClientCa = localCa !== undefined && cas.some((ca) => ca.fingerprint256 === localCa.fingerprint256);
  const defaultCrl = join(config.certDir, CLIENT_CRL_FILE);
  const crlFile = config.clientCrlFile ?? (localIsClientCa && existsSync(defaultCrl) ? defaultCrl : undefined);
  const crlFlag = config.clientCrlFile === undefined ? `--cert-dir (${CLIENT_CRL_FILE})` : '--client-crl';
  const crls = crlFile === undefined ? [] : checkCrls(crlFlag, crlFile, parseCrls(readPolicyFile(crlFlag, crlFile), `${crlFlag} ${crlFile}`), cas, now);

  const ca = cas.map((c) => c.toString()).join('');
  const crl = crls.length === 0 ? undefined : crls.map((c) => c.pem).join('');
  // OpenSSL has the last word on what it can load: a file that passed the checks above but that it
  // refuses would otherwise fail every handshake instead of the start or reload.
  try {
    createSecureContext({ ca, crl });
  } catch (err) {
    throw new CertError(`${crlFile !== undefined ? `${crlFlag} ${crlFile} or ` : ''}${caFlag} ${caFile}: OpenSSL can't load it (${(err as Error).message})`, { cause: err });
  }
  return {
    policy: { mode: config.clientAuth, ca, crl, context: contextOf(config.clientAuth, ca, crl ?? '') },
    caFile,
    crlFile,
    crls,
    localCrl: crlFile !== undefined && crlFile === defaultCrl && localIsClientCa,
  };
}

function contextOf(mode: ClientAuthMode, ca: string, crl: string): string {
  return createHash('sha256').update(`${mode}\0${ca}\0${crl}`).digest('hex').slice(0, 32);
}

function readPolicyFile(flag: string, path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    const code = systemErrorCode(err);
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied (make it readable by the user the daemon runs as)' : code === 'EISDIR' ? 'is a directory' : (err as Error).message;
    const fix = flag === '--cert-dir' ? 'run `tls-echod cert generate`, or give --client-ca' : `give a readable PEM file, or leave ${flag} out`;
    throw new CertError(`${flag} ${path}: ${why} (${fix})`, { cause: err });
  }
}

function parseCaCertificates(flag: string, path: string, text: string): X509Certificate[] {
  const blocks = splitPemCertificates(text);
  if (blocks.length === 0) {
    throw new CertError(`${flag} ${path}: no PEM certificate in it (give the CA certificates that issue client certificates, -----BEGIN CERTIFICATE-----)`);
  }
  return blocks.map((block, i) => {
    try {
      return parseCertificate(block);
    } catch (err) {
      throw new CertError(`${flag} ${path}: certificate ${i + 1} is not valid (${(err as Error).message})`, { cause: err });
    }
  });
}

/** The local CA certificate in certDir, if there is a readable one. */
function readLocalCa(certDir: string): X509Certificate | undefined {
  try {
    return new X509Certificate(readFileSync(join(certDir, 'ca.pem')));
  } catch {
    return undefined;
  }
}

// A CRL that no client CA issued, or one past its next update, would make OpenSSL refuse every
// client ("unable to get certificate CRL", "CRL has expired"): both are refused here instead.
function checkCrls(flag: string, path: string, crls: CrlInfo[], cas: readonly X509Certificate[], now: Date): CrlInfo[] {
  crls.forEach((crl, i) => {
    const which = crls.length > 1 ? `CRL ${i + 1}` : 'the CRL';
    if (!cas.some((ca) => crlIssuedBy(crl, ca))) {
      throw new CertError(`${flag} ${path}: ${which} is not signed by any of the client CAs (give the CRL published by the CA that issues your clients' certificates)`);
    }
    if (crl.nextUpdate !== undefined && crl.nextUpdate.getTime() <= now.getTime()) {
      throw new CertError(
        `${flag} ${path}: ${which} expired on ${crl.nextUpdate.toISOString()} and OpenSSL would refuse every client (get a fresh CRL from its CA)`,
      );
    }
  });
  return crls;
}

/**
 * Re-signs the local CA's client.crl (in a child process: signing loads node-forge) when it is
 * due, as the daemon renews its leaf; true when it did. A CRL that can't be read is left for
 * loadClientAuth to report.
 */
export async function refreshLocalCrl(certDir: string, now = new Date()): Promise<boolean> {
  const path = join(certDir, CLIENT_CRL_FILE);
  let crls: CrlInfo[];
  try {
    crls = parseCrls(readFileSync(path, 'utf8'), path);
  } catch {
    return false;
  }
  if (!crls.some((crl) => crlNeedsResigning(crl, now))) return false;
  await resignClientCrlInChild(certDir, now);
  return true;
}
