// Model-based properties of admission (src/daemon/admission.ts). The first runs random sequences
// of admits (a small pool of IPv4 and IPv6 clients, several in one /64), releases, sweeps, clock
// steps and reloads against Admission with an injected clock and against a reference model
// written plainly here (addresses as bit strings, buckets in exact milli-tokens); after every
// step the verdicts, per-client counts, table size and rate must agree with the model and with
// docs/limits.md. The second floods a small table with thousands of distinct addresses while a
// few regular clients come and go: the table stays within its bound and lets them in.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { parseCidr } from '../../src/config/cidr';
import { Admission, type AdmissionSettings, type RefuseReason } from '../../src/daemon/admission';
import { checkProperty } from './budget';

// --- The reference model -------------------------------------------------------------------

/** Fails with `message()`, built only then: these checks run millions of times under fuzzing. */
function expect(ok: boolean, message: () => string): void {
  if (!ok) assert.fail(message());
}

const bitsCache = new Map<string, string>();

/** An address as its bits, most significant first: 32 for IPv4, 128 for IPv6 (no embedded IPv4 here). */
function addressBits(ip: string): string {
  let bits = bitsCache.get(ip);
  if (bits === undefined) {
    bits = parseBits(ip);
    bitsCache.set(ip, bits);
  }
  return bits;
}

function parseBits(ip: string): string {
  if (!ip.includes(':')) return ip.split('.').map((octet) => Number(octet).toString(2).padStart(8, '0')).join('');
  const [head, tail] = ip.split('::') as [string, string | undefined];
  const before = head === '' ? [] : head.split(':');
  const after = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? before : [...before, ...Array<string>(8 - before.length - after.length).fill('0'), ...after];
  return groups.map((g) => parseInt(g, 16).toString(2).padStart(16, '0')).join('');
}

/** A CIDR block as the leading bits it matches. */
interface ModelBlock {
  readonly v6: boolean;
  readonly bits: string;
}

function modelBlock(text: string): ModelBlock {
  const [address, prefix] = text.split('/') as [string, string | undefined];
  const bits = addressBits(address);
  return { v6: address.includes(':'), bits: bits.slice(0, prefix === undefined ? bits.length : Number(prefix)) };
}

function inBlocks(blocks: readonly string[], ip: string): boolean {
  const bits = addressBits(ip);
  return blocks.map(modelBlock).some((b) => b.v6 === ip.includes(':') && bits.startsWith(b.bits));
}

interface ModelSettings {
  readonly allow: readonly string[];
  readonly deny: readonly string[];
  readonly rate: number;
  readonly burst: number;
  readonly cap: number;
  readonly prefix: number;
}

interface ModelClient {
  /** Tokens × 1000, exact: rates are whole connections per second and the clock whole ms. */
  milliTokens: number;
  at: number;
  held: number;
}

/**
 * What docs/limits.md says admission does, without regard to speed: buckets are brought up to
 * date at the rate in force at each moment and never hold more than the burst in force.
 */
class Model {
  now = 0;
  readonly clients = new Map<string, ModelClient>();
  /** Keys whose bucket a flood forgot (the table was full): their rate starts afresh. */
  readonly forgotten: string[] = [];

  constructor(
    public settings: ModelSettings,
    readonly maxIdle: number,
  ) {}

  key(ip: string): string {
    if (!ip.includes(':')) return ip;
    return `${addressBits(ip).slice(0, this.settings.prefix)}/${this.settings.prefix}`;
  }

  private refill(c: ModelClient): void {
    c.milliTokens = Math.min(this.settings.burst * 1000, c.milliTokens + (this.now - c.at) * this.settings.rate);
    c.at = this.now;
  }

  private idle(): number {
    return [...this.clients.values()].filter((c) => c.held === 0).length;
  }

  admit(ip: string): { verdict: RefuseReason | undefined; key: string } {
    const key = this.key(ip);
    const s = this.settings;
    if (inBlocks(s.deny, ip) || (s.allow.length > 0 && !inBlocks(s.allow, ip))) return { verdict: 'denied', key };
    let c = this.clients.get(key);
    if (c === undefined) {
      if (this.idle() >= this.maxIdle) this.makeRoom();
      c = { milliTokens: s.burst * 1000, at: this.now, held: 0 };
      this.clients.set(key, c);
    }
    this.refill(c);
    if (c.held >= s.cap) return { verdict: 'ip-limit', key };
    if (c.milliTokens < 1000) return { verdict: 'rate-limited', key };
    c.milliTokens -= 1000;
    c.held++;
    return { verdict: undefined, key };
  }

