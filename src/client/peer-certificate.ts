// The peer certificate as `tls-echod check` reports it: subject, issuer, SANs, validity,
// fingerprint and serial, in a form fit for a terminal and JSON.

import type * as tls from 'node:tls';
import { subjectAltNameEntries } from '../certs/inspect';

export interface PeerCertificateInfo {
  /** `CN=localhost, O=...` */
  readonly subject: string;
  readonly issuer: string;
  /** `DNS:localhost`, `IP:127.0.0.1`, ... */
  readonly sans: readonly string[];
  /** ISO 8601. */
  readonly notBefore: string;
  /** ISO 8601 (the expiry). */
  readonly notAfter: string;
  /** SHA-256 of the DER certificate, colon-separated upper-case hex. */
  readonly fingerprint256: string;
  readonly serialNumber: string;
}

export function describeCertificate(cert: tls.PeerCertificate): PeerCertificateInfo {
  return {
    subject: formatName(cert.subject),
    issuer: formatName(cert.issuer),
    sans: parseSubjectAltName(cert.subjectaltname),
    notBefore: isoDate(cert.valid_from),
    notAfter: isoDate(cert.valid_to),
    fingerprint256: cert.fingerprint256,
    serialNumber: cert.serialNumber,
  };
}

function formatName(name: tls.Certificate | undefined): string {
  if (name === undefined || name === null) return '';
  return Object.entries(name)
    .flatMap(([k, v]) => (Array.isArray(v) ? v.map((x) => `${k}=${String(x)}`) : [`${k}=${String(v)}`]))
    .join(', ');
}

/** `DNS:a, IP Address:1.2.3.4` -> `['DNS:a', 'IP:1.2.3.4']` (a quoted value with a comma stays one entry). */
export function parseSubjectAltName(text: string | undefined): string[] {
  return subjectAltNameEntries(text).map(({ kind, value }) => `${kind === 'IP Address' ? 'IP' : kind}:${value}`);
}

function isoDate(text: string): string {
  const d = new Date(text);
  return Number.isNaN(d.getTime()) ? text : d.toISOString();
}

