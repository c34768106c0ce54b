// The test-peer scenarios (issue 15): every way a TLS server can be wrong that the scenario
// listener serves, one server name each. The names are public interface: client test suites
// hard-code them. `tls-echod scenarios`, GET /scenarios, docs/testing-clients.md and what the
// listener serves are all this one list.

import { isIP } from 'node:net';

export type ScenarioCategory = 'certificate' | 'protocol' | 'client-certificate' | 'behaviour';

export interface Scenario {
  /** The first label of its server name: `<name>.<--scenario-domain>`. */
  readonly name: string;
  readonly category: ScenarioCategory;
  /** What the server does, in a phrase. */
  readonly serverDoes: string;
  /** What a correct client that trusts ca.pem (and verifies the name) observes. */
  readonly clientSees: string;
}

const certificate = (name: string, serverDoes: string, clientSees: string): Scenario => ({ name, category: 'certificate', serverDoes, clientSees });
const protocol = (name: string, serverDoes: string, clientSees: string): Scenario => ({ name, category: 'protocol', serverDoes, clientSees });
const behaviour = (name: string, serverDoes: string, clientSees: string): Scenario => ({ name, category: 'behaviour', serverDoes, clientSees });

const REFUSES = 'refused';

// What a client sees is measured: python3's ssl and openssl s_client (OpenSSL 3.0), and Node 20, 22
// and 24 (OpenSSL 3.0 and 3.5), in test/scenarios/clients-*.test.ts and `check --scenarios`.
export const SCENARIOS: readonly Scenario[] = [
  certificate('valid', 'serves a correct chain from the local CA (the control)', 'verifies and echoes'),
  certificate('expired', 'serves a leaf that expired yesterday', `${REFUSES}: certificate has expired (OpenSSL verify code 10; Node CERT_HAS_EXPIRED)`),
  certificate('not-yet-valid', 'serves a leaf valid from 30 days on', `${REFUSES}: certificate is not yet valid (code 9; Node CERT_NOT_YET_VALID)`),
  certificate('wrong-host', 'serves a leaf for another name only (other.invalid)', `${REFUSES} by a client that checks the name: hostname mismatch (code 62; Node ERR_TLS_CERT_ALTNAME_INVALID); openssl s_client checks it only with -verify_hostname`),
  certificate('self-signed', 'serves a self-signed leaf', `${REFUSES}: self-signed certificate (code 18; Node DEPTH_ZERO_SELF_SIGNED_CERT)`),
  certificate('untrusted-root', "serves a chain to a CA the client doesn't have, that CA included", `${REFUSES}: self-signed certificate in certificate chain (code 19; Node SELF_SIGNED_CERT_IN_CHAIN)`),
  certificate('incomplete-chain', 'serves a leaf from an intermediate without sending the intermediate', `${REFUSES}: unable to get local issuer certificate (code 20; Node UNABLE_TO_VERIFY_LEAF_SIGNATURE)`),
  certificate('intermediate', 'serves the same kind of leaf with its intermediate (the control for incomplete-chain)', 'verifies and echoes'),
  certificate('no-san', 'serves a leaf with the name in the CN only', `${REFUSES} by clients that match SANs only (Go, rustls, browsers); Node, OpenSSL and Python fall back to the CN: they verify and echo`),
  certificate('sha1', 'serves a leaf signed with SHA-1', `${REFUSES}: CA signature digest algorithm too weak (code 68; Node says only UNSPECIFIED)`),
  certificate('rsa-1024', 'serves a 1024-bit RSA leaf', `${REFUSES} at OpenSSL security level 2 (Python, openssl, Node 24): EE certificate key too weak (code 66); Node 20 and 22, at level 1, verify and echo`),
  certificate('wrong-eku', 'serves a leaf whose extended key usage is clientAuth only', `${REFUSES}: unsuitable certificate purpose (code 26; Node INVALID_PURPOSE)`),
  protocol('tls1.0', 'speaks TLS 1.0 only, legacy ciphers allowed', `${REFUSES} by default clients: a protocol_version alert (Python, Node), or "legacy sigalg disallowed" from an openssl that still offers TLS 1.0; a client allowing TLS 1.0 at security level 0 echoes`),
  protocol('tls1.1', 'speaks TLS 1.1 only, legacy ciphers allowed', `${REFUSES} by default clients: a protocol_version alert (Python, Node), or "legacy sigalg disallowed" from an openssl that still offers TLS 1.1; a client allowing TLS 1.1 at security level 0 echoes`),
  protocol('tls1.2-only', 'speaks TLS 1.2 only', 'echoes over TLS 1.2; a client that insists on 1.3 gets a protocol_version alert'),
  protocol('tls1.3-only', 'speaks TLS 1.3 only', 'echoes over TLS 1.3; a client capped at 1.2 gets a protocol_version alert'),
  protocol('static-rsa', 'speaks TLS 1.2 with RSA key exchange only (no forward secrecy)', `${REFUSES} by a client that offers forward-secret suites only (Python's default: a handshake_failure alert); Node and openssl echo, with RSA key exchange`),
  protocol('dh-1024', 'speaks TLS 1.2 with DHE over a 1024-bit group only', `${REFUSES} at OpenSSL security level 2 (Python, openssl, Node 24): dh key too small; Node 20 and 22 echo`),
  {
    name: 'client-cert-required',
    category: 'client-certificate',
    serverDoes: 'requires a client certificate from the local CA',
    clientSees: 'echoes with a certificate from `cert client`; without one, a certificate_required alert (in TLS 1.3 the client\'s handshake completes and the alert comes at its first read)',
  },
  { name: 'client-cert-requested', category: 'client-certificate', serverDoes: 'asks for a client certificate without requiring one', clientSees: 'echoes either way' },
  behaviour('no-close-notify', 'echoes the first chunk, then closes TCP without close_notify', 'the echo, then an EOF without close_notify: Python (SSLEOFError) and openssl ("unexpected eof") report the truncation, Node a plain end'),
  behaviour('reset-after-echo', 'echoes the first chunk, then resets the connection', 'the echo, then a TCP reset: openssl reports it (errno 104); Python sees an EOF (SSLEOFError), and Node an end or ECONNRESET, as the reset comes with the echo or after it'),
  behaviour('close-after-handshake', 'sends close_notify right after the handshake', 'a clean close, nothing echoed'),
  behaviour('no-echo', 'reads and never answers', "the client's own read timeout"),
  behaviour('slow-echo', 'echoes each chunk after --scenario-delay ms', 'the echo, no sooner than the delay'),
  behaviour('small-records', 'echoes in TLS records of at most 512 bytes', 'the echo, in many small records'),
  behaviour('slow-handshake', 'answers the ClientHello after --scenario-delay ms', 'a handshake no faster than the delay, then the echo'),
  behaviour('stall-handshake', 'never answers the ClientHello', 'its connect timeout; or, at --handshake-timeout, a close without an alert'),
  behaviour('handshake-alert', 'answers the ClientHello with a fatal handshake_failure alert', 'a handshake_failure alert (not unrecognized_name, which marks an unknown scenario)'),
];

