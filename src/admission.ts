// Admission policy, decided in the supervisor before any TLS work: CIDR allow/deny lists, a
// per-source-IP token bucket for new connections, and a per-IP cap on connections held
// (in session or waiting for one). The global cap and the pending queue live in the supervisor.

import { CidrList, type Cidr } from './cidr';

export type RefuseReason = 'denied' | 'rate-limited' | 'ip-limit' | 'pool-full' | 'pending-timeout' | 'shutdown';

export interface AdmissionSettings {
  readonly allow: readonly Cidr[];
  readonly deny: readonly Cidr[];
  /** New connections per second per source IP. */
  readonly connRatePerSec: number;
  /** Token bucket size for connRatePerSec. */
  readonly connBurst: number;
  /** Connections one IP may hold at once (sessions plus waiting). */
  readonly maxConnsPerIp: number;
}

interface Bucket {
  tokens: number;
  /** When tokens was last brought up to date (ms, from the injected clock). */
  at: number;
}

/**
 * Token buckets keyed by client address, in a map with a hard size limit. A bucket that has
 * refilled to the brim is the same as no bucket, so the sweep drops those; if a flood from
 * very many addresses still fills the map, the oldest entries go first.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    private ratePerSec: number,
    private burst: number,
    private readonly maxEntries = 100_000,
    private readonly now: () => number = Date.now,
  ) {}

  get size(): number {
    return this.buckets.size;
  }

  setRate(ratePerSec: number, burst: number): void {
    this.ratePerSec = ratePerSec;
    this.burst = burst;
  }

  /** Takes one token for `key`; false when its bucket is empty. */
  take(key: string): boolean {
    const t = this.now();
    let b = this.buckets.get(key);
    if (b === undefined) {
      if (this.buckets.size >= this.maxEntries) this.makeRoom(t);
      b = { tokens: this.burst, at: t };
      this.buckets.set(key, b);
    } else if (t > b.at) {
      b.tokens = Math.min(this.burst, b.tokens + ((t - b.at) * this.ratePerSec) / 1000);
      b.at = t;
    }
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /** Drops buckets that have refilled completely; call now and then. */
  sweep(t = this.now()): void {
    const msToFull = (b: Bucket): number => ((this.burst - b.tokens) * 1000) / this.ratePerSec;
    for (const [key, b] of this.buckets) {
      if (t - b.at >= msToFull(b)) this.buckets.delete(key);
    }
  }

  private makeRoom(t: number): void {
    this.sweep(t);
    // Still full: every entry is an address that is actively limited. Forget the oldest tenth.
    if (this.buckets.size >= this.maxEntries) {
      let drop = Math.max(1, Math.floor(this.maxEntries / 10));
      for (const key of this.buckets.keys()) {
        this.buckets.delete(key);
        if (--drop === 0) break;
      }
    }
  }
}

/** Counts connections held per IP; an entry lives only while its count is above zero. */
export class IpCounter {
  private readonly counts = new Map<string, number>();

  get size(): number {
    return this.counts.size;
  }

  get(ip: string): number {
    return this.counts.get(ip) ?? 0;
  }

  increment(ip: string): void {
    this.counts.set(ip, (this.counts.get(ip) ?? 0) + 1);
  }

  decrement(ip: string): void {
    const n = this.counts.get(ip);
    if (n === undefined) return;
    if (n <= 1) this.counts.delete(ip);
    else this.counts.set(ip, n - 1);
  }
}

export class Admission {
  private allow: CidrList;
  private deny: CidrList;
  private maxConnsPerIp: number;
  private readonly rate: RateLimiter;
  readonly perIp = new IpCounter();

  constructor(settings: AdmissionSettings, now: () => number = Date.now) {
    this.allow = new CidrList(settings.allow);
    this.deny = new CidrList(settings.deny);
    this.maxConnsPerIp = settings.maxConnsPerIp;
    this.rate = new RateLimiter(settings.connRatePerSec, settings.connBurst, 100_000, now);
  }

  /** New lists and limits (a reload); counts and buckets carry over. */
  update(settings: AdmissionSettings): void {
    this.allow = new CidrList(settings.allow);
    this.deny = new CidrList(settings.deny);
    this.maxConnsPerIp = settings.maxConnsPerIp;
    this.rate.setRate(settings.connRatePerSec, settings.connBurst);
  }

  /**
   * Decides on a new connection from `ip` (normalised). On admission the connection is counted
   * against its IP: call release(ip) exactly once when it ends, however it ends.
   */
  admit(ip: string): RefuseReason | undefined {
    if (this.deny.contains(ip)) return 'denied';
    if (this.allow.size > 0 && !this.allow.contains(ip)) return 'denied';
    // The cap is checked before the bucket so that a client at its cap doesn't burn tokens.
    if (this.perIp.get(ip) >= this.maxConnsPerIp) return 'ip-limit';
    if (!this.rate.take(ip)) return 'rate-limited';
    this.perIp.increment(ip);
    return undefined;
  }

  release(ip: string): void {
    this.perIp.decrement(ip);
  }

  /** Periodic upkeep: forget idle rate buckets. */
  sweep(): void {
    this.rate.sweep();
  }

  get trackedAddresses(): number {
    return this.rate.size;
  }
}
