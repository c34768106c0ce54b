// Admission policy, decided in the supervisor before any TLS work: CIDR allow/deny lists, a
// per-source-IP token bucket for new connections, and a per-IP cap on connections held
// (in session or waiting for one). The global cap and the pending queue live in the supervisor.

import { CidrList, ipv6NetworkKey, type Cidr } from '../config/cidr';

export type RefuseReason = 'denied' | 'rate-limited' | 'ip-limit' | 'pool-full' | 'pending-timeout' | 'shutdown' | 'proxy-untrusted' | 'proxy-header-invalid';

export interface AdmissionSettings {
  readonly allow: readonly Cidr[];
  readonly deny: readonly Cidr[];
  /** New connections per second per source IP. */
  readonly connRatePerSec: number;
  /** Token bucket size for connRatePerSec. */
  readonly connBurst: number;
  /** Connections one IP may hold at once (sessions plus waiting). */
  readonly maxConnsPerIp: number;
  /** IPv6 clients share their rate and cap with their network of this many bits (128: per address). */
  readonly ipv6Prefix: number;
}

/**
 * Whole milliseconds from a clock that never steps back. Date.now() does (NTP, a VM resumed, an
 * operator setting the time): every bucket touched "in the future" would then earn nothing until
 * the wall clock caught up, and its client would stay rate limited for as long as the step.
 */
function monotonicMs(): number {
  return Math.floor(performance.now());
}

/** Entries that hold nothing kept at most (docs/limits.md, "Bounded state"). */
export const MAX_IDLE_CLIENTS = 100_000;

/** What admission keeps per client address: its token bucket and the connections it holds. */
interface Client {
  /**
   * Tokens left in the bucket as of `at`, in thousandths: with whole milliseconds a refill is
   * `ms × rate`, a whole number, so the bucket is exact. Fractions of a token summed in floating
   * point drift: a client connecting at exactly its rate would now and then find 0.9999999999999
   * tokens and be refused.
   */
  milliTokens: number;
  /** When milliTokens was last brought up to date (whole ms, from the injected clock). */
  at: number;
  /** Connections from this address held now (in a session or waiting for one). */
  held: number;
}

/** Why ClientTable.admit refused. */
type ClientRefusal = 'ip-limit' | 'rate-limited';

/**
 * One entry per client address, carrying both its token bucket (new connections per second)
 * and its count of connections held, so that admitting or releasing a connection is a single
 * map lookup. Timed in place at the handshake limit, admitting through two separate maps
 * (count, bucket, then the count again to raise it) took 3.1-3.5 µs per connection and through
 * this one 2.0-2.7 µs: code run once per connection runs cold.
 *
 * Bounded: a new address finds at most `maxEntries` entries that hold nothing, plus those that
 * hold connections, which are never dropped (their counts must stay exact) and number at most
 * --max-sessions + --max-pending. An entry that holds nothing and whose bucket has refilled is
 * the same as no entry, so the sweep drops those; if a flood from very many addresses still
 * fills the table, the oldest entries that hold nothing go first. Entries whose connections end
 * count as idle from then on, so the size is at most `maxEntries` + the most entries that ever
 * held connections at once (test/properties/admission.test.ts checks both).
 */
export class ClientTable {
  private readonly clients = new Map<string, Client>();
  /** Entries whose held count is above zero. */
  private holdingCount = 0;

  constructor(
    private ratePerSec: number,
    private burst: number,
    private readonly maxEntries = MAX_IDLE_CLIENTS,
    private readonly now: () => number = monotonicMs,
  ) {}

  /** Addresses tracked (holding connections, or with a bucket not yet refilled). */
  get size(): number {
    return this.clients.size;
  }

  /** Addresses holding at least one connection. */
  get holding(): number {
    return this.holdingCount;
  }

  /**
   * New rate and burst (a reload). Every bucket first earns at the old rate up to now, then keeps
   * at most the new burst: otherwise the next admit or sweep would apply the new rate to the time
   * before the reload, and a bucket touched in the same millisecond would keep the old burst.
   * O(entries), once per reload.
   */
  setRate(ratePerSec: number, burst: number): void {
    const t = this.now();
    for (const c of this.clients.values()) {
      this.refill(c, t);
      c.milliTokens = Math.min(c.milliTokens, burst * 1000);
    }
    this.ratePerSec = ratePerSec;
    this.burst = burst;
  }

  /** Connections `ip` holds now. */
  heldBy(ip: string): number {
    return this.clients.get(ip)?.held ?? 0;
  }

