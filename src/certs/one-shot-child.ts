// One job in a short-lived child process: how the daemon issues certificates (issuer-process.ts)
// and re-signs its client CRL (mtls/crl-process.ts) without loading node-forge itself
// (issuer-process.ts says why). The job's module is forked as its own main, answers one request
// over IPC, and exits; a failure comes back as the EchodError it was, same code and message.

import { fork } from 'node:child_process';
import { CertError, EchodError, type ErrorCode } from '../errors';

/** What a child answers, once, before it exits. */
type Reply<T> = { readonly t: 'done'; readonly result: T } | { readonly t: 'failed'; readonly code: ErrorCode; readonly message: string };

export interface ChildJobOptions {
  /** Kill the child after this long (ms); it has failed by then. */
  readonly timeoutMs: number;
  /** What failed, for an error when the child ends without an answer: "issuing certificates in --cert-dir x failed". */
  readonly failure: string;
  /** The child, in words: "issuing process". */
  readonly role: string;
}

/**
 * Forks `modulePath` (a module that calls answerInChild when it is main), sends it `request`
 * (JSON: no Dates, no Buffers) and resolves with its answer; rejects with its error, or a
 * CertError when it ends without answering. The child is always reaped: killed at the timeout.
 */
export function runInChild<Request, Result>(modulePath: string, request: Request, opts: ChildJobOptions): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = fork(modulePath, [], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'], serialization: 'json' });
    let reply: Reply<Result> | undefined;
    let settled = false;
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs);
    // Settles once: 'close' normally, 'error' when the process could not be started at all.
    const settle = (ended: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (reply?.t === 'done') resolve(reply.result);
      else if (reply?.t === 'failed') reject(new EchodError(reply.code, reply.message));
      else reject(new CertError(`${opts.failure}: the ${opts.role} ${ended} without an answer`));
    };
    child.on('message', (message: Reply<Result>) => {
      reply ??= message;
    });
    child.on('error', (err) => settle(`failed (${err.message})`));
    child.on('close', (code, signal) => settle(`ended (${signal ?? `exit code ${code}`})`));
    child.send(request as object);
  });
}

/**
 * The child's side, called at the top level of a job's module: when `mod` is the main module of
 * a process forked with IPC, answers the one request with `job`, then disconnects so the process
 * exits. An error that is not an EchodError comes back as ECHOD_CERT_INVALID "<failure>: <message>".
 */
export function answerInChild<Request, Result>(mod: NodeModule, job: (request: Request) => Promise<Result>, failure: string): void {
  if (require.main !== mod || process.send === undefined) return;
  process.once('message', (request: Request) => {
    const send = (reply: Reply<Result>): void => {
      process.send?.(reply, () => process.disconnect());
    };
    job(request).then(
      (result) => send({ t: 'done', result }),
      (err: unknown) =>
        send(
          err instanceof EchodError
            ? { t: 'failed', code: err.code, message: err.message }
            : { t: 'failed', code: 'ECHOD_CERT_INVALID', message: `${failure}: ${(err as Error).message}` },
        ),
    );
  });
}
