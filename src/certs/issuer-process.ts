// The daemon's way to make sure its certificates are there and fresh: reuse them in-process when
// they can serve, and issue new ones in a short-lived child process when they can't (first start,
// renewal, a changed key type or SAN list).
//
// Why a child: issuing needs node-forge, whose modules would stay in the daemon's heap for good
// once loaded (1.4 MB). A serving process that retains more than V8's 8 MB activation threshold
// in its old generation gets a full mark-compact every few hundred milliseconds under bulk echo,
// freeing nothing (docs/architecture.md, "What serving loads"). The child writes the files with
// the same code `tls-echod cert generate` runs, then the daemon reads them back.

import { fork } from 'node:child_process';
import { CertError, EchodError, type ErrorCode } from '../errors';
import { ensureCertificates, loadGeneratedCertificates, reusableCertificates, type EnsureAction, type GenerateOptions } from './local-ca';
import type { TlsMaterial } from './tls-material';

/** Longest a child may take to issue (ms): an RSA-3072 CA and leaf take a few seconds at most. */
const ISSUE_TIMEOUT_MS = 60_000;

/** What the parent sends: GenerateOptions with the clock as an ISO string. */
type IssueRequest = Omit<GenerateOptions, 'now'> & { readonly now: string };
/** What the child answers, once, before it exits. */
type IssueReply = { readonly t: 'done'; readonly action: EnsureAction } | { readonly t: 'failed'; readonly code: ErrorCode; readonly message: string };

/** ensureCertificates, with any issuing done in a child process; throws what issuing threw (same code and message). */
export async function ensureCertificatesInChild(opts: GenerateOptions): Promise<{ material: TlsMaterial; action: EnsureAction }> {
  const now = opts.now ?? new Date();
  const reused = reusableCertificates(opts, now);
  if (reused !== undefined) return { material: reused, action: 'reused' };
  const action = await issueInChild({ ...opts, now: now.toISOString() });
  return { material: loadGeneratedCertificates(opts.certDir), action };
}

function issueInChild(request: IssueRequest): Promise<EnsureAction> {
  return new Promise((resolve, reject) => {
    const child = fork(__filename, [], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'], serialization: 'json' });
    let reply: IssueReply | undefined;
    let settled = false;
    const timer = setTimeout(() => child.kill('SIGKILL'), ISSUE_TIMEOUT_MS);
    // Settles once: 'close' normally, 'error' when the process could not be started at all.
    const settle = (ended: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (reply?.t === 'done') resolve(reply.action);
      else if (reply?.t === 'failed') reject(new EchodError(reply.code, reply.message));
      else reject(new CertError(`issuing certificates in --cert-dir ${request.certDir} failed: the issuing process ${ended} without an answer`));
    };
    child.on('message', (message: IssueReply) => {
      reply ??= message;
    });
    child.on('error', (err) => settle(`failed (${err.message})`));
    child.on('close', (code, signal) => settle(`ended (${signal ?? `exit code ${code}`})`));
    child.send(request);
  });
}

/** The child: one request, one answer, then exit. */
function childOnRequest(request: IssueRequest): void {
  const send = (reply: IssueReply): void => {
    process.send?.(reply, () => process.disconnect());
  };
  ensureCertificates({ ...request, now: new Date(request.now) }).then(
    ({ action }) => send({ t: 'done', action }),
    (err: unknown) =>
      send(
        err instanceof EchodError
          ? { t: 'failed', code: err.code, message: err.message }
          : { t: 'failed', code: 'ECHOD_CERT_INVALID', message: `issuing certificates failed: ${(err as Error).message}` },
      ),
  );
}

if (require.main === module && process.send !== undefined) process.once('message', childOnRequest);
