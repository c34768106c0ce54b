// The TLS settings of each scenario (issue 15): what its tls.Server is made with. The certificate
// scenarios serve their own certificate; every other scenario serves a correct leaf from the local
// CA for its server name and differs in protocol, cipher or client-certificate policy only.

import type tls from 'node:tls';
import { SCENARIOS } from './catalogue';

/** A PEM key and certificate (with its chain). */
export interface KeyCert {
  readonly key: string;
  readonly cert: string;
}

/** A certificate scenario's key and certificate (leaf and the chain it sends). */
export interface NamedKeyCert extends KeyCert {
  readonly name: string;
}

export interface ScenarioTlsInputs {
  /** The certificate scenarios' certificates (scenario-certs.ts). */
  readonly certs: readonly NamedKeyCert[];
  /** An ECDSA leaf from the local CA naming every other scenario's server name. */
  readonly ecdsa: KeyCert;
  /** The same as an RSA-2048 leaf: RSA key exchange and DHE-RSA need an RSA certificate. */
  readonly rsa: KeyCert;
  /** The local CA (PEM): what client certificates must chain to. */
  readonly localCa: string;
  /** DH parameters of a 1024-bit group (PEM), for dh-1024. */
  readonly dh1024: string;
}

/** OpenSSL's security level 0: lets a server load and offer what the default levels refuse (weak keys, SHA-1, TLS 1.0). */
const LEVEL_0 = '@SECLEVEL=0';

/** TLS 1.2 suites without forward secrecy (RSA key exchange): the only ones static-rsa offers. */
const STATIC_RSA_CIPHERS = 'AES128-GCM-SHA256:AES256-GCM-SHA384:AES128-SHA256:AES256-SHA256:AES128-SHA:AES256-SHA';
/** TLS 1.2 suites with DHE over the server's group: the only ones dh-1024 offers. */
const DHE_CIPHERS = `DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-AES128-SHA256:DHE-RSA-AES128-SHA:${LEVEL_0}`;

/** The tls.Server options of every scenario the listener completes a handshake for, by name. */
export function scenarioTlsOptions(inputs: ScenarioTlsInputs): Map<string, tls.TlsOptions> {
  const options = new Map<string, tls.TlsOptions>();
  const ecdsa = { key: inputs.ecdsa.key, cert: inputs.ecdsa.cert };
  const rsa = { key: inputs.rsa.key, cert: inputs.rsa.cert };
  for (const c of inputs.certs) {
    // Node refuses to even load a SHA-1-signed or 1024-bit leaf at its default level (20, 24).
    const weak = c.name === 'sha1' || c.name === 'rsa-1024';
    options.set(c.name, { key: c.key, cert: c.cert, ...(weak ? { ciphers: `DEFAULT:${LEVEL_0}` } : {}) });
  }
  options.set('tls1.0', { ...ecdsa, minVersion: 'TLSv1', maxVersion: 'TLSv1', ciphers: `DEFAULT:${LEVEL_0}` });
  options.set('tls1.1', { ...ecdsa, minVersion: 'TLSv1.1', maxVersion: 'TLSv1.1', ciphers: `DEFAULT:${LEVEL_0}` });
  options.set('tls1.2-only', { ...ecdsa, minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' });
  options.set('tls1.3-only', { ...ecdsa, minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' });
  options.set('static-rsa', { ...rsa, minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2', ciphers: STATIC_RSA_CIPHERS });
  options.set('dh-1024', { ...rsa, minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2', ciphers: DHE_CIPHERS, dhparam: inputs.dh1024 });
  options.set('client-cert-required', { ...ecdsa, ca: inputs.localCa, requestCert: true, rejectUnauthorized: true });
  options.set('client-cert-requested', { ...ecdsa, ca: inputs.localCa, requestCert: true, rejectUnauthorized: false });
  // The behaviour scenarios (and slow-handshake) are a correct server; their difference is in the listener.
  for (const s of SCENARIOS) if (!options.has(s.name)) options.set(s.name, ecdsa);
  return options;
}

/** The names a leaf for the non-certificate scenarios must carry: `<name>.<domain>` for each. */
export function namedScenarioServerNames(domain: string, certs: readonly { readonly name: string }[]): string[] {
  const own = new Set<string>(certs.map((c) => c.name));
  return SCENARIOS.filter((s) => !own.has(s.name)).map((s) => `${s.name}.${domain}`);
}

// RFC 2409's 1024-bit MODP group ("Oakley group 2"), generator 2: a well-known weak group, which is
// the point of the dh-1024 scenario. As PKCS#3 DHparams, SEQUENCE { INTEGER p, INTEGER g }.
const OAKLEY_GROUP_2_PRIME =
  'FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD' +
  'EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED' +
  'EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381FFFFFFFFFFFFFFFF';

/** PEM DH parameters of the 1024-bit Oakley group 2. */
export function dh1024Parameters(): string {
  const prime = Buffer.concat([Buffer.from([0x00]), Buffer.from(OAKLEY_GROUP_2_PRIME, 'hex')]); // leading 0: positive INTEGER
  const primeInt = Buffer.concat([Buffer.from([0x02, 0x81, prime.length]), prime]);
  const generator = Buffer.from([0x02, 0x01, 0x02]);
  const body = Buffer.concat([primeInt, generator]);
  const der = Buffer.concat([Buffer.from([0x30, 0x81, body.length]), body]);
  const base64 = der.toString('base64').replace(/(.{64})/g, '$1\n');
  return `-----BEGIN DH PARAMETERS-----\n${base64}\n-----END DH PARAMETERS-----\n`;
}
