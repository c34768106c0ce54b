// `tls-echod check <host:port>`: one TLS session, one echo, verified and reported. Parses the
// flags (every problem listed at once, exit 2) and calls runCheck; exit 1 when the check fails.
// Also exports the flag parsers `bench` shares (target, --ca, --tls, --servername, numbers);
// --cert and --key, which both present, are in client-cert-flags.ts.

import type { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { CHECK_DEFAULTS, type CheckOptions, type TlsVersionPin } from '../client/check-options';
import { parseHostPort, type HostPort } from '../config/config';
import { ConfigError, EchodError, systemErrorCode } from '../errors';
import { addClientCertOptions, readClientCert, type ClientCertFlags } from './client-cert-flags';
import { collect } from './options';

/** Largest --bytes: the payload is held in memory. */
const MAX_CHECK_BYTES = 256 * 1024 * 1024;

interface CheckFlags extends ClientCertFlags {
  ca?: string;
  insecure?: boolean;
  servername?: string;
  bytes?: string;
  timeout?: string;
  tls?: string;
  alpn?: string[];
  json?: boolean;
}

export function register(program: Command): void {
  const command = program
    .command('check')
    .description('connect over TLS, echo random bytes, verify every byte and report the session (exit 0 only if the echo matched)')
    .argument('<host:port>', 'server to check, e.g. 127.0.0.1:4433, localhost:4433 or [::1]:4433')
    .option('--ca <pem>', "verify the server against this PEM CA [default: Node's built-in CA store]")
    .option('--insecure', 'report certificate verification but do not fail on it')
    .option('--servername <name>', 'SNI and name verified [default: the host when it is a name; none for an IP]')
    .option('--bytes <n>', `random bytes to send and expect back; 0 = handshake only [default: ${CHECK_DEFAULTS.bytes}]`)
    .option('--timeout <ms>', `deadline for connect, handshake and echo together (ms) [default: ${CHECK_DEFAULTS.timeoutMs}]`)
    .option('--tls <version>', 'pin the TLS version: 1.2 or 1.3 [default: negotiate]')
    .option('--alpn <protocol>', 'offer this ALPN protocol; repeat for more, in order [default: none]', collect);
  addClientCertOptions(command)
    .option('--json', 'print one JSON object instead of text')
    .action(async (target: string, flags: CheckFlags) => {
      const options = checkOptionsFromFlags(target, flags);
      // The client is loaded when it runs: `serve` never needs it (docs/architecture.md).
      const [{ runCheck }, { formatCheckResult }] = await Promise.all([import('../client/check'), import('../client/check-report')]);
      const result = await runCheck(options);
      const text = flags.json === true ? JSON.stringify(result) : formatCheckResult(result, { verdict: result.ok });
      process.stdout.write(text + '\n');
      // cli.ts prints the message on stderr and exits 1; the report above stays on stdout.
      if (!result.ok) throw new EchodError(result.code ?? 'ECHOD_CHECK_FAILED', result.error ?? 'check failed');
    });
}

/** Turns check's flags into runCheck options; throws ConfigError listing every problem. */
export function checkOptionsFromFlags(target: string, flags: CheckFlags): CheckOptions {
  const problems: string[] = [];
  const address = parseTarget(target, problems);
  const bytes = parseWhole(flags.bytes, '--bytes', 0, MAX_CHECK_BYTES, ' (bytes)', problems);
  const timeoutMs = parseWhole(flags.timeout, '--timeout', 1, 3_600_000, ' (ms)', problems);
  const tls = parseTlsPin(flags.tls, problems);
  const servername = parseServername(flags.servername, problems);
  const alpn = flags.alpn ?? [];
  for (const p of alpn) {
    if (p.length === 0 || Buffer.byteLength(p) > 255) problems.push(`--alpn: a protocol name is 1 to 255 bytes, got ${JSON.stringify(p)}`);
  }
  const ca = readCa(flags.ca, problems);
  const clientCert = readClientCert(flags, problems);
  if (problems.length > 0) throw new ConfigError(problems);
  return {
    host: address!.host,
    port: address!.port,
    ca,
    caLabel: flags.ca,
    insecure: flags.insecure === true,
    servername,
    bytes,
    timeoutMs,
    tls,
    alpn,
    clientCert,
  };
}

/** A server address for a client: host:port or [v6]:port, with a host and a non-zero port. */
export function parseTarget(text: string, problems: string[]): HostPort | undefined {
  const example = '(e.g. 127.0.0.1:4433, localhost:4433 or [::1]:4433)';
  if (text.trim().startsWith(':')) {
    problems.push(`<host:port>: give the host as well as the port ${example}, got ${JSON.stringify(text)}`);
    return undefined;
  }
  try {
    const hp = parseHostPort(text);
    if (hp.port === 0) {
      problems.push(`<host:port>: port must be 1-65535 ${example}, got 0`);
      return undefined;
    }
    return hp;
  } catch (err) {
    problems.push(`<host:port>: ${(err as Error).message}`);
    return undefined;
  }
}

/** A whole number flag; undefined when not given (or invalid, with a problem noted). */
export function parseWhole(text: string | undefined, flag: string, min: number, max: number, unit: string, problems: string[]): number | undefined {
  if (text === undefined) return undefined;
  const t = text.trim();
  if (!/^\d+$/.test(t)) {
    problems.push(`${flag}: must be a whole number${unit}, got ${JSON.stringify(text)}`);
    return undefined;
  }
  const n = Number(t);
  if (n < min || n > max) {
    problems.push(`${flag}: must be between ${min} and ${max}${unit}, got ${n}`);
    return undefined;
  }
  return n;
}

export function parseTlsPin(text: string | undefined, problems: string[]): TlsVersionPin | undefined {
  if (text === undefined) return undefined;
  const t = text.trim().replace(/^(tlsv?)/i, '');
  if (t === '1.2' || t === '1.3') return t;
  problems.push(`--tls: must be 1.2 or 1.3, got ${JSON.stringify(text)} (leave it out to negotiate)`);
  return undefined;
}

export function parseServername(text: string | undefined, problems: string[]): string | undefined {
  if (text === undefined) return undefined;
  if (text === '' || isIP(text) !== 0) {
    problems.push(`--servername: must be a DNS name (SNI can't carry an IP address), got ${JSON.stringify(text)}; leave it out to verify an IP target by its IP SAN`);
    return undefined;
  }
  return text;
}

/** Reads a --ca file; undefined when not given (or unusable, with a problem noted). */
export function readCa(file: string | undefined, problems: string[]): string | undefined {
  if (file === undefined) return undefined;
  let pem: string;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (err) {
    const why = systemErrorCode(err) === 'ENOENT' ? 'no such file' : (err as Error).message;
    problems.push(`--ca ${file}: ${why} (give the PEM CA certificate that signed the server's, e.g. certs/ca.pem)`);
    return undefined;
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) {
    problems.push(`--ca ${file}: no PEM certificate in it (give the CA certificate in PEM form, e.g. certs/ca.pem)`);
    return undefined;
  }
  return pem;
}