/** The server name a client sends as SNI to reach `scenario`. */
export function scenarioServerName(scenario: string, domain: string): string {
  return `${scenario}.${domain}`;
}

/** The scenario a server name picks under `domain`, or undefined (then the listener answers unrecognized_name). */
export function scenarioForServerName(serverName: string | undefined, domain: string): Scenario | undefined {
  if (serverName === undefined) return undefined;
  const suffix = `.${domain.toLowerCase()}`;
  const name = serverName.toLowerCase();
  if (!name.endsWith(suffix)) return undefined;
  const label = name.slice(0, -suffix.length);
  return SCENARIOS.find((s) => s.name === label);
}

/** One scenario as `tls-echod scenarios --json` and GET /scenarios give it: key names are public interface. */
export interface ScenarioEntry {
  readonly name: string;
  readonly serverName: string;
  readonly category: ScenarioCategory;
  readonly serverDoes: string;
  readonly clientSees: string;
}

/** The catalogue under `domain` (--scenario-domain), in catalogue order: what the command and the admin endpoint print. */
export function scenarioCatalogue(domain: string): ScenarioEntry[] {
  return SCENARIOS.map((s) => ({ name: s.name, serverName: scenarioServerName(s.name, domain), category: s.category, serverDoes: s.serverDoes, clientSees: s.clientSees }));
}

/** The longest server name SNI and a certificate's DNS SAN can carry (RFC 1035's 253, no trailing dot). */
const MAX_SERVER_NAME_LENGTH = 253;
const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i;

/**
 * Why `domain` can't be a --scenario-domain, or undefined when it can: it must be a DNS name
 * (SNI carries no IP address) short enough that every `<scenario>.<domain>` still is one.
 */
export function scenarioDomainProblem(domain: string): string | undefined {
  const fix = 'give a DNS name such as localhost or tls.test: letters, digits and inner hyphens, in dot-separated labels of 1 to 63 characters';
  if (domain.length === 0) return `it is empty (${fix})`;
  if (isIP(domain) !== 0) return `${JSON.stringify(domain)} is an IP address, and SNI can't carry one (${fix})`;
  if (domain.endsWith('.')) return `${JSON.stringify(domain)} ends with a dot, which SNI doesn't allow (leave the trailing dot out)`;
  const bad = domain.split('.').find((label) => !DNS_LABEL.test(label));
  if (bad !== undefined) return `${JSON.stringify(domain)} is not a DNS name: the label ${JSON.stringify(bad)} is not allowed (${fix})`;
  const longest = Math.max(...SCENARIOS.map((s) => scenarioServerName(s.name, domain).length));
  if (longest > MAX_SERVER_NAME_LENGTH) return `${JSON.stringify(domain)} is too long: scenario server names would reach ${longest} characters, over DNS's ${MAX_SERVER_NAME_LENGTH} (give a shorter domain)`;
  return undefined;
}
