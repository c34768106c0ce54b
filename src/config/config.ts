// The daemon's configuration: one table of options with their defaults, filled from
// flags > env (TLS_ECHOD_*) > JSON file (--config) > defaults, validated at once with every
// problem listed, and frozen. A reload builds a new Config the same way and swaps it in only
// if it is valid.

import { closeSync, openSync, readSync } from 'node:fs';
import { isIP } from 'node:net';
import { availableParallelism } from 'node:os';
import { ConfigError } from '../errors';
import { scenarioDomainProblem } from '../scenarios/catalogue';
import { parseCidr, type Cidr } from './cidr';

export type KeyType = 'ecdsa-p256' | 'rsa-2048' | 'rsa-3072';
export type LogFormat = 'json' | 'text';
export type LogLevel = 'error' | 'warn' | 'info' | 'debug';
/** Whether clients are asked for a certificate: off, asked and verified if sent, or required. */
export type ClientAuthMode = 'off' | 'request' | 'require';

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export interface Config {
  readonly listen: HostPort;
  readonly certFile: string | undefined;
  readonly keyFile: string | undefined;
  readonly chainFile: string | undefined;
  readonly certDir: string;
  readonly sans: readonly string[];
  readonly keyType: KeyType;
  readonly certDays: number;
  readonly minTls: 'TLSv1.2' | 'TLSv1.3';
  readonly clientAuth: ClientAuthMode;
  /** --client-ca: the CAs a client certificate must chain to; undefined = the local CA. */
  readonly clientCaFile: string | undefined;
  /** --client-crl: revoked client certificates; undefined = client.crl in certDir when it applies. */
  readonly clientCrlFile: string | undefined;
  readonly handshakeTimeoutMs: number;
  readonly logLevel: LogLevel;
  readonly logFormat: LogFormat;
  readonly workers: number;
  readonly maxSessions: number;
  readonly maxPending: number;
  readonly pendingTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly sessionTimeoutMs: number;
  readonly connRatePerSec: number;
  readonly connBurst: number;
  readonly maxConnsPerIp: number;
  readonly bandwidthBytesPerSec: number;
  readonly maxSessionBytes: number;
  readonly allow: readonly Cidr[];
  readonly deny: readonly Cidr[];
  readonly ticketRotationSec: number;
  readonly drainTimeoutMs: number;
  readonly admin: HostPort | undefined;
  readonly renewCheckSec: number;
  /** --scenarios: where the test-peer scenario listener listens; undefined = off. */
  readonly scenarios: HostPort | undefined;
  /** Scenario X is reached with the server name `X.<scenarioDomain>`. */
  readonly scenarioDomain: string;
  /** slow-handshake's and slow-echo's delay (ms). */
  readonly scenarioDelayMs: number;
  /** IPv6 clients are limited per prefix of this many bits (128 = per address). */
  readonly ipv6Prefix: number;
  /** --proxy-protocol: connections from --trusted-proxy start with a PROXY protocol header (v1 or v2). */
  readonly proxyProtocol: boolean;
  /** --trusted-proxy: the balancers allowed to connect (and to say who the client is) with --proxy-protocol. */
  readonly trustedProxy: readonly Cidr[];
  /** --redis: where the per-client limits shared across instances live; undefined = off. */
  readonly redis: string | undefined;
  /** Every key the shared limits use starts with this. */
  readonly redisPrefix: string;
  /** How long admission waits for Redis before the local limits decide (ms). */
  readonly redisTimeoutMs: number;
  /** /readyz fails while Redis is unreachable. */
  readonly redisRequired: boolean;
  /** TLS_ECHOD_REDIS_PASSWORD (not an option: a secret stays out of flags and config files); never logged. */
  readonly redisPassword: string | undefined;
  /** The --config file this config was read from, for reload. */
  readonly configFile: string | undefined;
}

/**
 * A value as a source gives it: a string (flag or env), true (a bare flag), a list of strings (a
 * repeated flag), or any JSON value at all from the config file: objects, nesting of any depth.
 */
type Raw = unknown;

