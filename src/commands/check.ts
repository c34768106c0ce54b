// `tls-echod check <host:port>`: one TLS session, one echo, verified and reported. Parses the
// flags (every problem listed at once, exit 2) and calls runCheck; exit 1 when the check fails.
// Also exports the flag parsers `bench` shares (target, --ca, --tls, --servername, numbers);
// --cert and --key, which both present, are in client-cert-flags.ts. With --scenarios it runs
// the client against every scenario of a `serve --scenarios` listener instead (scenario-check.ts).

import type { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { CHECK_DEFAULTS, SCENARIO_CHECK_DEFAULTS, type CheckOptions, type ScenarioCheckOptions, type TlsVersionPin } from '../client/check-options';
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
  scenarios?: boolean;
  scenarioDomain?: string;
  scenarioDelay?: string;
}

const SCENARIO_HELP = `
Scenarios (--scenarios):
  Each scenario is reached by its server name, <scenario>.<--scenario-domain>, on the
  address of \`serve --scenarios\`, and must show what a Node client that trusts --ca and
  verifies the name observes there: an echo, a verification code (CERT_HAS_EXPIRED, ...),
  an alert (protocol_version, handshake_failure, ...), a close, or silence. A name that is
  no scenario must get unrecognized_name. Four run at a time, each with its own deadline;
  with the default delay the whole run takes about 5 s.

Examples:
  tls-echod check localhost:4433 --ca certs/ca.pem
  tls-echod check 127.0.0.1:4434 --scenarios --ca certs/ca.pem
  tls-echod check 127.0.0.1:4434 --scenarios --ca certs/ca.pem --scenario-delay 500 --json \\
    --cert certs/clients/alice.pem --key certs/clients/alice-key.pem`;

/** The daemon's longest --scenario-delay (ms). */
const MAX_SCENARIO_DELAY_MS = 600_000;

export function register(program: Command): void {
  const command = program
    .command('check')
    .description(
      'connect over TLS, echo random bytes, verify every byte and report the session (exit 0 only if the echo matched); ' +
        'with --scenarios, check every scenario of a test-peer scenario listener instead',
    )
    .argument('<host:port>', 'server to check, e.g. 127.0.0.1:4433, localhost:4433 or [::1]:4433')
    .option('--ca <pem>', "verify the server against this PEM CA [default: Node's built-in CA store]")
    .option('--insecure', 'report certificate verification but do not fail on it')
    .option('--servername <name>', 'SNI and name verified [default: the host when it is a name; none for an IP]')
    .option('--bytes <n>', `random bytes to send and expect back; 0 = handshake only [default: ${CHECK_DEFAULTS.bytes}]`)
    .option('--timeout <ms>', `deadline for connect, handshake and echo together (ms); with --scenarios, each scenario's, on top of its delay [default: ${CHECK_DEFAULTS.timeoutMs}; with --scenarios ${SCENARIO_CHECK_DEFAULTS.timeoutMs}]`)
    .option('--tls <version>', 'pin the TLS version: 1.2 or 1.3 [default: negotiate]')
    .option('--alpn <protocol>', 'offer this ALPN protocol; repeat for more, in order [default: none]', collect);
  addClientCertOptions(command)
    .option('--json', 'print one JSON object instead of text')
    .option(
      '--scenarios',
      'check every test-peer scenario of the `serve --scenarios` listener at <host:port> (needs --ca, the daemon\'s ca.pem): one row each with what a ' +
        'verifying client should see and what it saw; exit 0 only if all match. --cert/--key add client-cert-required\'s case with a certificate',
    )
    .option('--scenario-domain <domain>', `with --scenarios: the daemon's --scenario-domain; scenario X is reached as X.<domain> [default: ${SCENARIO_CHECK_DEFAULTS.domain}]`)
    .option(
      '--scenario-delay <ms>',
      `with --scenarios: the daemon's --scenario-delay (ms), the least time slow-handshake and slow-echo must take; no-echo and stall-handshake are watched for twice this, at least 1000 ms [default: ${SCENARIO_CHECK_DEFAULTS.delayMs}]`,
    )
    .addHelpText('after', SCENARIO_HELP)
    .action(async (target: string, flags: CheckFlags) => {
      if (flags.scenarios === true) {
        const options = scenarioCheckOptionsFromFlags(target, flags);
        const [{ runScenarioCheck }, { formatScenarioReport, scenarioFailureMessage }] = await Promise.all([import('../client/scenario-check'), import('../client/scenario-check-report')]);
        const report = await runScenarioCheck(options);
        process.stdout.write((flags.json === true ? JSON.stringify(report) : formatScenarioReport(report, { verdict: report.ok })) + '\n');
        if (!report.ok) throw new EchodError('ECHOD_CHECK_FAILED', scenarioFailureMessage(report));
        return;
      }
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
  for (const [value, flag] of [[flags.scenarioDomain, '--scenario-domain'], [flags.scenarioDelay, '--scenario-delay']] as const) {
    if (value !== undefined) problems.push(`${flag}: only with --scenarios (add --scenarios to check a scenario listener)`);
  }
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

/** Turns check --scenarios' flags into runScenarioCheck options; throws ConfigError listing every problem. */
export function scenarioCheckOptionsFromFlags(target: string, flags: CheckFlags): ScenarioCheckOptions {
  const problems: string[] = [];
  const address = parseTarget(target, problems);
  const timeoutMs = parseWhole(flags.timeout, '--timeout', 1, 3_600_000, ' (ms)', problems);
  const delayMs = parseWhole(flags.scenarioDelay, '--scenario-delay', 0, MAX_SCENARIO_DELAY_MS, ' (ms; the daemon\'s --scenario-delay)', problems);
  const domain = parseScenarioDomain(flags.scenarioDomain, problems);
  // Each scenario sets these itself: the server name, a one-record payload, every version Node offers, verification on.
  const fixed: Array<[unknown, string, string]> = [
    [flags.servername, '--servername', 'each scenario is reached by its own server name, X.<--scenario-domain>'],
    [flags.bytes, '--bytes', 'each scenario sends one small record: the behaviour scenarios act on the first'],
    [flags.tls, '--tls', 'the protocol scenarios need every version Node offers'],
    [flags.alpn, '--alpn', 'the scenarios do not depend on ALPN'],
    [flags.insecure, '--insecure', 'the certificate scenarios are about verification'],
  ];
  for (const [value, flag, why] of fixed) if (value !== undefined) problems.push(`${flag}: not with --scenarios (${why}); leave it out`);
  if (flags.ca === undefined) problems.push("--scenarios needs --ca: the scenarios' certificates chain to the daemon's local CA (give its ca.pem, e.g. certs/ca.pem)");
  const ca = readCa(flags.ca, problems);
  const clientCert = readClientCert(flags, problems);
  if (problems.length > 0) throw new ConfigError(problems);
  return { host: address!.host, port: address!.port, ca: ca!, caLabel: flags.ca, domain, delayMs, timeoutMs, clientCert };
}

/** --scenario-domain: a DNS name, as the daemon takes it. */
function parseScenarioDomain(text: string | undefined, problems: string[]): string | undefined {
  if (text === undefined) return undefined;
  const t = text.trim().toLowerCase();
  const label = '[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?';
  if (t.length > 200 || isIP(t) !== 0 || !new RegExp(`^${label}(\\.${label})*$`).test(t)) {
    problems.push(`--scenario-domain: must be a DNS name such as localhost or test.example (the daemon's --scenario-domain), got ${JSON.stringify(text)}`);
    return undefined;
  }
  return t;
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
