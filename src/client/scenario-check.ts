// `tls-echod check <host:port> --scenarios`: the daemon's own client (runCheck) against every
// test-peer scenario of a `serve --scenarios` listener, each compared with what a Node client
// that trusts ca.pem and verifies the name must observe there. Plus one name that is no
// scenario, which must get unrecognized_name.
//
// The expectations are measured, on Node 20 (OpenSSL 3.0), 22 and 24 (OpenSSL 3.5). Where the
// versions differ (rsa-1024, dh-1024, reset-after-echo, the handshake_failure alert's spelling)
// an expectation accepts each version's outcome and names it, and the observed column says which
// one happened. The table for a terminal is in scenario-check-report.ts.

import { SCENARIOS, scenarioServerName } from '../scenarios/catalogue';
import { runCheck, type CheckResult } from './check';
import { SCENARIO_CHECK_DEFAULTS, type CheckOptions, type ScenarioCheckOptions } from './check-options';
import { tlsAlertName } from './client-cert-refusal';

/** One row: a scenario (or case of one), what was expected, what was observed. */
export interface ScenarioCheckRow {
  /** The scenario; `client-cert-required (with --cert)` for its second case; UNKNOWN_SCENARIO for the unknown name. */
  readonly name: string;
  readonly expected: string;
  readonly observed: string;
  readonly ok: boolean;
}

export interface ScenarioCheckReport {
  /** Every row matched. */
  readonly ok: boolean;
  readonly scenarios: readonly ScenarioCheckRow[];
}

/** A name under the domain that is no scenario: the listener must answer unrecognized_name. */
export const UNKNOWN_SCENARIO = 'no-such-scenario';

/** Bytes each scenario sends: one record, so the first-chunk behaviours act on all of it. */
const PAYLOAD_BYTES = 64;

/** The least time no-echo and stall-handshake are watched for silence (ms), whatever the delay. */
const MIN_SILENCE_MS = 1000;

/**
 * How much sooner than the delay a timed step may complete and still count. The daemon's timer
 * starts on libuv's cached loop time, which can be a millisecond or two behind the clock.
 */
const TIMER_SLACK_MS = 5;

/** What a scenario must show. */
export interface Expectation {
  /** For the `expected` column. */
  readonly expected: string;
  /** The `observed` text when `r` is what was expected; undefined when it is not. */
  match(r: CheckResult): string | undefined;
}

/** One run of the client: a scenario's server name, its own options, and its expectation. */
interface Probe {
  readonly name: string;
  readonly servername: string;
  readonly options: Partial<CheckOptions>;
  readonly expectation: Expectation;
  /** Roughly how long it takes (ms): the slow ones start first so that they overlap. */
  readonly lastsMs: number;
}

/** Runs every probe, at most `concurrency` at once; rows in catalogue order. */
export async function runScenarioCheck(opts: ScenarioCheckOptions): Promise<ScenarioCheckReport> {
  const probes = scenarioProbes(opts);
  const concurrency = Math.max(1, opts.concurrency ?? SCENARIO_CHECK_DEFAULTS.concurrency);
  const rows: ScenarioCheckRow[] = new Array<ScenarioCheckRow>(probes.length);
  const queue = probes.map((probe, index) => ({ probe, index })).sort((a, b) => b.probe.lastsMs - a.probe.lastsMs);
  const worker = async (): Promise<void> => {
    for (let next = queue.shift(); next !== undefined; next = queue.shift()) {
      rows[next.index] = await runProbe(next.probe, opts);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, probes.length) }, worker));
  return { ok: rows.every((r) => r.ok), scenarios: rows };
}

async function runProbe(probe: Probe, opts: ScenarioCheckOptions): Promise<ScenarioCheckRow> {
  const result = await runCheck({
    host: opts.host,
    port: opts.port,
    ca: opts.ca,
    caLabel: opts.caLabel,
    servername: probe.servername,
    bytes: PAYLOAD_BYTES,
    timeoutMs: opts.timeoutMs ?? SCENARIO_CHECK_DEFAULTS.timeoutMs,
    ...probe.options,
  });
  const matched = probe.expectation.match(result);
  return { name: probe.name, expected: probe.expectation.expected, observed: matched ?? describeResult(result), ok: matched !== undefined };
}