interface OptionSpec {
  /** Config field it fills. */
  readonly field: keyof Config;
  /** Flag name without dashes; also the JSON key (camelCased) and env name (UPPER_SNAKE). */
  readonly flag: string;
  /** Placeholder shown in --help; omitted for boolean flags. */
  readonly arg: string;
  readonly description: string;
  /** Default as a user would write it (shown in --help and docs/configuration.md). */
  readonly defaultText: string;
  readonly repeatable?: boolean;
  /** Turns a raw value (string from flag/env, JSON value from file) into the field's value or throws a message. */
  readonly parse: (raw: Raw) => unknown;
  /** Value when nothing set it; a function when it depends on the environment. */
  readonly default: unknown;
}

class Problem extends Error {}

/** Most characters of an operator's value quoted back in a message. */
const MAX_SHOWN_CHARS = 60;

/**
 * An operator's value as JSON text for a message, cut to MAX_SHOWN_CHARS. Never throws: it calls
 * no toString (a file may hold {"toString": 1}) and stops descending once the text is long
 * enough (a file may nest 20,000 arrays deep, which JSON.stringify would overflow the stack on).
 */
function shown(value: unknown): string {
  const text = render(value, MAX_SHOWN_CHARS + 1);
  return text.length > MAX_SHOWN_CHARS ? `${text.slice(0, MAX_SHOWN_CHARS)}...` : text;
}

/** A name (of an env var) as it is, cut to MAX_SHOWN_CHARS. */
function clipped(text: string): string {
  return text.length > MAX_SHOWN_CHARS ? `${text.slice(0, MAX_SHOWN_CHARS)}...` : text;
}

/** JSON-like text of `value`, stopping once `budget` characters are written: depth and width cost at most that. */
function render(value: unknown, budget: number): string {
  if (typeof value === 'string') return JSON.stringify(value.slice(0, Math.max(0, budget)));
  // Numbers as String prints them: JSON.stringify would turn Infinity (1e309 in a file) into null.
  if (typeof value !== 'object' || value === null) return String(value);
  const items = Array.isArray(value) ? (value as unknown[]) : undefined;
  const keys = items === undefined ? Object.keys(value) : undefined;
  const count = items?.length ?? keys!.length;
  let out = items ? '[' : '{';
  for (let i = 0; i < count && out.length < budget; i++) {
    if (i > 0) out += ',';
    if (keys !== undefined) out += `${JSON.stringify(keys[i]!.slice(0, budget))}:`;
    out += render(items ? items[i] : (value as Record<string, unknown>)[keys![i]!], budget - out.length);
  }
  return out.length < budget ? out + (items ? ']' : '}') : out;
}

function intParser(min: number, max = Number.MAX_SAFE_INTEGER, unit = '') {
  return (raw: Raw): number => {
    const text = typeof raw === 'number' ? String(raw) : typeof raw === 'string' ? raw.trim() : '';
    if (!/^\d+$/.test(text)) throw new Problem(`must be a whole number${unit}, got ${shown(raw)}`);
    const n = Number(text);
    if (n < min || n > max) throw new Problem(`must be between ${min} and ${max}${unit}, got ${n}`);
    return n;
  };
}

function enumParser<T extends string>(values: readonly T[]) {
  return (raw: Raw): T => {
    // Numbers too: a file may say "minTls": 1.3. Anything else is refused without being converted.
    const text = typeof raw === 'string' ? raw.trim() : typeof raw === 'number' ? String(raw) : undefined;
    if (text === undefined || !(values as readonly string[]).includes(text)) {
      throw new Problem(`must be one of ${values.join(', ')}, got ${shown(raw)}`);
    }
    return text as T;
  };
}

/** A switch: true/false from a JSON file, 'true'/'false'/'1'/'0' from env, true from a bare flag. */
function booleanParser(raw: Raw): boolean {
  if (typeof raw === 'boolean') return raw;
  const text = typeof raw === 'string' ? raw.trim().toLowerCase() : typeof raw === 'number' ? String(raw) : '';
  if (text === 'true' || text === '1') return true;
  if (text === 'false' || text === '0') return false;
  throw new Problem(`must be true or false (or 1 or 0), got ${shown(raw)}`);
}

const REDIS_SCHEMES = ['redis:', 'rediss:', 'unix:'];