  release(key: string): void {
    const c = this.clients.get(key);
    assert.ok(c !== undefined && c.held > 0, `model: release of ${key}, which holds nothing`);
    c.held--;
  }

  /** Forgets clients holding nothing whose bucket is full by now: the same as no entry. */
  sweep(): void {
    for (const [key, c] of this.clients) {
      this.refill(c);
      if (c.held === 0 && c.milliTokens === this.settings.burst * 1000) this.clients.delete(key);
    }
  }

  /** The documented flood policy: sweep, then forget the oldest idle entries until a tenth of the bound is free. */
  private makeRoom(): void {
    this.sweep();
    const keep = this.maxIdle - Math.max(1, Math.floor(this.maxIdle / 10));
    for (const [key, c] of this.clients) {
      if (this.idle() <= keep) break;
      if (c.held > 0) continue;
      this.clients.delete(key);
      this.forgotten.push(key);
    }
  }

  /** A reload: buckets earn at the old rate up to now, then hold at most the new burst. */
  reload(next: ModelSettings): void {
    for (const c of this.clients.values()) this.refill(c);
    this.settings = next;
    for (const c of this.clients.values()) c.milliTokens = Math.min(c.milliTokens, next.burst * 1000);
  }
}

// --- The system under test and what the test keeps ------------------------------------------

interface Connection {
  /** The key Admission gave at admission: released against exactly this, whatever reloads came since. */
  readonly key: string;
  readonly modelKey: string;
}

/** A client's admissions since the table last forgot it, for the rate check. */
interface Admitted {
  /** When the first of them came. */
  readonly since: number;
  count: number;
  /** The least, over admissions i, of (i + burst then) × 1000 - the running totals then: see checkRate. */
  slack: bigint;
}

interface World {
  readonly model: Model;
  readonly clock: { now: number };
  readonly admission: Admission;
  readonly live: Connection[];
  /** Model key ↔ Admission key: one client must have one key in both. */
  readonly keyOf: Map<string, string>;
  readonly modelKeyOf: Map<string, string>;
  /** ∫ rate dt so far, in milli-tokens: what any bucket can have earned since time 0 (past 2^53 at 10^9/s). */
  milliCredit: bigint;
  /** Every rise of the burst by a reload so far, in milli-tokens. */
  milliRaise: number;
  readonly admittedBy: Map<string, Admitted>;
  peakHolding: number;
}

function settingsOf(s: ModelSettings): AdmissionSettings {
  return {
    allow: s.allow.map((t) => parseCidr(t)!),
    deny: s.deny.map((t) => parseCidr(t)!),
    connRatePerSec: s.rate,
    connBurst: s.burst,
    maxConnsPerIp: s.cap,
    ipv6Prefix: s.prefix,
  };
}

function newWorld(settings: ModelSettings, maxIdle: number): World {
  const clock = { now: 0 };
  return {
    model: new Model(settings, maxIdle),
    clock,
    admission: new Admission(settingsOf(settings), () => clock.now, maxIdle),
    live: [],
    keyOf: new Map(),
    modelKeyOf: new Map(),
    milliCredit: 0n,
    milliRaise: 0,
    admittedBy: new Map(),
    peakHolding: 0,
  };
}

/** Everything that must hold between steps. */
function checkInvariants(w: World): void {
  const { model, admission } = w;
  let held = 0;
  let holding = 0;
  for (const [modelKey, c] of model.clients) {
    const key = w.keyOf.get(modelKey);
    if (key === undefined) assert.fail(`model key ${modelKey} never seen by Admission`);
    expect(admission.clients.heldBy(key) === c.held, () => `${key} holds ${admission.clients.heldBy(key)} connections, the model ${c.held}`);
    held += c.held;
    if (c.held > 0) holding++;
  }
  for (const key of w.modelKeyOf.keys()) expect(admission.clients.heldBy(key) >= 0, () => `${key} holds a negative count`);
  assert.equal(held, w.live.length, 'connections counted = connections admitted and not yet released');
  assert.equal(admission.clients.holding, holding, 'clients holding connections');
  assert.equal(admission.clients.size, model.clients.size, 'entries kept (the sweep and flood policy of the model)');
  w.peakHolding = Math.max(w.peakHolding, holding);
  // docs/limits.md: entries holding nothing are bounded, those holding connections are never dropped.
  expect(admission.clients.size <= model.maxIdle + w.peakHolding, () => `size ${admission.clients.size} over ${model.maxIdle} + ${w.peakHolding} holding`);
}

