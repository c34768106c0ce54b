// Per-client limits shared by every instance that uses one Redis and one --redis-prefix: the
// connection rate (a token bucket) and the concurrent cap, per client key (an IPv4 address or an
// IPv6 network). One Lua script decides a new connection atomically (scripts.ts says which keys).
//
// Concurrent counts are leases: each connection an instance holds is a member of its client's
// sorted set, scored by its expiry. The instance re-asserts every lease it holds every
// refreshMs (default 10 s) in one pipelined batch, and a lease lives leaseMs (default 30 s): the
// connections of an instance that dies without releasing (kill -9, a lost host) stop counting
// within leaseMs. The lease map here holds exactly the connections this instance has open under
// --redis, so it is bounded by the sessions (and waiting connections) the supervisor holds.
//
// Redis may fail or be slow: acquire() then answers 'unavailable' within --redis-timeout, and the
// caller's local limits decide. Commands never queue while disconnected (enableOfflineQueue
// off), at most maxInFlight wait for a slow Redis, and reconnects back off up to 2 s. A release
// while Redis is down is dropped: the lease expires by itself within leaseMs.
//
// ioredis is loaded by open(), only when --redis is set (docs/architecture.md, "What serving
// loads").

import { randomBytes } from 'node:crypto';
import type { ChainableCommander, Redis, RedisOptions } from 'ioredis';
import { ACQUIRE_LUA, REFRESH_LUA } from './scripts';

/** What Redis said of a new connection; 'unavailable' means "decide locally". */
export type SharedVerdict = 'ok' | 'rate-limited' | 'ip-limit' | 'unavailable';

export interface SharedLimitsSettings {
  /** Start of every key (--redis-prefix). */
  readonly prefix: string;
  /** Longest wait for Redis in acquire() (ms). */
  readonly timeoutMs: number;
  /** New connections per second per client key, shared. */
  readonly connRatePerSec: number;
  /** Token bucket size for connRatePerSec. */
  readonly connBurst: number;
  /** Connections one client key may hold at once, across every instance. */
  readonly maxConnsPerIp: number;
}

export interface SharedLimitsOptions {
  /** redis://, rediss:// or unix:// (config.ts checks it). */
  readonly url: string;
  /** Used when the URL carries none (TLS_ECHOD_REDIS_PASSWORD). */
  readonly password?: string | undefined;
  /** How long a lease lives without a refresh (ms). Default 30 000. */
  readonly leaseMs?: number;
  /** How often held leases are refreshed (ms). Default leaseMs / 3. */
  readonly refreshMs?: number;
  /** Commands that may wait on Redis at once; past it acquire() answers 'unavailable' at once. Default 1000. */
  readonly maxInFlight?: number;
  /** Redis failed: a command (`what`) errored or timed out, or the connection did. */
  readonly onError?: (what: string, err: Error) => void;
  /** Redis became reachable (true) or stopped being so (false). */
  readonly onUp?: (up: boolean) => void;
}

export const DEFAULT_LEASE_MS = 30_000;
const DEFAULT_MAX_IN_FLIGHT = 1000;
/** Reconnect backoff: 100 ms more per attempt, at most this (ms). */
const MAX_RECONNECT_DELAY_MS = 2000;
const CONNECT_TIMEOUT_MS = 2000;
/** close(): how long the final release of held leases and QUIT may take (ms). */
const CLOSE_TIMEOUT_MS = 1000;

interface Lease {
  /** The sorted set it is in (the prefix may change on reload; a lease stays where it was made). */
  readonly zkey: string;
  readonly member: string;
}

/** The scripts, as ioredis defines them on a client and a pipeline. */
interface ScriptCommands {
  tlsEchodAcquire(rateKey: string, connsKey: string, rate: number, burst: number, cap: number, member: string, leaseMs: number): Promise<number>;
}
interface ScriptPipeline {
  tlsEchodRefresh(connsKey: string, leaseMs: number, ...members: string[]): ChainableCommander;
}

/** The --redis URL with its password replaced by ***: fit for logs. */
export function redactRedisUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    return '(invalid URL)';
  }
}