/** Every probe of a run: each scenario in catalogue order (client-cert-required twice with a client certificate), then the unknown name. */
export function scenarioProbes(opts: ScenarioCheckOptions): Probe[] {
  const domain = opts.domain ?? SCENARIO_CHECK_DEFAULTS.domain;
  const delayMs = opts.delayMs ?? SCENARIO_CHECK_DEFAULTS.delayMs;
  const timeoutMs = opts.timeoutMs ?? SCENARIO_CHECK_DEFAULTS.timeoutMs;
  const silenceMs = Math.max(2 * delayMs, MIN_SILENCE_MS);
  const expectations = scenarioExpectations({ delayMs, silenceMs, clientCertName: opts.clientCert?.name });
  const probes: Probe[] = [];
  for (const scenario of SCENARIOS) {
    const servername = scenarioServerName(scenario.name, domain);
    const expectation = expectations.get(scenario.name);
    if (expectation === undefined) throw new Error(`no expectation for scenario ${scenario.name}`);
    let options: Partial<CheckOptions> = {};
    let lastsMs = 0;
    switch (scenario.name) {
      case 'slow-echo':
      case 'slow-handshake':
        options = { timeoutMs: delayMs + timeoutMs };
        lastsMs = delayMs;
        break;
      case 'no-echo':
      case 'stall-handshake':
        options = { timeoutMs: silenceMs };
        lastsMs = silenceMs;
        break;
      case 'no-close-notify':
      case 'reset-after-echo':
        options = { awaitServerClose: true };
        break;
    }
    probes.push({ name: scenario.name, servername, options, expectation, lastsMs });
    if (scenario.name === 'client-cert-required' && opts.clientCert !== undefined) {
      probes.push({ name: `${scenario.name} (with --cert)`, servername, options: { clientCert: opts.clientCert }, expectation: expectations.get(`${scenario.name}+cert`)!, lastsMs });
    }
  }
  probes.push({ name: UNKNOWN_SCENARIO, servername: scenarioServerName(UNKNOWN_SCENARIO, domain), options: {}, expectation: expectations.get(UNKNOWN_SCENARIO)!, lastsMs: 0 });
  return probes;
}

interface ExpectationInputs {
  /** The daemon's --scenario-delay (ms). */
  readonly delayMs: number;
  /** How long no-echo and stall-handshake are watched (ms). */
  readonly silenceMs: number;
  /** The client certificate's name (`CN=alice`) when one is given. */
  readonly clientCertName: string | undefined;
}

/** What a Node client that trusts ca.pem and verifies the name observes at each scenario, by name (and `client-cert-required+cert`, UNKNOWN_SCENARIO). */
export function scenarioExpectations(x: ExpectationInputs): Map<string, Expectation> {
  return new Map<string, Expectation>([
    ['valid', echo()],
    ['expired', refused(['CERT_HAS_EXPIRED'])],
    ['not-yet-valid', refused(['CERT_NOT_YET_VALID'])],
    ['wrong-host', refused(['ERR_TLS_CERT_ALTNAME_INVALID'])],
    ['self-signed', refused(['DEPTH_ZERO_SELF_SIGNED_CERT'])],
    // The untrusted root is sent with its leaf, so OpenSSL reports it as a self-signed root in
    // the chain; a server that leaves it out gets the local-issuer code.
    ['untrusted-root', refused(['SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY'])],
    ['incomplete-chain', refused(['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY'])],
    ['intermediate', echo()],
    ['no-san', echo({ note: 'Node falls back to the CN' })],
    // Node has no name for OpenSSL's CA_MD_TOO_WEAK ("CA signature digest algorithm too weak").
    ['sha1', refused(['UNSPECIFIED'], "OpenSSL's CA_MD_TOO_WEAK")],
    // Node 24 raised the client's OpenSSL security level to 2: EE_KEY_TOO_SMALL, which Node
    // also calls UNSPECIFIED. Node 20 and 22, at level 1, accept the key.
    ['rsa-1024', either(echo({ note: 'Node 20, 22' }), refused(['UNSPECIFIED'], "OpenSSL's EE_KEY_TOO_SMALL; Node 24"))],
    ['wrong-eku', refused(['INVALID_PURPOSE'])],
    ['tls1.0', alert(['ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION'], 'protocol_version')],
    ['tls1.1', alert(['ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION'], 'protocol_version')],
    ['tls1.2-only', echo({ version: 'TLSv1.2' })],
    ['tls1.3-only', echo({ version: 'TLSv1.3' })],
    // Node's default cipher list still has the RSA key exchange suites (TLS_RSA_WITH_...).
    ['static-rsa', echo({ version: 'TLSv1.2', cipherPrefix: 'TLS_RSA_WITH_', cipherText: 'RSA key exchange' })],
    // Node 24's security level 2 wants a 2048-bit group; 20 and 22 (with a SecurityWarning) take 1024.
    ['dh-1024', either(echo({ version: 'TLSv1.2', cipherPrefix: 'TLS_DHE_', cipherText: 'DHE', note: 'Node 20, 22' }), failed(['ERR_SSL_DH_KEY_TOO_SMALL'], 'ERR_SSL_DH_KEY_TOO_SMALL (Node 24)'))],
    // TLS 1.3: the handshake completes on the client, then the server's alert arrives.
    ['client-cert-required', alert(['ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED'], 'certificate_required')],
    ['client-cert-required+cert', echo({ clientCert: { requested: true, sent: x.clientCertName ?? null } })],
    ['client-cert-requested', echo({ clientCert: { requested: true, sent: null } })],
    // Node reads an EOF without close_notify as a plain end, like a clean close.
    ['no-close-notify', echo({ serverClose: ['end'], closeText: 'then EOF' })],
    // Node 24 reports the reset; on 20 and 22 it reaches the TLS layer as a plain end.
    ['reset-after-echo', echo({ serverClose: ['ECONNRESET', 'end'], closeText: 'then ECONNRESET (Node 24) or EOF (Node 20, 22)' })],
    ['close-after-handshake', closedAfterHandshake()],
    ['no-echo', silentAfterHandshake(x.silenceMs)],
    ['slow-echo', echo({ roundTripAtLeastMs: x.delayMs })],
    // Record sizes are below what a TLS client can see: only the echo is checked.
    ['small-records', echo()],
    ['slow-handshake', echo({ handshakeAtLeastMs: x.delayMs })],
    ['stall-handshake', noHandshake(x.silenceMs)],
    ['handshake-alert', alertNamed('handshake failure', 'handshake_failure')],
    [UNKNOWN_SCENARIO, alert(['ERR_SSL_TLSV1_UNRECOGNIZED_NAME', 'ERR_SSL_TLSV1_ALERT_UNRECOGNIZED_NAME'], 'unrecognized_name')],
  ]);
}