/**
 * No client got more than its bucket allows, from Admission's verdicts alone: over any window
 * since the table last forgot it, connections admitted ≤ the burst at the window's first
 * admission + what the rate earned during the window + every rise of the burst by a reload in
 * it (a client whose entry was swept, its bucket full, starts afresh with the new burst).
 *
 * For admissions i..n (credit C and raise R the running totals) that is (n - i + 1) × 1000 ≤
 * burst_i × 1000 + C_n - C_i + R_n - R_i, i.e. (n + 1) × 1000 - C_n - R_n ≤ (i + burst_i) × 1000
 * - C_i - R_i: every window ending at n at once, against the least right-hand side so far.
 */
function checkRate(w: World, modelKey: string): void {
  const totals = w.milliCredit + BigInt(w.milliRaise);
  let a = w.admittedBy.get(modelKey);
  if (a === undefined) {
    a = { since: w.clock.now, count: 0, slack: BigInt(w.model.settings.burst * 1000) - totals };
    w.admittedBy.set(modelKey, a);
  }
  const own = BigInt((a.count + w.model.settings.burst) * 1000) - totals;
  if (own < a.slack) a.slack = own;
  a.count++;
  const client = a;
  expect(BigInt(a.count * 1000) - totals <= a.slack, () => `${modelKey}: ${client.count} admitted since ${client.since} ms, more than its bucket allows over some window`);
}

// --- Commands -------------------------------------------------------------------------------

const ADDRESSES = [
  '10.0.0.1',
  '10.0.0.2',
  '192.168.1.7',
  '127.0.0.9',
  '2001:db8:1:2::1',
  '2001:db8:1:2::99',
  '2001:db8:1:2:ffff:ffff:ffff:ffff',
  '2001:db8:1:3::1',
  '2001:db8:1:ff00::1',
  '2001:db8:2::1',
  '2001:db8:8000::1',
  '::1',
];

const BLOCKS = ['10.0.0.0/8', '10.0.0.2', '192.168.0.0/16', '0.0.0.0/0', '2001:db8:1::/48', '2001:db8:1:2::/64', '2001:db8::/33', '::1', '::/0'];

type Step = fc.Command<World, World>;

class AdmitStep implements Step {
  constructor(readonly ip: string) {}
  check(): boolean {
    return true;
  }
  run(_m: World, w: World): void {
    // As the supervisor does: the key taken once, then admitted against it.
    const key = w.admission.clientKey(this.ip);
    const verdict = w.admission.admit(this.ip, key);
    const expected = w.model.admit(this.ip);
    if (verdict !== expected.verdict) assert.equal(verdict, expected.verdict, `admit ${this.ip}`);
    const known = w.keyOf.get(expected.key);
    expect(known === undefined || known === key, () => `${this.ip}: key ${key}, earlier ${known} for the same client`);
    const other = w.modelKeyOf.get(key);
    expect(other === undefined || other === expected.key, () => `${this.ip}: key ${key} also stands for another client`);
    w.keyOf.set(expected.key, key);
    w.modelKeyOf.set(key, expected.key);
    for (const forgotten of w.model.forgotten) w.admittedBy.delete(forgotten);
    w.model.forgotten.length = 0;
    if (verdict === undefined) {
      w.live.push({ key, modelKey: expected.key });
      checkRate(w, expected.key);
    }
    checkInvariants(w);
  }
  toString(): string {
    return `admit(${this.ip})`;
  }
}

/**
 * A client at its rate limit for a while: `attempts` connections `everyMs` apart, each ended at
 * once when admitted. Long runs of small refills are where a bucket's arithmetic drifts.
 */
class HammerStep implements Step {
  constructor(
    readonly ip: string,
    readonly attempts: number,
    readonly everyMs: number,
  ) {}
  check(): boolean {
    return true;
  }
  run(m: World, w: World): void {
    for (let i = 0; i < this.attempts; i++) {
      new TickStep(this.everyMs).run(m, w);
      const before = w.live.length;
      new AdmitStep(this.ip).run(m, w);
      if (w.live.length > before) new ReleaseStep(before).run(m, w);
    }
  }
  toString(): string {
    return `hammer(${this.ip}, ${this.attempts} × every ${this.everyMs} ms)`;
  }
}

/** Ends a connection admitted earlier, exactly once, against the key it was admitted with. */
class ReleaseStep implements Step {
  constructor(readonly pick: number) {}
  check(m: World): boolean {
    return m.live.length > 0;
  }
  run(_m: World, w: World): void {
    const [conn] = w.live.splice(this.pick % w.live.length, 1) as [Connection];
    w.admission.release(conn.key);
    w.model.release(conn.modelKey);
    checkInvariants(w);
  }
  toString(): string {
    return `release(#${this.pick})`;
  }
}