/** --redis: redis://[user:password@]host[:port][/db], rediss://... (TLS) or unix:///path/to/socket. */
function redisUrlParser(raw: Raw): string {
  const text = typeof raw === 'string' ? raw.trim() : '';
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new Problem('must be a URL: redis://host:6379, rediss://host:6380 or unix:///path/to/redis.sock');
  }
  // The message never repeats the URL: it may hold a password.
  if (!REDIS_SCHEMES.includes(url.protocol)) throw new Problem(`must start with redis://, rediss:// or unix://, got ${url.protocol}//`);
  if (url.protocol === 'unix:' && url.pathname.length <= 1) throw new Problem('unix:// needs the socket path, e.g. unix:///run/redis/redis.sock');
  if (url.protocol !== 'unix:' && url.hostname === '') throw new Problem('needs a host, e.g. redis://127.0.0.1:6379');
  if (url.protocol !== 'unix:' && !/^\/?\d*$/.test(url.pathname)) throw new Problem('the path, if any, is the database number, e.g. redis://127.0.0.1:6379/0');
  return text;
}

function stringParser(raw: Raw): string {
  if (typeof raw !== 'string' || raw.length === 0) throw new Problem(`must be a non-empty string, got ${shown(raw)}`);
  return raw;
}

/** Parses `host:port`, `[v6]:port` or `:port` (all interfaces). */
export function parseHostPort(text: string): HostPort {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text.trim());
  if (!m) throw new Problem(`must be host:port (e.g. 127.0.0.1:4433 or [::1]:4433), got ${shown(text)}`);
  const host = m[1] ?? (m[2] || '0.0.0.0');
  const port = Number(m[3]);
  if (port > 65535) throw new Problem(`port must be 0-65535, got ${port}`);
  if (m[1] !== undefined && isIP(host) !== 6) throw new Problem(`[${host}] is not an IPv6 address`);
  return { host, port };
}

function hostPortParser(raw: Raw): HostPort {
  if (typeof raw !== 'string') throw new Problem(`must be a host:port string, got ${shown(raw)}`);
  return parseHostPort(raw);
}

function listOf<T>(item: (raw: string) => T) {
  return (raw: Raw): T[] => {
    const items: unknown[] = Array.isArray(raw) ? [...raw] : typeof raw === 'string' ? raw.split(',') : [raw];
    const out: T[] = [];
    for (const it of items) {
      if (typeof it !== 'string') throw new Problem(`must be a list of strings, got ${shown(it)}`);
      const trimmed = it.trim();
      if (trimmed !== '') out.push(item(trimmed));
    }
    return out;
  };
}

function cidrItem(text: string): Cidr {
  const c = parseCidr(text);
  if (!c) throw new Problem(`${shown(text)} is not an IPv4 or IPv6 address or CIDR (e.g. 10.0.0.0/8, ::1/128)`);
  return c;
}

const MAX_DNS_NAME_CHARS = 253;

/** --scenario-domain: a DNS name short enough for every scenario's server name (scenarios/catalogue.ts says why not). */
function domainParser(raw: Raw): string {
  const text = typeof raw === 'string' ? raw.trim() : '';
  // Checked first so that the message below, not one quoting megabytes, is the one given.
  if (text.length > MAX_DNS_NAME_CHARS) throw new Problem(`${shown(text)} is too long: a DNS name has at most ${MAX_DNS_NAME_CHARS} characters`);
  const problem = scenarioDomainProblem(text);
  if (problem !== undefined) throw new Problem(problem);
  return text.toLowerCase();
}

function sanItem(text: string): string {
  if (isIP(text) || /^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*\.?$/.test(text)) return text;
  throw new Problem(`${shown(text)} is neither a DNS name nor an IP address`);
}

/**
 * One worker per CPU the daemon may run on; with only one, none: a lone worker would share
 * the supervisor's core and add an IPC hand-over to every connection (about half the
 * handshake rate of inline mode, measured).
 */
export function autoWorkers(cpus = availableParallelism()): number {
  return cpus > 1 ? cpus : 0;
}

function workersParser(raw: Raw): number {
  if (typeof raw === 'string' && raw.trim() === 'auto') return autoWorkers();
  return intParser(0, 256)(raw);
}

const MS = ' (ms)';

/**
 * The longest period (s) a Node timer can wait: setInterval takes a signed 32-bit count of ms
 * and runs a longer one every 1 ms instead (with only a warning).
 */
const MAX_TIMER_SEC = Math.floor(2_147_483_647 / 1000);

