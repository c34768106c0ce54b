// The `tls-echod check` report for a terminal: one `label  value` line per fact, and the verdict.

import type { CheckResult } from './check';
import { describeClientCertState } from './client-cert-refusal';

/** Labels are padded to this width, then a space: two spaces after the longest, `client cert`. */
const LABEL_WIDTH = 'client cert'.length + 1;

export interface FormatCheckOptions {
  /** Include the final `ok` / `FAILED: ...` line (default true). */
  readonly verdict?: boolean;
  /** Clock for "expires in N days" (ms since epoch; default now). */
  readonly now?: number;
}

/** Human-readable report, one `label  value` line per fact, for the terminal. */
export function formatCheckResult(r: CheckResult, options: FormatCheckOptions = {}): string {
  const lines: string[] = [];
  const row = (label: string, value: string): void => {
    lines.push(`${label.padEnd(LABEL_WIDTH)} ${value}`);
  };
  row('target', `${r.target} (servername ${r.servername ?? 'none'})`);
  if (r.tlsVersion !== null) row('tls', `${r.tlsVersion}, ${r.cipher ?? '?'}, alpn ${r.alpn ?? 'none'}`);
  if (r.peer !== null) {
    row('subject', r.peer.subject || '(empty)');
    row('issuer', r.peer.issuer || '(empty)');
    row('sans', r.peer.sans.length > 0 ? r.peer.sans.join(', ') : 'none');
    row('expires', `${r.peer.notAfter} (${describeExpiry(r.peer.notAfter, options.now ?? Date.now())})`);
    row('sha256', r.peer.fingerprint256);
  }
  if (r.tlsVersion !== null) row('verified', r.verified ? 'yes' : `no (${r.verifyError ?? 'unknown'})`);
  if (r.clientCert !== null) row('client cert', describeClientCertState(r.clientCert));
  const timing: string[] = [];
  if (r.connectMs !== null) timing.push(`connect ${r.connectMs.toFixed(2)} ms`);
  if (r.handshakeMs !== null) timing.push(`handshake ${r.handshakeMs.toFixed(2)} ms`);
  if (r.roundTripMs !== null) timing.push(`round trip ${r.roundTripMs.toFixed(2)} ms`);
  if (timing.length > 0) row('timing', timing.join(', '));
  if (r.bytesSent > 0 || r.ok) row('echo', `${r.bytesEchoed} of ${r.bytesSent} bytes back${r.ok ? ', byte for byte' : ''}`);
  if (options.verdict !== false) lines.push(r.ok ? 'ok' : `FAILED: ${r.error ?? 'unknown error'}`);
  return lines.join('\n');
}

function describeExpiry(notAfter: string, now: number): string {
  const t = Date.parse(notAfter);
  if (Number.isNaN(t)) return 'unknown';
  const days = (t - now) / 86_400_000;
  if (days < 0) return `expired ${Math.ceil(-days)} day(s) ago`;
  if (days < 1) return `in ${Math.max(0, Math.round(days * 24))} hour(s)`;
  return `in ${Math.floor(days)} day(s)`;
}