/** ioredis connection options from a --redis URL (checked by config.ts) and an optional password. */
export function redisOptionsOf(url: string, password: string | undefined): RedisOptions {
  const u = new URL(url);
  const auth: RedisOptions = {};
  if (u.username !== '') auth.username = decodeURIComponent(u.username);
  const pass = u.password !== '' ? decodeURIComponent(u.password) : password;
  if (pass !== undefined) auth.password = pass;
  if (u.protocol === 'unix:') return { ...auth, path: decodeURIComponent(u.pathname) };
  const db = u.pathname.replace(/^\//, '');
  return {
    ...auth,
    // URL keeps IPv6 hosts in brackets; sockets want them bare.
    host: u.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: u.port === '' ? 6379 : Number(u.port),
    ...(db === '' ? {} : { db: Number(db) }),
    ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
  };
}

export class SharedLimits {
  private settings: SharedLimitsSettings;
  private readonly leaseMs: number;
  private readonly maxInFlight: number;
  private readonly instanceId = randomBytes(6).toString('hex');
  private nextLeaseId = 0;
  /** Client key → the leases this instance holds for it. */
  private readonly leases = new Map<string, Lease[]>();
  private inFlightCount = 0;
  private isUp = false;
  private refreshing = false;
  private readonly refreshTimer: NodeJS.Timeout;
  private closing: Promise<void> | undefined;

  /** Loads ioredis and starts connecting; resolves at once (acquire() answers 'unavailable' until Redis answers). */
  static async open(settings: SharedLimitsSettings, options: SharedLimitsOptions): Promise<SharedLimits> {
    const { Redis: RedisClient } = await import('ioredis');
    const client = new RedisClient({
      ...redisOptionsOf(options.url, options.password),
      // Fail fast rather than queue: a command sent while disconnected is rejected at once, and
      // one in flight when the connection drops is not retried.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      connectTimeout: CONNECT_TIMEOUT_MS,
      retryStrategy: (times: number) => Math.min(times * 100, MAX_RECONNECT_DELAY_MS),
    });
    return new SharedLimits(client, settings, options);
  }

  private constructor(
    private readonly client: Redis,
    settings: SharedLimitsSettings,
    private readonly options: SharedLimitsOptions,
  ) {
    this.settings = settings;
    this.leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
    this.maxInFlight = options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT;
    client.defineCommand('tlsEchodAcquire', { numberOfKeys: 2, lua: ACQUIRE_LUA });
    client.defineCommand('tlsEchodRefresh', { numberOfKeys: 1, lua: REFRESH_LUA });
    client.on('ready', this.clientOnReady);
    client.on('close', this.clientOnClose);
    client.on('error', this.clientOnError);
    this.refreshTimer = setInterval(() => void this.refresh(), options.refreshMs ?? Math.floor(this.leaseMs / 3));
    this.refreshTimer.unref();
  }

  /** True while Redis answers: connected, and the last command did not fail or time out. */
  get up(): boolean {
    return this.isUp;
  }

  /** Leases held now, across every client key (for tests and bounds). */
  get leasesHeld(): number {
    let n = 0;
    for (const list of this.leases.values()) n += list.length;
    return n;
  }

  /** Commands sent to Redis and not yet answered or failed (at most maxInFlight). */
  get inFlight(): number {
    return this.inFlightCount;
  }

  /** New prefix, timeout or limits (a reload); leases already held stay under the prefix they were made with. */
  update(settings: SharedLimitsSettings): void {
    this.settings = settings;
  }

  /**
   * Decides on a new connection for client `key` across every instance, within settings.timeoutMs.
   * On 'ok' and on 'unavailable' (the caller's local limits decide, and the connection, if
   * admitted, should still count once Redis is back) this instance holds a lease for `key`:
   * call release(key) exactly once when the connection ends, or at once if it is refused after all.
   */
  async acquire(key: string): Promise<SharedVerdict> {
    if (this.closing !== undefined) return 'unavailable';
    const { prefix, timeoutMs, connRatePerSec, connBurst, maxConnsPerIp } = this.settings;
    const lease: Lease = { zkey: `${prefix}{${key}}:conns`, member: `${this.instanceId}:${(this.nextLeaseId++).toString(36)}` };
    if (this.inFlightCount >= this.maxInFlight) {
      this.failed('acquire', new Error(`${this.inFlightCount} commands already wait on Redis`));
      this.hold(key, lease);
      return 'unavailable';
    }
    this.inFlightCount++;
    const reply = (this.client as unknown as ScriptCommands)
      .tlsEchodAcquire(`${prefix}{${key}}:rate`, lease.zkey, connRatePerSec, connBurst, maxConnsPerIp, lease.member, this.leaseMs)
      .finally(() => this.inFlightCount--);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(resolve, timeoutMs, 'timeout')));
    let result: number | 'timeout' | Error;
    try {
      result = await Promise.race([reply, timedOut]);
    } catch (err) {
      result = err as Error;
    } finally {
      clearTimeout(timer);
    }
    if (result === 0 || result === 1 || result === 2) {
      this.answered();
      if (result === 0) {
        this.hold(key, lease);
        return 'ok';
      }
      return result === 1 ? 'rate-limited' : 'ip-limit';
    }
    if (result === 'timeout') {
      // The script may still run: a late reply is only counted, the lease is held either way.
      reply.catch(() => {});
      this.failed('acquire', new Error(`no answer within --redis-timeout ${timeoutMs} ms`));
    } else {
      this.failed('acquire', result instanceof Error ? result : new Error(`unexpected reply ${JSON.stringify(result)}`));
    }
    this.hold(key, lease);
    return 'unavailable';
  }

  /** Ends one connection acquired for `key`; an extra release changes nothing. Dropped while Redis is down (the lease expires). */
  release(key: string): void {
    const list = this.leases.get(key);
    if (list === undefined) return;
    // The oldest first: after a reload changed the prefix, the leases under the old one go first.
    const lease = list.shift()!;
    if (list.length === 0) this.leases.delete(key);
    if (this.closing !== undefined) return;
    this.client.zrem(lease.zkey, lease.member).then(this.answered, (err: Error) => this.failed('release', err));
  }

  /** Releases every lease held (best effort, bounded in time), then disconnects. Safe to call twice. */
  close(): Promise<void> {
    this.closing ??= this.runClose();
    return this.closing;
  }

  /** Disconnects now without releasing: the leases held expire within leaseMs (as after kill -9). Safe to call twice. */
  destroy(): void {
    this.closing ??= Promise.resolve();
    clearInterval(this.refreshTimer);
    this.leases.clear();
    this.client.disconnect();
  }

  private async runClose(): Promise<void> {
    clearInterval(this.refreshTimer);
    if (this.client.status === 'ready' && this.leases.size > 0) {
      const pipeline = this.client.pipeline();
      for (const list of this.leases.values()) for (const lease of list) pipeline.zrem(lease.zkey, lease.member);
      await withTimeout(pipeline.exec(), CLOSE_TIMEOUT_MS).catch(() => {});
    }
    this.leases.clear();
    if (this.client.status === 'ready') await withTimeout(this.client.quit(), CLOSE_TIMEOUT_MS).catch(() => {});
    this.client.disconnect();
  }

  private hold(key: string, lease: Lease): void {
    const list = this.leases.get(key);
    if (list === undefined) this.leases.set(key, [lease]);
    else list.push(lease);
  }

  /** Re-asserts every lease held, one script call per client in one pipeline. Skipped while down or while the last one runs. */
  private async refresh(): Promise<void> {
    if (this.refreshing || this.closing !== undefined || this.leases.size === 0 || this.client.status !== 'ready') return;
    this.refreshing = true;
    try {
      const pipeline = this.client.pipeline() as unknown as ScriptPipeline & ChainableCommander;
      for (const list of this.leases.values()) {
        const byKey = new Map<string, string[]>();
        for (const { zkey, member } of list) {
          const members = byKey.get(zkey);
          if (members === undefined) byKey.set(zkey, [member]);
          else members.push(member);
        }
        for (const [zkey, members] of byKey) pipeline.tlsEchodRefresh(zkey, this.leaseMs, ...members);
      }
      const results = await pipeline.exec();
      const failure = results?.find(([err]) => err !== null)?.[0];
      if (failure) this.failed('refresh', failure);
      else this.answered();
    } catch (err) {
      this.failed('refresh', err as Error);
    } finally {
      this.refreshing = false;
    }
  }

  private setUp(up: boolean): void {
    if (up === this.isUp) return;
    this.isUp = up;
    this.options.onUp?.(up);
  }

  private readonly answered = (): void => {
    this.setUp(true);
  };

  private failed(what: string, err: Error): void {
    this.options.onError?.(what, err);
    this.setUp(false);
  }

  // Connected again (or for the first time): the leases held come back at once, in case Redis
  // lost them.
  private readonly clientOnReady = (): void => {
    this.setUp(true);
    void this.refresh();
  };

  private readonly clientOnClose = (): void => {
    this.setUp(false);
  };

  private readonly clientOnError = (err: Error): void => {
    this.options.onError?.('connection', err);
  };
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms))),
  ]).finally(() => clearTimeout(timer));
}
