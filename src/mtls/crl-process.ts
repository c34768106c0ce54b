// Re-signing <cert-dir>/client.crl from the serving daemon, in a short-lived child process.
// Signing loads node-forge, which must never stay in a serving process's heap (the header of
// certs/issuer-process.ts says why); the child re-signs with the same code `cert revoke` uses,
// writes the file and exits, and the daemon reads the file back.

import { answerInChild, runInChild } from '../certs/one-shot-child';

/** Longest a child may take to re-sign (ms): signing takes milliseconds, waiting for a `cert revoke`'s lock up to 10 s. */
const RESIGN_TIMEOUT_MS = 30_000;

/** What the parent sends: the clock as an ISO string (IPC is JSON). */
interface ResignRequest {
  readonly certDir: string;
  readonly now: string;
}

/** resignClientCrl(certDir, now) in a child process; throws what it threw (same EchodError code and message). Does nothing without a client.crl. */
export async function resignClientCrlInChild(certDir: string, now: Date): Promise<void> {
  await runInChild<ResignRequest, void>(__filename, { certDir, now: now.toISOString() }, {
    timeoutMs: RESIGN_TIMEOUT_MS,
    failure: `re-signing the client CRL in --cert-dir ${certDir} failed`,
    role: 'signing process',
  });
}

/** The child: re-sign, answer, exit. revoke.ts is loaded here only, not in the daemon. */
answerInChild(
  module,
  async (request: ResignRequest) => {
    const { resignClientCrl } = await import('./revoke');
    await resignClientCrl(request.certDir, new Date(request.now));
  },
  're-signing the client CRL failed',
);
