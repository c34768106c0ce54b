// Client certificates from the local CA, for mutual TLS: `tls-echod cert client <name>`. The CA
// in --cert-dir signs a new key as CN=<name> with EKU clientAuth only, so the certificate can't
// serve as a server's; the pair is written as <prefix>.pem and <prefix>-key.pem.

import { join } from 'node:path';
import type { KeyType } from '../config/config';
import { ConfigError } from '../errors';
import { requireGeneratedPair, writeClientPair } from '../certs/cert-dir';
import { describeX509, type CertInfo } from '../certs/inspect';
import { leafValidity } from '../certs/local-ca';

/** Default and bounds of `--days` for a client certificate. */
export const CLIENT_CERT_DAYS = { default: 30, min: 1, max: 3650 } as const;

/** The folder in --cert-dir that `cert client` writes to by default, and `cert revoke` looks names up in. */
export const CLIENTS_DIR = 'clients';

/** A name becomes the CN and, by default, a file name: letters, digits, '.', '_' and '-', at most 64. */
const CLIENT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export interface ClientCertOptions {
  readonly certDir: string;
  readonly name: string;
  readonly keyType: KeyType;
  /** Lifetime (days); default CLIENT_CERT_DAYS.default. */
  readonly days?: number;
  /** Path prefix of the two files; default <certDir>/clients/<name>. */
  readonly out?: string;
  /** Replace existing files. */
  readonly force?: boolean;
  /** Clock for the validity; default: the real time. */
  readonly now?: Date;
}

export interface IssuedClientCert {
  readonly certFile: string;
  readonly keyFile: string;
  /** The CA certificate a server must trust for it: ca.pem in --cert-dir. */
  readonly caFile: string;
  readonly info: CertInfo;
}

/** Whether `name` can name a client certificate (and its files under <cert-dir>/clients). */
export function isClientName(name: string): boolean {
  return CLIENT_NAME.test(name);
}

/** Problems with the name and lifetime asked for, in words; empty when they are fine. */
export function clientCertProblems(name: string, days: number): string[] {
  const problems: string[] = [];
  if (!isClientName(name)) {
    problems.push(`client name ${JSON.stringify(name)}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit (it becomes the CN and a file name)`);
  }
  if (!Number.isInteger(days) || days < CLIENT_CERT_DAYS.min || days > CLIENT_CERT_DAYS.max) {
    problems.push(`--days: must be a whole number of days from ${CLIENT_CERT_DAYS.min} to ${CLIENT_CERT_DAYS.max}`);
  }
  return problems;
}

/** Issues a client certificate from the CA in opts.certDir and writes it; ConfigError for a bad name or lifetime. */
export async function issueClientCertificate(opts: ClientCertOptions): Promise<IssuedClientCert> {
  const days = opts.days ?? CLIENT_CERT_DAYS.default;
  const problems = clientCertProblems(opts.name, days);
  if (problems.length > 0) throw new ConfigError(problems);
  const ca = requireGeneratedPair(opts.certDir, 'ca');
  // The certificate builder (node-forge) is loaded only to issue, as in local-ca.ts.
  const { createClientCertificate } = await import('../certs/issue');
  const pair = await createClientCertificate(ca, opts.name, opts.keyType, leafValidity(opts.now ?? new Date(), days));
  const files = writeClientPair(opts.out ?? join(opts.certDir, CLIENTS_DIR, opts.name), pair, opts.force === true);
  return { ...files, caFile: join(opts.certDir, 'ca.pem'), info: describeX509(pair.cert) };
}