interface EchoWants {
  readonly version?: string;
  /** The cipher's IANA name starts with this... */
  readonly cipherPrefix?: string;
  /** ...which is described as this. */
  readonly cipherText?: string;
  readonly note?: string;
  readonly handshakeAtLeastMs?: number;
  readonly roundTripAtLeastMs?: number;
  readonly clientCert?: { readonly requested: boolean; readonly sent: string | null };
  /** With awaitServerClose: how the server may end the connection after the echo. */
  readonly serverClose?: readonly string[];
  readonly closeText?: string;
}

/** The echo came back byte for byte, verified, and whatever else `w` asks for. */
function echo(w: EchoWants = {}): Expectation {
  const parts = ['echo'];
  if (w.version !== undefined) parts.push(`over ${w.version}`);
  if (w.cipherText !== undefined) parts.push(`with ${w.cipherText}`);
  if (w.handshakeAtLeastMs !== undefined) parts.push(`after a handshake of at least ${w.handshakeAtLeastMs} ms`);
  if (w.roundTripAtLeastMs !== undefined) parts.push(`no sooner than ${w.roundTripAtLeastMs} ms`);
  if (w.clientCert !== undefined) parts.push(`; certificate requested, ${w.clientCert.sent ?? 'none'} sent`);
  if (w.closeText !== undefined) parts.push(`, ${w.closeText}`);
  if (w.note !== undefined) parts.push(`(${w.note})`);
  return {
    expected: parts.join(' ').replace(/ ([;,])/g, '$1'),
    match(r) {
      if (!r.ok || !r.verified) return undefined;
      if (w.version !== undefined && r.tlsVersion !== w.version) return undefined;
      if (w.cipherPrefix !== undefined && !(r.cipher ?? '').startsWith(w.cipherPrefix)) return undefined;
      if (w.handshakeAtLeastMs !== undefined && (r.handshakeMs ?? 0) < w.handshakeAtLeastMs - TIMER_SLACK_MS) return undefined;
      if (w.roundTripAtLeastMs !== undefined && (r.roundTripMs ?? 0) < w.roundTripAtLeastMs - TIMER_SLACK_MS) return undefined;
      if (w.clientCert !== undefined && (r.clientCert?.requested !== w.clientCert.requested || r.clientCert.sent !== w.clientCert.sent)) return undefined;
      if (w.serverClose !== undefined && !w.serverClose.includes(r.serverClose ?? '')) return undefined;
      return describeResult(r, { timing: w.handshakeAtLeastMs !== undefined || w.roundTripAtLeastMs !== undefined });
    },
  };
}

/** The handshake completed and verification failed with one of `codes`. */
function refused(codes: readonly string[], note?: string): Expectation {
  return {
    expected: `refused: ${codes.join(' or ')}${note === undefined ? '' : ` (${note})`}`,
    match: (r) => (!r.ok && r.verifyError !== null && codes.includes(r.verifyError) ? describeResult(r) : undefined),
  };
}

