// One error class per failure family, each with a stable `code`. Callers branch on the code,
// never on message text. The catalogue with what each code means is in docs/errors.md.

export type ErrorCode =
  | 'ECHOD_CONFIG_INVALID'
  | 'ECHOD_CERT_INVALID'
  | 'ECHOD_CERT_IO'
  | 'ECHOD_LISTEN_FAILED'
  | 'ECHOD_WORKER_CRASH_LOOP'
  | 'ECHOD_CHECK_FAILED'
  | 'ECHOD_ECHO_MISMATCH';

/** Base of every error the daemon raises on purpose. `exitCode` is what the CLI exits with. */
export class EchodError extends Error {
  readonly code: ErrorCode;
  readonly exitCode: number;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; exitCode?: number } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.exitCode = options.exitCode ?? 1;
  }
}

/** Bad flags, env vars or config file: every problem is listed at once. Exit code 2. */
export class ConfigError extends EchodError {
  readonly problems: readonly string[];

  constructor(problems: readonly string[]) {
    super('ECHOD_CONFIG_INVALID', formatProblems(problems), { exitCode: 2 });
    this.problems = problems;
  }
}

/** A certificate or key that can't be used: unreadable, unparsable, mismatched, expired. */
export class CertError extends EchodError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('ECHOD_CERT_INVALID', message, options);
  }
}

/** The listening socket could not be opened (address in use, permission denied, ...). */
export class ListenError extends EchodError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('ECHOD_LISTEN_FAILED', message, options);
  }
}

/** A worker died too often in too short a time: the daemon stops instead of spinning. */
export class WorkerCrashLoopError extends EchodError {
  constructor(message: string) {
    super('ECHOD_WORKER_CRASH_LOOP', message);
  }
}

function formatProblems(problems: readonly string[]): string {
  if (problems.length === 1) return `invalid configuration: ${problems[0]}`;
  return `invalid configuration (${problems.length} problems):\n` + problems.map((p) => `  - ${p}`).join('\n');
}

/** The errno-style code of a system error (`EADDRINUSE`, ...), or undefined. */
export function systemErrorCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string') return err.code;
  return undefined;
}

/**
 * Why a listening socket could not be opened, with the fix, for the address `flag` set
 * (`--listen`, `--admin`); the error's own message for anything else.
 */
export function describeListenError(err: Error, flag: string): string {
  switch (systemErrorCode(err)) {
    case 'EADDRINUSE':
      return `address in use (stop whatever holds it, or pick another port with ${flag})`;
    case 'EACCES':
      return `permission denied (ports below 1024 need root, CAP_NET_BIND_SERVICE or systemd socket activation; or pick a higher port with ${flag})`;
    case 'EADDRNOTAVAIL':
      return `address not available on this machine (use a local address such as 127.0.0.1 in ${flag})`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `host name does not resolve (use an IP address such as 127.0.0.1 in ${flag})`;
    default:
      return `cannot listen (${err.message})`;
  }
}