class SweepStep implements Step {
  check(): boolean {
    return true;
  }
  run(_m: World, w: World): void {
    w.admission.sweep();
    w.model.sweep();
    checkInvariants(w);
  }
  toString(): string {
    return 'sweep';
  }
}

class TickStep implements Step {
  constructor(readonly ms: number) {}
  check(): boolean {
    return true;
  }
  run(_m: World, w: World): void {
    w.clock.now += this.ms;
    w.model.now += this.ms;
    w.milliCredit += BigInt(this.ms) * BigInt(w.model.settings.rate);
    checkInvariants(w);
  }
  toString(): string {
    return `tick(${this.ms})`;
  }
}

/** A reload: new lists and limits; the connections held keep their keys. */
class ReloadStep implements Step {
  constructor(readonly settings: ModelSettings) {}
  check(): boolean {
    return true;
  }
  run(_m: World, w: World): void {
    w.admission.update(settingsOf(this.settings));
    w.milliRaise += Math.max(0, this.settings.burst - w.model.settings.burst) * 1000;
    w.model.reload(this.settings);
    checkInvariants(w);
  }
  toString(): string {
    return `reload(${JSON.stringify(this.settings)})`;
  }
}

const blocksArb = (emptyWeight: number): fc.Arbitrary<string[]> =>
  fc.oneof({ weight: emptyWeight, arbitrary: fc.constant<string[]>([]) }, { weight: 1, arbitrary: fc.subarray(BLOCKS, { minLength: 1, maxLength: 3 }) });

const settingsArb: fc.Arbitrary<ModelSettings> = fc.record({
  allow: blocksArb(4),
  deny: blocksArb(4),
  // Up to the largest --conn-rate and --conn-burst the config accepts.
  rate: fc.oneof(fc.integer({ min: 1, max: 20 }), fc.integer({ min: 1, max: 1_000_000 }), fc.constant(1_000_000_000)),
  burst: fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 1, max: 8 }) }, { weight: 1, arbitrary: fc.constantFrom(1000, 1_000_000_000) }),
  cap: fc.integer({ min: 1, max: 5 }),
  prefix: fc.oneof(fc.constantFrom(48, 56, 64, 128), fc.integer({ min: 1, max: 128 })),
});

const tickArb = fc.oneof(
  { weight: 3, arbitrary: fc.integer({ min: 0, max: 20 }) },
  { weight: 2, arbitrary: fc.integer({ min: 20, max: 2_000 }) },
  { weight: 1, arbitrary: fc.integer({ min: 2_000, max: 10_000_000 }) },
);

const stepsArb = fc.commands(
  [
    fc.constantFrom(...ADDRESSES).map((ip) => new AdmitStep(ip)),
    fc.constantFrom(...ADDRESSES).map((ip) => new AdmitStep(ip)),
    fc.nat().map((pick) => new ReleaseStep(pick)),
    fc.constant(new SweepStep()),
    tickArb.map((ms) => new TickStep(ms)),
    settingsArb.map((s) => new ReloadStep(s)),
    fc
      .tuple(fc.constantFrom(...ADDRESSES), fc.integer({ min: 1, max: 400 }), fc.integer({ min: 1, max: 20 }))
      .map(([ip, attempts, everyMs]) => new HammerStep(ip, attempts, everyMs)),
  ],
  { size: '+1' },
);

test('admission: verdicts, counts, table size and rate agree with the model', async () => {
  await checkProperty(
    fc.property(settingsArb, fc.integer({ min: 1, max: 8 }), stepsArb, (settings, maxIdle, steps) => {
      const w = newWorld(settings, maxIdle);
      fc.modelRun(() => ({ model: w, real: w }), steps);
    }),
    { runs: 300 },
  );
});

// --- A flood of distinct clients ------------------------------------------------------------

/** Legitimate clients, connecting now and then through the flood. */
const REGULARS = ['192.0.2.1', '192.0.2.2', '2001:db8:feed::1'];

interface Flood {
  readonly kind: 'ipv4 /16' | 'random ipv6';
  readonly count: number;
  readonly seed: number;
}

/** Thousands of flood addresses, described small so that a counterexample reads well. */
const floodArb: fc.Arbitrary<Flood> = fc.record({
  kind: fc.constantFrom('ipv4 /16' as const, 'random ipv6' as const),
  count: fc.integer({ min: 1000, max: 4000 }),
  seed: fc.integer({ min: 1, max: 0x7fffffff }),
});