/** The connection failed with one of `codes` (no echo). */
function failed(codes: readonly string[], expected: string): Expectation {
  return { expected, match: (r) => (!r.ok && r.cause !== null && codes.includes(r.cause) ? describeResult(r) : undefined) };
}

/** The server's fatal alert `alertName`, seen as one of `codes`. */
function alert(codes: readonly string[], alertName: string): Expectation {
  return failed(codes, `alert ${alertName} (${codes[0]})`);
}

/** The server's fatal alert, by its name in the error code, however this OpenSSL spells the code. */
function alertNamed(name: string, alertName: string): Expectation {
  return {
    // OpenSSL 3.0 spells the code ERR_SSL_SSLV3_ALERT_..., 3.5 (Node 22, 24) ERR_SSL_SSL/TLS_ALERT_...
    expected: `alert ${alertName} (ERR_SSL_{SSLV3,SSL/TLS}_ALERT_${alertName.toUpperCase()})`,
    match: (r) => (!r.ok && r.cause !== null && tlsAlertName(r.cause) === name ? describeResult(r) : undefined),
  };
}

/** Either expectation; the observed column says which. */
function either(a: Expectation, b: Expectation): Expectation {
  return { expected: `${a.expected}, or ${b.expected}`, match: (r) => a.match(r) ?? b.match(r) };
}

/** A verified handshake, then the server's clean close with nothing echoed. */
function closedAfterHandshake(): Expectation {
  return {
    expected: 'handshake, then a close with nothing echoed',
    match: (r) => (r.reason === 'closed' && r.tlsVersion !== null && r.verified && r.bytesEchoed === 0 ? describeResult(r) : undefined),
  };
}

/** A verified handshake, then nothing back until the deadline. */
function silentAfterHandshake(ms: number): Expectation {
  return {
    expected: `handshake, then nothing echoed within ${ms} ms`,
    match: (r) => (r.reason === 'timeout' && r.tlsVersion !== null && r.verified && r.bytesEchoed === 0 ? describeResult(r) : undefined),
  };
}

/**
 * No answer to the ClientHello until the deadline; or, when the daemon's --handshake-timeout is
 * the shorter, its close (a reset or EOF, no alert) before any handshake.
 */
function noHandshake(ms: number): Expectation {
  return {
    expected: `no handshake within ${ms} ms, or a close without alert (the daemon's --handshake-timeout)`,
    match(r) {
      if (r.ok || r.connectMs === null || r.tlsVersion !== null) return undefined;
      const closed = r.reason === 'closed' || (r.reason === 'reset' && r.cause === 'ECONNRESET');
      return r.reason === 'timeout' || closed ? describeResult(r) : undefined;
    },
  };
}

/** The `observed` column: what the client saw, in a phrase; an echo's timings only with `timing` (default true). */
export function describeResult(r: CheckResult, options: { timing?: boolean } = {}): string {
  const session = r.tlsVersion === null ? '' : `${r.tlsVersion} ${r.cipher ?? '?'}`;
  if (r.ok) {
    const parts = [`echo over ${session}`];
    if (options.timing !== false) parts.push(`handshake ${Math.round(r.handshakeMs ?? 0)} ms`, `round trip ${Math.round(r.roundTripMs ?? 0)} ms`);
    if (r.clientCert?.requested === true) parts.push(`certificate requested, ${r.clientCert.sent ?? 'none'} sent`);
    if (r.serverClose !== undefined) parts.push(r.serverClose === 'end' ? 'then EOF' : r.serverClose === 'open' ? 'then left open' : `then ${r.serverClose}`);
    return parts.join(', ');
  }
  if (r.verifyError !== null) return `refused: ${r.verifyError}`;
  if (r.reason === 'timeout') {
    if (r.connectMs === null) return 'no TCP connection before the deadline';
    return r.tlsVersion === null ? 'no handshake before the deadline' : `${session}, then ${r.bytesEchoed} bytes echoed before the deadline`;
  }
  if (r.reason === 'closed') return r.tlsVersion === null ? 'closed during the handshake' : `${session}, then closed with ${r.bytesEchoed} bytes echoed`;
  if (r.cause !== null) {
    // OpenSSL names this one alert without _ALERT_.
    const alertName = r.cause.endsWith('_UNRECOGNIZED_NAME') ? 'unrecognized name' : tlsAlertName(r.cause);
    const what = alertName === undefined ? r.cause : `alert ${alertName.replace(/ /g, '_')} (${r.cause})`;
    return r.tlsVersion === null ? what : `${session}, then ${what}`;
  }
  return r.error ?? 'failed';
}
