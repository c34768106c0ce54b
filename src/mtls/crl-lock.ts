// One writer at a time for <cert-dir>/client.crl. Revoking and re-signing both read the list,
// change it and write it back; run at once (a `cert revoke` while the daemon re-signs), the
// second write would drop the first one's entry, and a revoked certificate would be accepted
// again without a word. A lock file created with O_EXCL serialises them. Signing takes
// milliseconds, so a lock held longer than LOCK_STALE_MS, or by a process that is gone, was left
// by a crash and is taken over.

import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { EchodError, systemErrorCode } from '../errors';

const LOCK_FILE = '.client.crl.lock';
/** How long to wait for another holder before giving up (ms). */
const LOCK_WAIT_MS = 10_000;
const LOCK_RETRY_MS = 50;
/** A lock older than this (ms) was left by a process that crashed or hung. */
const LOCK_STALE_MS = 60_000;

/** Runs `fn` holding <certDir>/.client.crl.lock; ECHOD_CERT_IO when it can't be had within LOCK_WAIT_MS. */
export async function withCrlLock<T>(certDir: string, fn: () => Promise<T>): Promise<T> {
  const path = join(certDir, LOCK_FILE);
  const token = `${process.pid} ${randomBytes(8).toString('hex')}\n`;
  const deadline = Date.now() + LOCK_WAIT_MS;
  while (!tryLock(path, token)) {
    if (isStale(path)) {
      rmSync(path, { force: true });
      continue;
    }
    if (Date.now() > deadline) {
      throw new EchodError(
        'ECHOD_CERT_IO',
        `${path}: held by pid ${holderPid(path) ?? '?'} for over ${LOCK_WAIT_MS / 1000} s (another \`cert revoke\`, or a daemon re-signing the CRL; try again, or remove the file if no tls-echod is running)`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, LOCK_RETRY_MS));
  }
  try {
    return await fn();
  } finally {
    // Only our own: a lock taken over as stale (we ran past LOCK_STALE_MS) is someone else's now.
    if (readText(path) === token) rmSync(path, { force: true });
  }
}

function tryLock(path: string, token: string): boolean {
  let fd: number;
  try {
    fd = openSync(path, 'wx', 0o600);
  } catch (err) {
    if (systemErrorCode(err) === 'EEXIST') return false;
    throw new EchodError('ECHOD_CERT_IO', `${path}: can't create the lock file (${(err as Error).message}; make the directory writable by this user)`, {
      cause: err,
    });
  }
  try {
    writeSync(fd, token);
  } finally {
    closeSync(fd);
  }
  return true;
}

function isStale(path: string): boolean {
  const stat = statSync(path, { throwIfNoEntry: false });
  if (stat === undefined) return false; // released meanwhile: just try again
  if (Date.now() - stat.mtimeMs > LOCK_STALE_MS) return true;
  const pid = holderPid(path);
  // A file not yet holding its pid is being written by its creator right now.
  return pid !== undefined && !isRunning(pid);
}

function holderPid(path: string): number | undefined {
  const pid = Number.parseInt(readText(path) ?? '', 10);
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return systemErrorCode(err) === 'EPERM'; // it exists, under another user
  }
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}
