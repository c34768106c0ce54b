// --cert-dir on disk: the generated CA and leaf as certificate/key pairs of PEM files. A pair is
// read back with what is wrong with it, never half-trusted, and written so that a crash or power
// cut leaves no partial file and no key readable by others: each file is created with its final
// mode, fsynced and renamed over the old one; the key before its certificate; then the directory
// is fsynced (syncDir) to make the renames durable.

import { X509Certificate, createPrivateKey, randomBytes, type KeyObject } from 'node:crypto';
import { chmodSync, closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { CertError, EchodError, systemErrorCode } from '../errors';
import { exportKey } from './tls-material';

/** File names inside --cert-dir. */
export const CERT_DIR_FILES = { ca: 'ca.pem', caKey: 'ca-key.pem', leaf: 'server.pem', leafKey: 'server-key.pem' } as const;

const PAIR_FILES = {
  ca: { cert: CERT_DIR_FILES.ca, key: CERT_DIR_FILES.caKey },
  leaf: { cert: CERT_DIR_FILES.leaf, key: CERT_DIR_FILES.leafKey },
} as const;
type PairKind = keyof typeof PAIR_FILES;

const DIR_MODE = 0o700;
const KEY_MODE = 0o600;
const CERT_MODE = 0o644;

/** A certificate with its private key, parsed and as PEM. */
export interface Pair {
  readonly cert: X509Certificate;
  readonly key: KeyObject;
  readonly certPem: string;
  readonly keyPem: string;
}

/** A pair read from --cert-dir, or why it can't be used. */
export type PairRead = { readonly pair: Pair; readonly problem?: undefined } | { readonly pair?: undefined; readonly problem: string };

/** The pair `kind` in certDir, or a CertError that says what is wrong and to start the daemon once. */
export function requireGeneratedPair(certDir: string, kind: PairKind): Pair {
  const read = readGeneratedPair(certDir, kind);
  if (read.pair === undefined) {
    throw new CertError(
      `--cert-dir ${certDir}: ${read.problem} (start the daemon once to generate certificates there, or give the --cert-dir it uses)`,
    );
  }
  return read.pair;
}

/** The pair `kind` in certDir, parsed and checked that the key matches, or the problem in words. */
export function readGeneratedPair(certDir: string, kind: PairKind): PairRead {
  return readPairFiles(certDir, PAIR_FILES[kind]);
}

/** The certificate and key files `files` in dir, parsed and checked that the key matches, or the problem in words. */
export function readPairFiles(dir: string, files: { readonly cert: string; readonly key: string }): PairRead {
  const certText = readCertDirFile(dir, files.cert);
  const keyText = readCertDirFile(dir, files.key);
  if (certText === undefined) return { problem: `${files.cert}: no such file` };
  if (keyText === undefined) return { problem: `${files.key}: no such file` };
  let cert: X509Certificate;
  let key: KeyObject;
  try {
    cert = new X509Certificate(certText);
  } catch {
    return { problem: `${files.cert}: not a PEM certificate` };
  }
  try {
    key = createPrivateKey(keyText);
  } catch {
    return { problem: `${files.key}: not a PEM private key` };
  }
  if (!cert.checkPrivateKey(key)) return { problem: `${files.key} does not match ${files.cert}` };
  return { pair: { cert, key, certPem: cert.toString(), keyPem: exportKey(key) } };
}

/** The file's text, or undefined when it does not exist; other failures are not ours to paper over. */
export function readCertDirFile(certDir: string, name: string): string | undefined {
  try {
    return readFileSync(join(certDir, name), 'utf8');
  } catch (err) {
    if (systemErrorCode(err) === 'ENOENT') return undefined;
    throw certDirError(certDir, `can't read ${name}`, err);
  }
}

/** Creates certDir if missing and makes our own directory 0700. */
export function prepareCertDir(certDir: string): void {
  try {
    makeDirectories(certDir, DIR_MODE);
    const stat = statSync(certDir);
    if (!stat.isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
    // Only our own directory: chmod on someone else's fails, and is not ours to decide.
    if (stat.uid === process.getuid?.() && (stat.mode & 0o777) !== DIR_MODE) chmodSync(certDir, DIR_MODE);
  } catch (err) {
    throw certDirError(certDir, "can't create or protect the directory", err);
  }
}

/**
 * mkdir -p, one level at a time. Not mkdirSync's `recursive`: on Node 20-24 it loops forever,
 * at full CPU, where mkdir answers ENOENT under a parent that exists (procfs: --cert-dir
 * /proc/x), so a bad --cert-dir hung the daemon instead of failing. An existing entry is left
 * to the caller to check.
 */
export function makeDirectories(dir: string, mode: number): void {
  try {
    mkdirSync(dir, { mode });
    return;
  } catch (err) {
    const code = systemErrorCode(err);
    if (code === 'EEXIST') return;
    if (code !== 'ENOENT' || dirname(dir) === dir) throw err;
  }
  makeDirectories(dirname(dir), mode);
  mkdirSync(dir, { mode }); // ENOENT again (a parent that takes no directories) is the error to report
}

/** Key files copied in by hand may be readable by others; ours never are. */
export function tightenKeyModes(certDir: string): void {
  for (const kind of ['ca', 'leaf'] as const) {
    const path = join(certDir, PAIR_FILES[kind].key);
    try {
      const stat = statSync(path);
      if ((stat.mode & 0o077) !== 0 && stat.uid === process.getuid?.()) chmodSync(path, KEY_MODE);
    } catch (err) {
      throw certDirError(certDir, `can't protect ${PAIR_FILES[kind].key}`, err);
    }
  }
}

/** Replaces the pair `kind` in certDir (each file atomically; call syncDir after the last). */
export function writePair(certDir: string, kind: PairKind, pair: Pair): void {
  writePairFiles(certDir, PAIR_FILES[kind], pair);
}

/** Replaces the certificate and key files `files` in dir: key 0600 first, then certificate 0644, each atomically; call syncDir after. */
export function writePairFiles(dir: string, files: { readonly cert: string; readonly key: string }, pair: Pair): void {
  // A crash between the two writes leaves a key that doesn't match its certificate, which the
  // next read detects (readPairFiles), so the pair is made again.
  writeFileAtomic(dir, files.key, pair.keyPem, KEY_MODE);
  writeFileAtomic(dir, files.cert, pair.certPem, CERT_MODE);
}

/** Replaces `name` in dir with a private key's PEM, mode 0600, atomically; call syncDir after. */
export function writeKeyFile(dir: string, name: string, pem: string): void {
  writeFileAtomic(dir, name, pem, KEY_MODE);
}

/** Replaces `name` in certDir with `text`, mode 0644 (a public file: a certificate, a CRL), atomically and durably. */
export function writePublicFile(certDir: string, name: string, text: string): void {
  writeFileAtomic(certDir, name, text, CERT_MODE);
  syncDir(certDir);
}

/**
 * A client certificate and its key as `<prefix>.pem` (0644) and `<prefix>-key.pem` (0600), the key
 * first, each atomically; the folder is made (0700) if missing. Refuses to replace either file
 * unless `force`. Returns the two paths.
 */
export function writeClientPair(prefix: string, pair: Pair, force: boolean): { certFile: string; keyFile: string } {
  const dir = dirname(prefix);
  const certFile = `${prefix}.pem`;
  const keyFile = `${prefix}-key.pem`;
  const problem = (what: string, err: unknown): EchodError => ioError(`--out ${prefix}`, what, err, 'choose another --out');
  try {
    makeDirectories(dir, DIR_MODE);
  } catch (err) {
    throw problem(`can't create ${dir}`, err);
  }
  if (!force) {
    for (const file of [certFile, keyFile]) {
      if (statSync(file, { throwIfNoEntry: false }) !== undefined) {
        throw new EchodError('ECHOD_CERT_IO', `${file} exists (pass --force to replace it, or choose another name or --out)`);
      }
    }
  }
  writeFileAtomic(dir, basename(keyFile), pair.keyPem, KEY_MODE, problem);
  writeFileAtomic(dir, basename(certFile), pair.certPem, CERT_MODE, problem);
  syncDir(dir);
  return { certFile, keyFile };
}

/**
 * Writes `name` in `certDir` so that it is either the old file or the whole new one, never part:
 * a temp file in the same directory (rename is atomic only within a filesystem), created with its
 * final mode (a key is never readable by others, not even for an instant), fsynced, renamed over.
 */
export function writeFileAtomic(
  certDir: string,
  name: string,
  data: string,
  mode: number,
  problem: (what: string, err: unknown) => EchodError = (what, err) => certDirError(certDir, what, err),
): void {
  const tmp = join(certDir, `.${name}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  let fd: number | undefined;
  try {
    fd = openSync(tmp, 'wx', mode);
    writeFileSync(fd, data);
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, join(certDir, name));
  } catch (err) {
    if (fd !== undefined) closeSync(fd);
    rmSync(tmp, { force: true });
    throw problem(`can't write ${name}`, err);
  }
}

/** Makes the renames durable: without it a power cut can bring back the old directory entries. */
export function syncDir(certDir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(certDir, 'r');
    fsyncSync(fd);
  } catch {
    // Some filesystems can't fsync a directory; the files themselves are complete either way.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

export function certDirError(certDir: string, what: string, err: unknown): EchodError {
  return ioError(`--cert-dir ${certDir}`, what, err, 'choose another --cert-dir');
}

function ioError(subject: string, what: string, err: unknown, orElse: string): EchodError {
  const why = systemErrorCode(err) === 'EACCES' ? 'permission denied' : (err as Error).message;
  return new EchodError('ECHOD_CERT_IO', `${subject}: ${what}: ${why} (make it writable by the user the daemon runs as, or ${orElse})`, {
    cause: err,
  });
}
