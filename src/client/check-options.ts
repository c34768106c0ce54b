// What `tls-echod check` is asked to do (CheckOptions) and its defaults: apart from check.ts
// so that the command line can describe the options without loading the client.

export const CHECK_DEFAULTS = Object.freeze({ bytes: 4096, timeoutMs: 10_000 });

export type TlsVersionPin = '1.2' | '1.3';

/** A client certificate to present to a server that asks for one (mutual TLS), as read from --cert and --key. */
export interface ClientCertificate {
  /** PEM certificate, optionally followed by its intermediates (all are sent). */
  readonly cert: string;
  /** PEM private key of `cert`, unencrypted. */
  readonly key: string;
  /** How reports name it: `CN=alice`, or the whole subject when it has no CN. */
  readonly name: string;
}

export interface CheckOptions {
  readonly host: string;
  readonly port: number;
  /** PEM CA certificate(s) to verify against; default: Node's built-in root store. */
  readonly ca?: string | Buffer | undefined;
  /** Where `ca` came from (e.g. the --ca path), used in messages. */
  readonly caLabel?: string | undefined;
  /** Don't fail on an unverified certificate (verification is still reported). Default false. */
  readonly insecure?: boolean | undefined;
  /** SNI and the name verified; default: `host` when it is a name, none (verify the IP) when it is an IP. */
  readonly servername?: string | undefined;
  /** Random bytes to send and expect back (default 4096; 0 = handshake only). */
  readonly bytes?: number | undefined;
  /** Exact payload to send instead of `bytes` random bytes. */
  readonly payload?: Buffer | undefined;
  /** Deadline for the whole check: connect, handshake and echo (ms, default 10000). */
  readonly timeoutMs?: number | undefined;
  /** Pin the TLS version; default: whatever the server and Node agree on. */
  readonly tls?: TlsVersionPin | undefined;
  /** ALPN protocols to offer, in order; default none. */
  readonly alpn?: readonly string[] | undefined;
  /** Present this certificate if the server asks for one; default none. */
  readonly clientCert?: ClientCertificate | undefined;
  /**
   * After a matching echo, leave the connection open and wait (within timeoutMs) for the server
   * to end it, reported as the result's `serverClose`. Default false: the client ends it.
   */
  readonly awaitServerClose?: boolean | undefined;
}

/**
 * `check --scenarios` defaults: the daemon's --scenario-domain and --scenario-delay, each
 * scenario's deadline (ms), and how many scenarios run at once.
 */
export const SCENARIO_CHECK_DEFAULTS = Object.freeze({ domain: 'localhost', delayMs: 2000, timeoutMs: 5000, concurrency: 4 });

/** What `check --scenarios` is asked to do: every scenario of a `serve --scenarios` listener. */
export interface ScenarioCheckOptions {
  /** The scenario listener. */
  readonly host: string;
  readonly port: number;
  /** PEM CA the scenarios' certificates chain to (the daemon's ca.pem). */
  readonly ca: string | Buffer;
  readonly caLabel?: string | undefined;
  /** The daemon's --scenario-domain: scenario X is reached as the server name X.<domain>. Default localhost. */
  readonly domain?: string | undefined;
  /** The daemon's --scenario-delay (ms): slow-handshake and slow-echo take at least this. Default 2000. */
  readonly delayMs?: number | undefined;
  /** Each scenario's deadline (ms), on top of any delay it is expected to take. Default 5000. */
  readonly timeoutMs?: number | undefined;
  /** Presented to client-cert-required in a second case, which then must echo; default: only the refusal is checked. */
  readonly clientCert?: ClientCertificate | undefined;
  /** Scenarios run at once. Default 4. */
  readonly concurrency?: number | undefined;
}
