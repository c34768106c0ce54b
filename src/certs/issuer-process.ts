// The daemon's way to make sure its certificates are there and fresh: reuse them in-process when
// they can serve, and issue new ones in a short-lived child process when they can't (first start,
// renewal, a changed key type or SAN list).
//
// Why a child: issuing needs node-forge, whose modules would stay in the daemon's heap for good
// once loaded (1.4 MB). A serving process that retains more than V8's 8 MB activation threshold
// in its old generation gets a full mark-compact every few hundred milliseconds under bulk echo,
// freeing nothing (docs/architecture.md, "What serving loads"). The child writes the files with
// the same code `tls-echod cert generate` runs, then the daemon reads them back.

import { ensureCertificates, loadGeneratedCertificates, reusableCertificates, type EnsureAction, type GenerateOptions } from './local-ca';
import { answerInChild, runInChild } from './one-shot-child';
import type { TlsMaterial } from './tls-material';

/** Longest a child may take to issue (ms): an RSA-3072 CA and leaf take a few seconds at most. */
const ISSUE_TIMEOUT_MS = 60_000;

/** What the parent sends: GenerateOptions with the clock as an ISO string. */
type IssueRequest = Omit<GenerateOptions, 'now'> & { readonly now: string };

/** ensureCertificates, with any issuing done in a child process; throws what issuing threw (same code and message). */
export async function ensureCertificatesInChild(opts: GenerateOptions): Promise<{ material: TlsMaterial; action: EnsureAction }> {
  const now = opts.now ?? new Date();
  const reused = reusableCertificates(opts, now);
  if (reused !== undefined) return { material: reused, action: 'reused' };
  const action = await runInChild<IssueRequest, EnsureAction>(__filename, { ...opts, now: now.toISOString() }, {
    timeoutMs: ISSUE_TIMEOUT_MS,
    failure: `issuing certificates in --cert-dir ${opts.certDir} failed`,
    role: 'issuing process',
  });
  return { material: loadGeneratedCertificates(opts.certDir), action };
}

/** The child: issue, answer with what was done, exit. */
answerInChild(
  module,
  async (request: IssueRequest) => (await ensureCertificates({ ...request, now: new Date(request.now) })).action,
  'issuing certificates failed',
);