/** Every `serve` option: flag, env var and JSON key are derived from `flag`. Order is --help order. */
export const OPTIONS: readonly OptionSpec[] = [
  { field: 'listen', flag: 'listen', arg: '<host:port>', description: 'address to listen on', defaultText: '127.0.0.1:4433', default: { host: '127.0.0.1', port: 4433 }, parse: hostPortParser },
  { field: 'certFile', flag: 'cert', arg: '<pem>', description: 'serve this PEM certificate (with --key) instead of generating one', defaultText: 'none', default: undefined, parse: stringParser },
  { field: 'keyFile', flag: 'key', arg: '<pem>', description: 'PEM private key for --cert', defaultText: 'none', default: undefined, parse: stringParser },
  { field: 'chainFile', flag: 'chain', arg: '<pem>', description: 'PEM intermediate certificates sent after --cert', defaultText: 'none', default: undefined, parse: stringParser },
  { field: 'certDir', flag: 'cert-dir', arg: '<dir>', description: 'directory for the self-generated CA and leaf', defaultText: './certs', default: './certs', parse: stringParser },
  { field: 'sans', flag: 'san', arg: '<name>', description: 'extra DNS name or IP for a generated leaf (repeatable)', defaultText: 'none', default: [], repeatable: true, parse: listOf(sanItem) },
  { field: 'keyType', flag: 'key-type', arg: '<type>', description: 'key type of generated certificates: ecdsa-p256, rsa-2048 or rsa-3072', defaultText: 'ecdsa-p256', default: 'ecdsa-p256', parse: enumParser<KeyType>(['ecdsa-p256', 'rsa-2048', 'rsa-3072']) },
  { field: 'certDays', flag: 'cert-days', arg: '<n>', description: 'lifetime of a generated leaf (days)', defaultText: '90', default: 90, parse: intParser(1, 3650, ' (days)') },
  { field: 'minTls', flag: 'min-tls', arg: '<version>', description: 'lowest TLS version accepted: 1.2 or 1.3', defaultText: '1.2', default: 'TLSv1.2', parse: (raw) => (enumParser(['1.2', '1.3'])(raw) === '1.2' ? 'TLSv1.2' : 'TLSv1.3') },
  { field: 'clientAuth', flag: 'client-auth', arg: '<mode>', description: 'client certificates: off, request (asked for; one that is sent must verify) or require', defaultText: 'off', default: 'off', parse: enumParser<ClientAuthMode>(['off', 'request', 'require']) },
  { field: 'clientCaFile', flag: 'client-ca', arg: '<pem>', description: 'CA certificates a client certificate must chain to (needed with --cert)', defaultText: 'the local CA (ca.pem in --cert-dir)', default: undefined, parse: stringParser },
  { field: 'clientCrlFile', flag: 'client-crl', arg: '<pem>', description: 'PEM CRLs of revoked client certificates', defaultText: 'client.crl in --cert-dir, if there and the local CA is the client CA', default: undefined, parse: stringParser },
  { field: 'handshakeTimeoutMs', flag: 'handshake-timeout', arg: '<ms>', description: 'time a client has to finish the TLS handshake (ms)', defaultText: '10000', default: 10000, parse: intParser(1, 3_600_000, MS) },
  { field: 'logLevel', flag: 'log-level', arg: '<level>', description: 'error, warn, info or debug', defaultText: 'info', default: 'info', parse: enumParser<LogLevel>(['error', 'warn', 'info', 'debug']) },
  { field: 'logFormat', flag: 'log-format', arg: '<format>', description: 'json or text', defaultText: 'json (text on a terminal)', default: () => (process.stdout.isTTY ? 'text' : 'json'), parse: enumParser<LogFormat>(['json', 'text']) },
  { field: 'workers', flag: 'workers', arg: '<n|auto>', description: 'worker processes; auto = one per available CPU (inline when there is only one); 0 = inline in the supervisor', defaultText: 'auto', default: () => autoWorkers(), parse: workersParser },
  { field: 'maxSessions', flag: 'max-sessions', arg: '<n>', description: 'concurrent sessions, whole daemon', defaultText: '10000', default: 10000, parse: intParser(1, 10_000_000) },
  { field: 'maxPending', flag: 'max-pending', arg: '<n>', description: 'admitted connections that may wait for a free slot', defaultText: '1000', default: 1000, parse: intParser(0, 10_000_000) },
  { field: 'pendingTimeoutMs', flag: 'pending-timeout', arg: '<ms>', description: 'longest wait for a free slot (ms)', defaultText: '5000', default: 5000, parse: intParser(1, 3_600_000, MS) },
  { field: 'idleTimeoutMs', flag: 'idle-timeout', arg: '<ms>', description: 'close a session after this long without data from the client (ms; 0 = off)', defaultText: '60000', default: 60000, parse: intParser(0, 2_147_483_647, MS) },
  { field: 'sessionTimeoutMs', flag: 'session-timeout', arg: '<ms>', description: 'longest session lifetime (ms; 0 = unlimited)', defaultText: '0', default: 0, parse: intParser(0, 2_147_483_647, MS) },
  { field: 'connRatePerSec', flag: 'conn-rate', arg: '<per-s>', description: 'new connections per second per source IP (token bucket rate)', defaultText: '100', default: 100, parse: intParser(1, 1_000_000_000) },
  { field: 'connBurst', flag: 'conn-burst', arg: '<n>', description: 'token bucket size for --conn-rate', defaultText: '200', default: 200, parse: intParser(1, 1_000_000_000) },
  { field: 'maxConnsPerIp', flag: 'max-conns-per-ip', arg: '<n>', description: 'concurrent sessions (and waiting connections) per source IP', defaultText: '512', default: 512, parse: intParser(1, 10_000_000) },
  { field: 'bandwidthBytesPerSec', flag: 'bandwidth', arg: '<bytes/s>', description: 'echo rate cap per session (bytes/s; 0 = unlimited)', defaultText: '0', default: 0, parse: intParser(0) },
  { field: 'maxSessionBytes', flag: 'max-session-bytes', arg: '<bytes>', description: 'bytes a session may echo before it is closed (0 = unlimited)', defaultText: '0', default: 0, parse: intParser(0) },
  { field: 'allow', flag: 'allow', arg: '<cidr>', description: 'only admit these source addresses (repeatable; default: all)', defaultText: 'all', default: [], repeatable: true, parse: listOf(cidrItem) },
  { field: 'deny', flag: 'deny', arg: '<cidr>', description: 'refuse these source addresses (repeatable; wins over --allow)', defaultText: 'none', default: [], repeatable: true, parse: listOf(cidrItem) },
  { field: 'ticketRotationSec', flag: 'ticket-rotation', arg: '<s>', description: 'TLS session ticket key rotation period (s)', defaultText: '3600', default: 3600, parse: intParser(1, MAX_TIMER_SEC, ' (s)') },
  { field: 'drainTimeoutMs', flag: 'drain-timeout', arg: '<ms>', description: 'on shutdown, time sessions get to finish before they are closed (ms)', defaultText: '10000', default: 10000, parse: intParser(0, 3_600_000, MS) },
  { field: 'admin', flag: 'admin', arg: '<host:port>', description: 'admin HTTP listener for /metrics, /healthz, /readyz (off by default; keep it on loopback)', defaultText: 'off', default: undefined, parse: hostPortParser },
  { field: 'renewCheckSec', flag: 'renew-check', arg: '<s>', description: 'how often a self-generated leaf is checked for renewal (s)', defaultText: '3600', default: 3600, parse: intParser(1, 86400, ' (s)') },
  { field: 'scenarios', flag: 'scenarios', arg: '<host:port>', description: 'listener for the test-peer scenarios, chosen by SNI (docs/testing-clients.md)', defaultText: 'off', default: undefined, parse: hostPortParser },
  { field: 'scenarioDomain', flag: 'scenario-domain', arg: '<domain>', description: 'scenario X is served as the server name X.<domain>', defaultText: 'localhost', default: 'localhost', parse: domainParser },
  { field: 'scenarioDelayMs', flag: 'scenario-delay', arg: '<ms>', description: "slow-handshake's and slow-echo's delay (ms)", defaultText: '2000', default: 2000, parse: intParser(0, 600_000, MS) },
  { field: 'ipv6Prefix', flag: 'ipv6-prefix', arg: '<bits>', description: 'IPv6 clients are rate-limited and capped per prefix of this length (128 = per address)', defaultText: '64', default: 64, parse: intParser(1, 128, ' (bits)') },
  { field: 'proxyProtocol', flag: 'proxy-protocol', arg: '', description: 'connections from --trusted-proxy start with a PROXY protocol header (v1 or v2), whose client address counts for everything after', defaultText: 'off', default: false, parse: booleanParser },
  { field: 'trustedProxy', flag: 'trusted-proxy', arg: '<cidr>', description: 'load balancers that may connect with --proxy-protocol (repeatable; needed with it)', defaultText: 'none', default: [], repeatable: true, parse: listOf(cidrItem) },
  { field: 'redis', flag: 'redis', arg: '<url>', description: 'share the per-client rate and cap with every instance using this Redis: redis://, rediss:// or unix:// (password in the URL or TLS_ECHOD_REDIS_PASSWORD)', defaultText: 'off', default: undefined, parse: redisUrlParser },
  { field: 'redisPrefix', flag: 'redis-prefix', arg: '<prefix>', description: 'start of every key the shared limits use in Redis', defaultText: 'tls-echod:', default: 'tls-echod:', parse: stringParser },
  { field: 'redisTimeoutMs', flag: 'redis-timeout', arg: '<ms>', description: 'longest wait for Redis before the local limits decide (ms)', defaultText: '50', default: 50, parse: intParser(1, 10_000, MS) },
  { field: 'redisRequired', flag: 'redis-required', arg: '', description: '/readyz fails while Redis is unreachable', defaultText: 'off', default: false, parse: booleanParser },
];