/** The addresses of `flood`: distinct hosts of 10.7.0.0/16, or IPv6 addresses from a xorshift of the seed. */
function floodAddresses(flood: Flood): string[] {
  let x = flood.seed;
  const next = (): number => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
  const stride = flood.seed | 1; // odd: i × stride visits distinct hosts of the /16
  return Array.from({ length: flood.count }, (_, i) => {
    if (flood.kind === 'ipv4 /16') {
      const host = (i * stride) & 0xffff;
      return `10.7.${host >> 8}.${host & 255}`;
    }
    return Array.from({ length: 8 }, () => (next() & 0xffff).toString(16)).join(':');
  });
}

/** One regular client's bucket (below zero when a forgotten bucket let it in early) and count. */
interface Regular {
  milliTokens: number;
  at: number;
  held: number;
}

test('admission: a flood of distinct clients keeps the table within its bound and lets regular clients in', async () => {
  await checkProperty(
    fc.property(
      floodArb,
      fc.record({
        maxIdle: fc.integer({ min: 5, max: 300 }),
        rate: fc.integer({ min: 1, max: 50 }),
        burst: fc.integer({ min: 1, max: 5 }),
        cap: fc.integer({ min: 1, max: 4 }),
        prefix: fc.constantFrom(48, 64, 128),
        /** One flood connection in `holdEvery` stays open to the end. */
        holdEvery: fc.integer({ min: 2, max: 200 }),
        regularEvery: fc.integer({ min: 1, max: 50 }),
      }),
      fc.infiniteStream(fc.tuple(fc.integer({ min: 0, max: 3 }), fc.nat(), fc.boolean())),
      (flood, s, noise) => {
        let now = 0;
        const admission = new Admission({ allow: [], deny: [], connRatePerSec: s.rate, connBurst: s.burst, maxConnsPerIp: s.cap, ipv6Prefix: s.prefix }, () => now, s.maxIdle);
        const regulars = new Map<string, Regular>(REGULARS.map((ip) => [ip, { milliTokens: s.burst * 1000, at: 0, held: 0 }]));
        let peakHolding = 0;
        let floodHeld = 0;
        const draws = noise[Symbol.iterator]();
        floodAddresses(flood).forEach((ip, i) => {
          const [ms, pick, release] = draws.next().value as [number, number, boolean];
          now += ms;
          const key = admission.clientKey(ip);
          if (admission.admit(ip, key) === undefined) {
            if (i % s.holdEvery === 0) floodHeld++;
            else admission.release(key);
          }
          if (i % s.regularEvery === 0) {
            const ip = REGULARS[pick % REGULARS.length]!;
            const r = regulars.get(ip)!;
            r.milliTokens = Math.min(s.burst * 1000, r.milliTokens + (now - r.at) * s.rate);
            r.at = now;
            const verdict = admission.admit(ip, admission.clientKey(ip));
            // The flood may make the table forget an idle regular's bucket (documented): it then
            // starts afresh, full, so its bucket never holds less than `r`, which never forgets.
            // Refused only where its own cap or bucket refuses; its count is never forgotten.
            const ownLimits = r.held >= s.cap ? 'ip-limit' : r.milliTokens < 1000 ? 'rate-limited' : undefined;
            if (verdict !== undefined && verdict !== ownLimits) assert.fail(`regular ${ip} after ${i} flood connections: ${verdict}, its own limits say ${ownLimits ?? 'admit'}`);
            if (verdict === undefined) {
              expect(r.held < s.cap, () => `regular ${ip} admitted over its cap of ${s.cap}`);
              r.milliTokens -= 1000;
              r.held++;
            }
            if (release && r.held > 0) {
              admission.release(admission.clientKey(ip));
              r.held--;
            }
          }
          let holding = floodHeld;
          for (const [ip, r] of regulars) {
            const key = admission.clientKey(ip);
            expect(admission.clients.heldBy(key) === r.held, () => `regular ${ip} holds ${admission.clients.heldBy(key)}, expected ${r.held}`);
            if (r.held > 0) holding++;
          }
          peakHolding = Math.max(peakHolding, holding);
          expect(admission.clients.size <= s.maxIdle + peakHolding, () => `${admission.clients.size} entries after ${i + 1} flood connections, bound ${s.maxIdle} + ${peakHolding} holding`);
        });
      },
    ),
    { runs: 20 },
  );
});