  /**
   * Admits one connection from `ip` unless it holds `maxHeld` already (checked first, so that a
   * client at its cap doesn't burn tokens) or its bucket is empty. An admitted connection counts
   * against `ip` until release(ip).
   */
  admit(ip: string, maxHeld: number): ClientRefusal | undefined {
    const t = this.now();
    let c = this.clients.get(ip);
    if (c === undefined) {
      if (this.clients.size - this.holdingCount >= this.maxEntries) this.makeRoom(t);
      c = { milliTokens: this.burst * 1000, at: t, held: 0 };
      this.clients.set(ip, c);
    } else {
      this.refill(c, t);
    }
    if (c.held >= maxHeld) return 'ip-limit';
    if (c.milliTokens < 1000) return 'rate-limited';
    c.milliTokens -= 1000;
    if (c.held++ === 0) this.holdingCount++;
    return undefined;
  }

  /** Ends one connection admitted for `ip`; an extra release changes nothing. */
  release(ip: string): void {
    const c = this.clients.get(ip);
    if (c === undefined || c.held === 0) return;
    if (--c.held === 0) this.holdingCount--;
  }

  /** Drops the entries that hold nothing and whose bucket has refilled; call now and then. */
  sweep(t = this.now()): void {
    for (const [ip, c] of this.clients) {
      if (c.held === 0 && c.milliTokens + (t - c.at) * this.ratePerSec >= this.burst * 1000) this.clients.delete(ip);
    }
  }

  /** Brings `c`'s bucket up to time `t` at the current rate. */
  private refill(c: Client, t: number): void {
    if (t <= c.at) return;
    c.milliTokens = Math.min(this.burst * 1000, c.milliTokens + (t - c.at) * this.ratePerSec);
    c.at = t;
  }

  private makeRoom(t: number): void {
    this.sweep(t);
    // Leave room for a tenth of the bound, forgetting the oldest entries that hold nothing (a Map
    // iterates in insertion order) if the sweep didn't: a sweep visits the whole table, and a
    // flood that keeps it just full, its entries refilling as fast as new ones come, would
    // otherwise free an entry or two per sweep and pay for one on nearly every new address.
    let drop = this.clients.size - this.holdingCount - (this.maxEntries - Math.max(1, Math.floor(this.maxEntries / 10)));
    for (const [ip, c] of this.clients) {
      if (drop <= 0) break;
      if (c.held > 0) continue;
      this.clients.delete(ip);
      drop--;
    }
  }
}

export class Admission {
  private allow: CidrList;
  private deny: CidrList;
  private maxConnsPerIp: number;
  private ipv6Prefix: number;
  readonly clients: ClientTable;

  /** `maxIdleClients`: ClientTable's bound on entries that hold nothing (tests make it small). */
  constructor(settings: AdmissionSettings, now: () => number = monotonicMs, maxIdleClients = MAX_IDLE_CLIENTS) {
    this.allow = new CidrList(settings.allow);
    this.deny = new CidrList(settings.deny);
    this.maxConnsPerIp = settings.maxConnsPerIp;
    this.ipv6Prefix = settings.ipv6Prefix;
    this.clients = new ClientTable(settings.connRatePerSec, settings.connBurst, maxIdleClients, now);
  }

  /** New lists and limits (a reload); counts and buckets carry over. */
  update(settings: AdmissionSettings): void {
    this.allow = new CidrList(settings.allow);
    this.deny = new CidrList(settings.deny);
    this.maxConnsPerIp = settings.maxConnsPerIp;
    this.ipv6Prefix = settings.ipv6Prefix;
    this.clients.setRate(settings.connRatePerSec, settings.connBurst);
  }

  /**
   * Whose rate and cap a connection from `ip` (normalised) counts against: the address itself
   * for IPv4, its network of --ipv6-prefix bits for IPv6 (one home connection has a whole /64).
   */
  clientKey(ip: string): string {
    if (ip.indexOf(':') === -1 || this.ipv6Prefix >= 128) return ip;
    return ipv6NetworkKey(ip, this.ipv6Prefix);
  }

  /**
   * Decides on a new connection from `ip` (normalised), counted against `key` (clientKey(ip),
   * taken once: a reload may change the prefix). On admission call release(key) exactly once
   * when the connection ends, however it ends.
   */
  admit(ip: string, key = this.clientKey(ip)): RefuseReason | undefined {
    if (this.deny.contains(ip)) return 'denied';
    if (this.allow.size > 0 && !this.allow.contains(ip)) return 'denied';
    return this.clients.admit(key, this.maxConnsPerIp);
  }

  release(key: string): void {
    this.clients.release(key);
  }

  /** Periodic upkeep: forget addresses that hold nothing and have a full bucket. */
  sweep(): void {
    this.clients.sweep();
  }
}