export const ENV_PREFIX = 'TLS_ECHOD_';

export function envName(flag: string): string {
  return ENV_PREFIX + flag.replace(/-/g, '_').toUpperCase();
}

export function jsonKey(flag: string): string {
  return flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

/** Env vars of ours that are not options. */
const ENV_NOT_OPTIONS = new Set([envName('config'), envName('redis-password')]);

export interface ConfigSources {
  /** Values from the command line, keyed by JSON key (commander's camelCase). */
  readonly flags: Readonly<Record<string, Raw>>;
  readonly env: NodeJS.ProcessEnv;
  /** --config path (flag or TLS_ECHOD_CONFIG), read by loadConfig. */
  readonly configFile?: string | undefined;
}

/** Builds and validates a Config; throws ConfigError listing every problem. */
export function loadConfig(sources: ConfigSources): Config {
  const problems: string[] = [];
  const configFile = sources.configFile ?? sources.env[envName('config')];
  let file: Record<string, unknown> = {};
  if (configFile !== undefined) {
    try {
      const parsed: unknown = JSON.parse(readConfigText(configFile));
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
        problems.push(`--config ${configFile}: must hold a JSON object of options`);
      } else {
        file = parsed as Record<string, unknown>;
      }
    } catch (err) {
      problems.push(`--config ${configFile}: ${configFileProblem(err)} (give a readable JSON file, or leave --config out)`);
    }
  }

  const known = new Set(OPTIONS.map((o) => jsonKey(o.flag)));
  for (const key of Object.keys(file)) {
    if (!known.has(key)) problems.push(`--config ${configFile}: unknown key ${shown(key)}${suggest(key, [...known])}`);
  }
  const knownEnv = new Set(OPTIONS.map((o) => envName(o.flag)));
  for (const name of Object.keys(sources.env)) {
    if (name.startsWith(ENV_PREFIX) && !knownEnv.has(name) && !ENV_NOT_OPTIONS.has(name)) {
      problems.push(`env ${clipped(name)}: unknown option${suggest(name, [...knownEnv])}`);
    }
  }

  const redisPassword = sources.env[envName('redis-password')];
  const refused = new Set<keyof Config>();
  const out: Record<string, unknown> = { configFile, redisPassword: redisPassword === '' ? undefined : redisPassword };
  for (const opt of OPTIONS) {
    const key = jsonKey(opt.flag);
    const env = envName(opt.flag);
    let raw: Raw;
    let where: string;
    if (sources.flags[key] !== undefined) {
      raw = sources.flags[key];
      where = `--${opt.flag}`;
    } else if (sources.env[env] !== undefined && sources.env[env] !== '') {
      raw = sources.env[env];
      where = `env ${env}`;
    } else if (file[key] !== undefined) {
      raw = file[key] as Raw;
      where = `--config key "${key}"`;
    } else {
      out[opt.field] = typeof opt.default === 'function' ? (opt.default as () => unknown)() : opt.default;
      continue;
    }
    try {
      out[opt.field] = opt.parse(raw);
    } catch (err) {
      if (!(err instanceof Problem)) throw err;
      problems.push(`${where}: ${err.message}`);
      refused.add(opt.field);
    }
  }

  crossCheck(out as unknown as Config, problems, refused);
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze(out) as unknown as Config;
}

/** A config file larger than this is refused rather than read: an options file is a few KiB. */
export const CONFIG_FILE_MAX_BYTES = 1024 * 1024;

/**
 * The --config file's text, read in bounded steps (a path such as /dev/zero or a FIFO would
 * otherwise be read without end), with a leading UTF-8 byte order mark dropped, as editors on
 * some systems write one and JSON.parse refuses it.
 */
function readConfigText(file: string): string {
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.alloc(CONFIG_FILE_MAX_BYTES + 1);
    let length = 0;
    for (let n = -1; n !== 0 && length < buf.length; length += n) n = readSync(fd, buf, length, buf.length - length, null);
    if (length > CONFIG_FILE_MAX_BYTES) throw new Error(`larger than ${CONFIG_FILE_MAX_BYTES} bytes`);
    const text = buf.toString('utf8', 0, length);
    return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  } finally {
    closeSync(fd);
  }
}

/** What went wrong reading or parsing the --config file, in words. */
function configFileProblem(err: unknown): string {
  if (err instanceof SyntaxError) return `not valid JSON (${err.message})`;
  // A JSON parser that recurses (V8's did) overflows the stack on nesting thousands deep.
  if (err instanceof RangeError) return `nested too deeply to read (${err.message})`;
  return err instanceof Error ? err.message : String(err);
}

function crossCheck(c: Config, problems: string[], refused: ReadonlySet<keyof Config>): void {
  // A refused value is a problem already and left the field undefined: a rule reading it is not
  // judged (it would dereference undefined, or blame "--client-auth undefined").
  const read = (...fields: (keyof Config)[]): boolean => fields.every((f) => !refused.has(f));
  if (read('proxyProtocol', 'trustedProxy') && c.proxyProtocol && c.trustedProxy.length === 0) {
    problems.push('--proxy-protocol needs --trusted-proxy: give the CIDRs of the load balancers that send the PROXY header (anyone else is refused)');
  }
  if (read('proxyProtocol', 'trustedProxy') && !c.proxyProtocol && c.trustedProxy.length > 0) {
    problems.push('--trusted-proxy is only used with --proxy-protocol: add --proxy-protocol, or leave --trusted-proxy out');
  }
  if (read('redisRequired', 'redis') && c.redisRequired && c.redis === undefined) {
    problems.push('--redis-required needs --redis: give the Redis URL the shared limits use, or leave --redis-required out');
  }
  if (read('scenarios', 'listen') && c.scenarios !== undefined && c.scenarios.port !== 0 && c.scenarios.port === c.listen.port && c.scenarios.host === c.listen.host) {
    problems.push(`--scenarios ${formatHostPort(c.scenarios.host, c.scenarios.port)} is the --listen address: give the scenario listener a port of its own`);
  }
  if (read('certFile', 'keyFile') && (c.certFile === undefined) !== (c.keyFile === undefined)) {
    problems.push('--cert and --key go together: give both to serve your own certificate, or neither to generate one in --cert-dir');
  }
  if (read('chainFile', 'certFile') && c.chainFile !== undefined && c.certFile === undefined) {
    problems.push('--chain needs --cert and --key (it holds the intermediates sent after your certificate)');
  }
  if (read('clientAuth', 'certFile', 'clientCaFile') && c.clientAuth !== 'off' && c.certFile !== undefined && c.clientCaFile === undefined) {
    problems.push(
      `--client-auth ${c.clientAuth} with --cert needs --client-ca: give the CA certificates that issue your clients' certificates (without --cert, the local CA in --cert-dir is used)`,
    );
  }
}

function suggest(name: string, candidates: readonly string[]): string {
  let best: string | undefined;
  let bestDistance = 3;
  for (const c of candidates) {
    // Lengths 3 apart are at least 3 edits apart: skipped, so a megabyte key costs nothing here.
    if (Math.abs(c.length - name.length) >= bestDistance) continue;
    const d = editDistance(name.toLowerCase(), c.toLowerCase());
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return best === undefined ? '' : ` (did you mean ${best}?)`;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length]!;
}

/** Formats host:port, bracketing IPv6. */
export function formatHostPort(host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

/** The host a client on this machine connects to for a listener on `host`: a wildcard address means loopback. */
export function reachableHost(host: string): string {
  return host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
}
