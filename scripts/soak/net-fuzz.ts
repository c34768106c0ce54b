// The network fuzzer (issue 17): mutated byte streams against a live daemon started with
// --proxy-protocol --trusted-proxy <addr>/32 --scenarios <host:port>. Each connection picks a
// case with a seeded PRNG (PROXY headers mutated, ClientHellos mutated, raw records inside a
// real session, truncated records, the scenario listener's SNI peek, untrusted sources, random
// bytes, half-closes), sends it, and then either stays silent or ends itself at a random point.
// What the daemon owes every connection: to end it within lifetimeBoundMs of the fuzzer going
// quiet; a connection it has not ended by then is destroyed here and counted overdue.
//
// Used by test/soak/net-fuzz.test.ts and by the chaos soak (`npm run soak`, `npm run fuzz:net`),
// which also watch the daemon itself. Nothing here throws: every socket has its error handler,
// and every failure is a count in the stats.

import { once } from 'node:events';
import net from 'node:net';
import { Duplex } from 'node:stream';
import tls from 'node:tls';
import { SCENARIOS } from '../../src/scenarios/catalogue';
import {
  connectionSeed,
  mutateHello,
  mutateProxyHeader,
  randomRecords,
  splitWrites,
  tlsRecord,
  validProxyHeader,
  type Endpoint,
} from './net-fuzz-bytes';
import { Prng } from './prng';

export interface NetFuzzTarget {
  readonly host: string;
  /** The main listener; the daemon runs with --proxy-protocol --trusted-proxy <trustedSource>/32. */
  readonly port: number;
  /** A local address inside --trusted-proxy, e.g. '127.0.0.1'. */
  readonly trustedSource: string;
  /** Other loopback addresses (127.0.0.2, ...) outside --trusted-proxy. */
  readonly untrustedSources: readonly string[];
  /** The --scenarios listener (under --proxy-protocol it takes the header too). */
  readonly scenarioPort: number;
  /** --scenario-domain, e.g. 'localhost'. */
  readonly scenarioDomain: string;
  /** CA of the daemon's certificate, to complete real handshakes. */
  readonly ca: Buffer;
  /** For daemons under --client-auth. */
  readonly clientCert?: { cert: Buffer; key: Buffer };
  /** Every connection must be ended by the daemon within this many ms after the fuzzer stops sending (derived from the daemon's timeouts by the caller). */
  readonly lifetimeBoundMs: number;
  /** Server name the main listener's certificate holds (default 'localhost'). */
  readonly servername?: string;
}

export interface NetFuzzOptions {
  /** Connections open at once. */
  readonly concurrency: number;
  /** Seeds every choice, so a run is reproducible (up to the random bytes in captured ClientHellos). */
  readonly seed: number;
  /** Client addresses carried in PROXY headers (default: DEFAULT_SOURCES, a spread of IPv4 and IPv6). */
  readonly sources?: readonly string[];
}

/** How the connections of one case ended. The counts overlap: a connection can be alerted and then ended. */
export interface NetFuzzCaseStats {
  started: number;
  /** The daemon reset it (ECONNRESET or EPIPE). */
  reset: number;
  /** The daemon ended it with a FIN. */
  ended: number;
  /** The daemon sent a TLS alert (a plaintext alert record seen, or the TLS client reporting one). */
  alert: number;
  /** A payload came back byte-exact through a real session. */
  echoed: number;
  /** The fuzzer destroyed it itself before the daemon ended it. */
  selfClosed: number;
  overdue: number;
}

export interface NetFuzzStats {
  started: number;
  ended: number;
  open: number;
  /** Connections the daemon had not ended within lifetimeBoundMs (each one a failure). */
  overdue: number;
  byCase: Record<string, NetFuzzCaseStats>;
  /** Up to 10 descriptions (case, seed-derived id, bytes sent in hex prefix) for reproduction. */
  overdueExamples: string[];
  /**
   * Things a well-behaved daemon never does, each a failure: a valid session from the trusted
   * source that failed its handshake or echoed wrong, or an untrusted source that was served
   * instead of reset. (A daemon whose limits refuse the fuzzer's load shows up here too: run it
   * with generous --conn-rate and --max-conns-per-ip.)
   */
  anomalies: number;
  /** Up to 10 descriptions, as overdueExamples. */
  anomalyExamples: string[];
  /** ClientHellos captured at the start, to mutate (0 until the capture is done). */
  hellosCaptured: number;
  /** Since startNetFuzz (ms): with `started`, the connection rate. */
  elapsedMs: number;
}

export interface NetFuzzRun {
  stats(): NetFuzzStats;
  /** No new connections; resolves when every open one has ended (each bounded by lifetimeBoundMs, then destroyed and counted overdue). */
  stop(): Promise<NetFuzzStats>;
}

export const CASE_NAMES = [
  'proxy-mutated',
  'hello-mutated',
  'records-after-handshake',
  'truncated-records',
  'scenario-hello-mutated',
  'untrusted',
  'random-bytes',
  'half-close',
  'no-read',
] as const;
export type CaseName = (typeof CASE_NAMES)[number];

/** Documentation and test-net addresses, v4 and v6 (distinct /64s, so per-prefix limits see distinct clients). */
export const DEFAULT_SOURCES: readonly string[] = [
  '192.0.2.1', '192.0.2.77', '198.51.100.9', '198.51.100.200', '203.0.113.5', '203.0.113.254', '10.1.2.3', '172.16.9.9',
  '2001:db8::1', '2001:db8:1::5', '2001:db8:2::abcd', '2001:db8:ffff:ffff:ffff:ffff:ffff:ffff',
];

const MAX_EXAMPLES = 10;
/** Bytes of what a connection sent kept for its description. */
const SENT_PREFIX_BYTES = 64;
/** Longest pause the fuzzer makes between writes or before ending a connection itself (ms). */
const MAX_PAUSE_MS = 300;
/** What a no-read connection sends (bytes): more than the socket buffers on both sides hold, so the echo backs up. */
const NO_READ_MIN_BYTES = 128 * 1024;
const NO_READ_MAX_BYTES = 512 * 1024;
/** Per-byte delay when a header goes out slowly (ms); with ≤ 256 writes, about 1 s at most. */
const SLOW_WRITE_MS = 4;

/** Starts fuzzing `target` at once (after capturing a few ClientHellos); runs until stop(). */
export function startNetFuzz(target: NetFuzzTarget, options: NetFuzzOptions): NetFuzzRun {
  return new NetFuzzEngine(target, options);
}

/** The ClientHellos the cases mutate: real ones from Node's TLS client. */
interface Hellos {
  /** For the main listener: various server names, TLS 1.2 and 1.3, ALPN, a resumed session. */
  readonly main: Buffer[];
  /** For the scenario listener, one per catalogue name (`<name>.<domain>`), the name as sent. */
  readonly scenario: Array<{ readonly name: string; readonly record: Buffer }>;
}

class NetFuzzEngine implements NetFuzzRun {
  private readonly counts: NetFuzzStats;
  private readonly sources: readonly string[];
  private readonly drained = new Set<() => void>();
  private hellos: Hellos | undefined;
  private stopping = false;
  private nextId = 0;
  private readonly startedAt = performance.now();

  constructor(
    private readonly target: NetFuzzTarget,
    private readonly options: NetFuzzOptions,
  ) {
    this.sources = options.sources !== undefined && options.sources.length > 0 ? options.sources : DEFAULT_SOURCES;
    const byCase: Record<string, NetFuzzCaseStats> = {};
    for (const name of CASE_NAMES) byCase[name] = { started: 0, reset: 0, ended: 0, alert: 0, echoed: 0, selfClosed: 0, overdue: 0 };
    this.counts = { started: 0, ended: 0, open: 0, overdue: 0, byCase, overdueExamples: [], anomalies: 0, anomalyExamples: [], hellosCaptured: 0, elapsedMs: 0 };
    void captureHellos(target)
      .then((hellos) => {
        this.hellos = hellos;
        this.counts.hellosCaptured = hellos.main.length + hellos.scenario.length;
        this.fill();
      })
      .catch((err: unknown) => this.anomaly(`capturing ClientHellos failed: ${(err as Error).message}`));
  }

  stats(): NetFuzzStats {
    return { ...structuredClone(this.counts), elapsedMs: Math.round(performance.now() - this.startedAt) };
  }

  stop(): Promise<NetFuzzStats> {
    this.stopping = true;
    if (this.counts.open === 0) return Promise.resolve(this.stats());
    return new Promise((resolve) => this.drained.add(() => resolve(this.stats())));
  }

  /** Opens connections until `concurrency` are open. */
  private fill(): void {
    while (!this.stopping && this.hellos !== undefined && this.counts.open < this.options.concurrency) this.launch(this.hellos);
  }

  private launch(hellos: Hellos): void {
    const id = this.nextId++;
    const rng = new Prng(connectionSeed(this.options.seed, id));
    const caseName = rng.pick(CASE_NAMES);
    const probe = new Probe(this.target, caseName, `${caseName} seed=${this.options.seed} conn=${id}`);
    this.counts.started++;
    this.counts.open++;
    this.counts.byCase[caseName]!.started++;
    const context: CaseContext = { rng, probe, target: this.target, hellos, client: () => this.client(rng), anomaly: (what) => this.anomaly(`${probe.describe()}: ${what}`) };
    runCase(context)
      .catch((err: unknown) => this.anomaly(`${probe.describe()}: the fuzzer threw: ${(err as Error).stack ?? String(err)}`))
      .then(() => probe.release())
      .finally(() => this.settle(probe));
  }

  private client(rng: Prng): Endpoint {
    return { address: rng.pick(this.sources), port: rng.int(1024, 65535) };
  }

  private settle(probe: Probe): void {
    const c = this.counts.byCase[probe.caseName]!;
    const outcome = probe.outcome;
    if (outcome.reset) c.reset++;
    if (outcome.ended) c.ended++;
    if (outcome.alert) c.alert++;
    if (outcome.echoed) c.echoed++;
    if (outcome.selfClosed) c.selfClosed++;
    if (outcome.overdue) {
      c.overdue++;
      this.counts.overdue++;
      if (this.counts.overdueExamples.length < MAX_EXAMPLES) this.counts.overdueExamples.push(probe.describe());
    }
    this.counts.ended++;
    this.counts.open--;
    if (this.stopping && this.counts.open === 0) {
      for (const resolve of this.drained) resolve();
      this.drained.clear();
    }
    // A fresh turn: a connection refused at once must not make this a deep recursion.
    setImmediate(() => this.fill());
  }

  private anomaly(description: string): void {
    this.counts.anomalies++;
    if (this.counts.anomalyExamples.length < MAX_EXAMPLES) this.counts.anomalyExamples.push(description.slice(0, 500));
  }
}

interface CaseContext {
  readonly rng: Prng;
  readonly probe: Probe;
  readonly target: NetFuzzTarget;
  readonly hellos: Hellos;
  /** A client address and port for a PROXY header. */
  client(): Endpoint;
  /** Records a failure of the daemon that is not a connection outliving its bound. */
  anomaly(what: string): void;
}

interface Outcome {
  reset: boolean;
  ended: boolean;
  alert: boolean;
  echoed: boolean;
  selfClosed: boolean;
  overdue: boolean;
}

/**
 * One fuzz connection: its raw TCP socket, what it sent (a prefix, for the description), how it
 * ended, and the bound on how long the daemon may take to end it.
 */
class Probe {
  readonly outcome: Outcome = { reset: false, ended: false, alert: false, echoed: false, selfClosed: false, overdue: false };
  /** Resolves when the socket has closed, however. */
  readonly closed: Promise<void>;
  private raw: net.Socket | undefined;
  private sentPrefix = Buffer.alloc(0);
  private sentBytes = 0;
  private isClosed = false;
  private markClosed!: () => void;
  private readonly alerts = new AlertScanner();
  private readonly notes: string[] = [];
  /** Bytes after which write() destroys the connection (the fuzzer's own abort mid-stream). */
  private destroyAfterBytes = Infinity;
  /** Detaches a TLS client running over this connection (see passThrough). */
  private detachTls: (() => void) | undefined;

  constructor(
    private readonly target: NetFuzzTarget,
    readonly caseName: CaseName,
    private readonly id: string,
  ) {
    this.closed = new Promise((resolve) => (this.markClosed = resolve));
  }

  get alive(): boolean {
    return !this.isClosed;
  }

  /** Connects from `localAddress` to `port` on the target's host; resolves false if it closed first. */
  async connect(port: number, localAddress: string): Promise<boolean> {
    const raw = net.connect({ host: this.target.host, port, localAddress, noDelay: true });
    this.raw = raw;
    raw.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNRESET' || err.code === 'EPIPE') this.outcome.reset = true;
    });
    raw.on('data', (chunk: Buffer) => {
      if (this.alerts.scan(chunk)) this.outcome.alert = true;
    });
    raw.on('end', () => (this.outcome.ended = true));
    raw.once('close', () => {
      this.isClosed = true;
      this.markClosed();
    });
    const connected = await Promise.race([once(raw, 'connect').then(() => true, () => false), this.closed.then(() => false)]);
    return connected && this.alive;
  }

  get socket(): net.Socket {
    if (this.raw === undefined) throw new Error('Probe.socket before connect()');
    return this.raw;
  }

  /**
   * Writes `data` unless the connection is gone (a write after a reset would only raise EPIPE),
   * up to the destroyAfter() point, where it destroys the connection instead.
   */
  write(data: Buffer): void {
    if (!this.alive || this.raw === undefined || !this.raw.writable || data.length === 0) return;
    const room = this.destroyAfterBytes - this.sentBytes;
    const chunk = room < data.length ? data.subarray(0, Math.max(0, room)) : data;
    if (this.sentPrefix.length < SENT_PREFIX_BYTES) this.sentPrefix = Buffer.concat([this.sentPrefix, chunk.subarray(0, SENT_PREFIX_BYTES - this.sentPrefix.length)]);
    this.sentBytes += chunk.length;
    if (chunk.length > 0) this.raw.write(chunk);
    if (chunk !== data) this.destroy();
  }

  /** Makes write() destroy the connection once `bytes` have been sent. */
  destroyAfter(bytes: number): void {
    this.destroyAfterBytes = bytes;
    this.note(`destroys itself after ${bytes} bytes`);
  }

  /** Records how to detach the TLS client running over this connection. */
  runsTls(detach: () => void): void {
    this.detachTls = detach;
  }

  /**
   * Stops the TLS client (if any) reading and writing here, without closing the connection: what
   * the daemon does from now on is seen on the raw socket, not taken for an error by the client.
   */
  dropTls(): void {
    this.detachTls?.();
    this.detachTls = undefined;
  }

  /** Writes `pieces` with `delayMs` between them; stops early if the connection closes. */
  async writeAll(pieces: readonly Buffer[], delayMs = 0): Promise<void> {
    for (const piece of pieces) {
      if (!this.alive) return;
      this.write(piece);
      if (delayMs > 0) await this.pause(delayMs);
    }
  }

  /** Waits `ms`, or less if the connection closes. */
  async pause(ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([new Promise((resolve) => (timer = setTimeout(resolve, ms))), this.closed]);
    clearTimeout(timer);
  }

  /**
   * Waits for `event` from the daemon (a handshake, an echo) within lifetimeBoundMs. Resolves
   * true when it came; false when the connection closed first; on the bound, the connection is
   * overdue: destroyed, and false.
   */
  async expect(event: Promise<unknown>): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<'bound'>((resolve) => (timer = setTimeout(() => resolve('bound'), this.target.lifetimeBoundMs)));
    const result = await Promise.race([event.then(() => 'event' as const, () => 'closed' as const), this.closed.then(() => 'closed' as const), bound]);
    clearTimeout(timer);
    if (result === 'bound' && this.alive) this.overdue();
    return result === 'event' && this.alive;
  }

  /** The fuzzer has nothing more to send: the daemon must close the connection within lifetimeBoundMs. */
  async awaitDaemonClose(): Promise<void> {
    await this.expect(new Promise(() => {}));
  }

  /** Ends the connection itself, now. */
  destroy(): void {
    // Destroyed already (by an error: a reset's 'close' comes a tick after it) is not ours.
    if (!this.alive || this.raw === undefined || this.raw.destroyed) return;
    this.outcome.selfClosed = true;
    this.raw.destroy();
  }

  /** Resolves once the connection has closed, destroying it first if a case left it open: `open` counts only live sockets. */
  release(): Promise<void> {
    if (this.raw === undefined) return Promise.resolve();
    this.destroy();
    return this.closed;
  }

  /** Half-closes (FIN) and waits for the daemon to close its side. */
  async halfClose(): Promise<void> {
    if (this.alive && this.raw?.writable === true) this.raw.end();
    await this.awaitDaemonClose();
  }

  noteTlsError(err: Error & { code?: string }): void {
    if (/alert/i.test(err.message) || (err.code ?? '').includes('ALERT')) this.outcome.alert = true;
    if (err.code === 'ECONNRESET') this.outcome.reset = true;
  }

  /** Adds `note` (what the case chose that the bytes don't show, e.g. a server name) to the description. */
  note(note: string): void {
    this.notes.push(note);
  }

  /** Case, id, and the first bytes sent: enough to find the connection again and see what it was. */
  describe(): string {
    return `${this.id}${this.notes.map((n) => ` ${n}`).join('')} sent ${this.sentBytes} bytes: ${this.sentPrefix.toString('hex')}${this.sentBytes > this.sentPrefix.length ? '...' : ''}`;
  }

  private overdue(): void {
    this.outcome.overdue = true;
    this.raw?.destroy();
  }
}

/** Spots plaintext TLS alert records in what the daemon sends, keeping only a record header's state. */
class AlertScanner {
  private header = Buffer.alloc(0);
  private remaining = 0;
  private broken = false;

  /** True if `chunk` held the start of an alert record. Gives up (false from then on) on bytes that are not TLS records. */
  scan(chunk: Buffer): boolean {
    let seen = false;
    let at = 0;
    while (!this.broken && at < chunk.length) {
      if (this.remaining > 0) {
        const take = Math.min(this.remaining, chunk.length - at);
        this.remaining -= take;
        at += take;
        continue;
      }
      const take = Math.min(5 - this.header.length, chunk.length - at);
      this.header = Buffer.concat([this.header, chunk.subarray(at, at + take)]);
      at += take;
      if (this.header.length < 5) break;
      const type = this.header[0]!;
      if (type < 20 || type > 24) this.broken = true;
      if (type === 21) seen = true;
      this.remaining = this.header.readUInt16BE(3);
      this.header = Buffer.alloc(0);
    }
    return seen;
  }
}

/** Cases whose connections always wait for the daemon to end them: its timeouts, its reset, its answer to a FIN. */
const WAITING_CASES: ReadonlySet<CaseName> = new Set(['truncated-records', 'untrusted', 'half-close', 'no-read']);

/** How a connection ends once its case has sent what it sends. */
type Ending = 'silent' | 'half-close' | 'destroy';

/** Runs one connection's case, then its ending: silence until the daemon closes it, or a close of its own. */
async function runCase(c: CaseContext): Promise<void> {
  const ending: Ending = c.rng.chance(0.5) ? 'silent' : c.rng.pick(['half-close', 'destroy'] as const);
  // Half of those that destroy themselves do it in the middle of what the case sends (not the
  // cases that wait for the daemon, whatever happens, by design).
  if (ending === 'destroy' && !WAITING_CASES.has(c.probe.caseName) && c.rng.chance(0.5)) c.probe.destroyAfter(c.rng.below(2048));
  switch (c.probe.caseName) {
    case 'proxy-mutated':
      await proxyMutated(c);
      break;
    case 'hello-mutated':
      await helloMutated(c);
      break;
    case 'records-after-handshake':
      await recordsAfterHandshake(c);
      break;
    case 'truncated-records':
      // Always silent: the daemon's timeouts are what this case is for.
      await truncatedRecords(c);
      return finish(c, 'silent');
    case 'scenario-hello-mutated':
      await scenarioHelloMutated(c);
      break;
    case 'untrusted':
      await untrusted(c);
      return;
    case 'random-bytes':
      await randomBytes(c);
      break;
    case 'half-close':
      await halfClose(c);
      return;
    case 'no-read':
      await noRead(c);
      return finish(c, 'silent');
  }
  await finish(c, ending);
}

async function finish(c: CaseContext, ending: Ending): Promise<void> {
  c.probe.dropTls();
  if (!c.probe.alive) return;
  if (ending === 'silent') return c.probe.awaitDaemonClose();
  await c.probe.pause(c.rng.below(MAX_PAUSE_MS));
  if (ending === 'half-close') return c.probe.halfClose();
  c.probe.destroy();
}

/** Connects from the trusted source to the main listener; false if it closed at once. */
function connectTrusted(c: CaseContext): Promise<boolean> {
  return c.probe.connect(c.target.port, c.target.trustedSource);
}

function server(c: CaseContext): Endpoint {
  return { address: c.target.host, port: c.target.port };
}

function mainHello(c: CaseContext): Buffer {
  return c.rng.pick(c.hellos.main);
}

/** A mutated header, then maybe a ClientHello, all at once, in pieces, or slowly. */
async function proxyMutated(c: CaseContext): Promise<void> {
  if (!(await connectTrusted(c))) return;
  const header = mutateProxyHeader(c.rng, validProxyHeader(c.rng, c.client(), server(c)));
  const data = c.rng.chance(0.5) ? Buffer.concat([header, mainHello(c)]) : header;
  const slow = c.rng.chance(0.2);
  await c.probe.writeAll(slow ? splitWrites(c.rng, data) : [data], slow ? SLOW_WRITE_MS : 0);
}

/** A valid header, then a ClientHello made wrong, in one write or several. */
async function helloMutated(c: CaseContext): Promise<void> {
  if (!(await connectTrusted(c))) return;
  c.probe.write(validProxyHeader(c.rng, c.client(), server(c)));
  await c.probe.writeAll(splitWrites(c.rng, mutateHello(c.rng, mainHello(c))));
}

/** A valid header and a real session that echoes, sometimes a renegotiation (TLS 1.2); then raw records on the socket underneath. */
async function recordsAfterHandshake(c: CaseContext): Promise<void> {
  const secure = await realSession(c);
  if (secure === undefined) return;
  if (secure.getProtocol() === 'TLSv1.2' && c.rng.chance(0.2)) {
    // The daemon refuses renegotiation; the answer (an alert, a close) is what is checked.
    c.probe.note('renegotiates');
    secure.renegotiate({}, () => {});
    await c.probe.pause(c.rng.below(MAX_PAUSE_MS));
  }
  c.probe.dropTls();
  await c.probe.writeAll(splitWrites(c.rng, randomRecords(c.rng)));
}

/** A real session, then a record header promising more than follows; silence after. */
async function truncatedRecords(c: CaseContext): Promise<void> {
  if (c.rng.chance(0.3)) {
    // The same during the handshake: a ClientHello record cut short.
    if (!(await connectTrusted(c))) return;
    const hello = mainHello(c);
    c.probe.write(Buffer.concat([validProxyHeader(c.rng, c.client(), server(c)), hello.subarray(0, c.rng.int(1, hello.length - 1))]));
    return;
  }
  if ((await realSession(c)) === undefined) return;
  c.probe.dropTls();
  const length = c.rng.int(1, 16_384 + 256);
  c.probe.write(tlsRecord(c.rng.pick([21, 22, 23]), 0x0303, c.rng.bytes(c.rng.below(Math.min(length, 4096))), length));
}

/**
 * The scenario listener: a ClientHello naming a catalogue scenario or garbage, often mutated.
 * Under --proxy-protocol that listener takes the header too (test/proxy-protocol.test.ts), so a
 * valid one goes first; now and then none, or from an untrusted source, which must be reset.
 */
async function scenarioHelloMutated(c: CaseContext): Promise<void> {
  if (c.rng.chance(0.3)) return scenarioSession(c);
  const headerless = c.rng.chance(0.1);
  const source = headerless ? c.rng.pick([c.target.trustedSource, ...c.target.untrustedSources]) : c.target.trustedSource;
  if (!(await c.probe.connect(c.target.scenarioPort, source))) return;
  const { name, record } = c.rng.pick(c.hellos.scenario);
  let hello = record;
  if (c.rng.chance(0.3)) hello = withGarbageName(c.rng, record, name);
  // Some untouched: the scenario is then served to a client that never answers.
  if (c.rng.chance(0.75)) hello = mutateHello(c.rng, hello);
  const header = headerless ? Buffer.alloc(0) : validProxyHeader(c.rng, c.client(), { address: c.target.host, port: c.target.scenarioPort });
  await c.probe.writeAll(splitWrites(c.rng, Buffer.concat([header, hello])));
}

/**
 * A real handshake with a random scenario (trusting anything: many serve bad certificates on
 * purpose), then a payload and maybe raw records: the behaviours (slow-echo, no-echo,
 * reset-after-echo, ...) under a client that misbehaves. Their handshakes may fail: no anomaly.
 */
async function scenarioSession(c: CaseContext): Promise<void> {
  if (!(await c.probe.connect(c.target.scenarioPort, c.target.trustedSource))) return;
  c.probe.write(validProxyHeader(c.rng, c.client(), { address: c.target.host, port: c.target.scenarioPort }));
  const { name } = c.rng.pick(c.hellos.scenario);
  c.probe.note(`session with ${name}`);
  const secure = await handshake(c, { servername: name, rejectUnauthorized: false, ...(c.rng.chance(0.3) ? (c.target.clientCert ?? {}) : {}) });
  if (secure === undefined) return;
  secure.write(c.rng.bytes(c.rng.int(1, 4096)));
  await c.probe.pause(c.rng.below(MAX_PAUSE_MS));
  if (c.rng.chance(0.5)) {
    c.probe.dropTls();
    await c.probe.writeAll(splitWrites(c.rng, randomRecords(c.rng)));
  }
}

/** `record` with the bytes of server name `name` replaced by as many others (random, or a name outside the domain). */
function withGarbageName(rng: Prng, record: Buffer, name: string): Buffer {
  const at = record.indexOf(name, 0, 'latin1');
  if (at === -1) return record;
  const out = Buffer.from(record);
  const replacement = rng.chance(0.5) ? rng.bytes(name.length) : Buffer.from(name.split('').reverse().join(''), 'latin1');
  replacement.copy(out, at);
  return out;
}

/** From outside --trusted-proxy, a valid header and hello: the daemon must reset it, serving nothing. */
async function untrusted(c: CaseContext): Promise<void> {
  const source = c.rng.pick(c.target.untrustedSources);
  if (await c.probe.connect(c.target.port, source)) {
    c.probe.write(Buffer.concat([validProxyHeader(c.rng, c.client(), server(c)), mainHello(c)]));
    await c.probe.awaitDaemonClose();
  }
  if (!c.probe.outcome.reset && !c.probe.outcome.overdue) c.anomaly(`untrusted source ${source} was not reset`);
}

/** A valid header (or none) and random bytes of random length. */
async function randomBytes(c: CaseContext): Promise<void> {
  if (!(await connectTrusted(c))) return;
  const header = c.rng.chance(0.7) ? validProxyHeader(c.rng, c.client(), server(c)) : Buffer.alloc(0);
  const body = c.rng.bytes(c.rng.chance(0.8) ? c.rng.below(1024) : c.rng.below(20_000));
  await c.probe.writeAll(splitWrites(c.rng, Buffer.concat([header, body])));
}

/**
 * A real session that sends a lot and stops reading: the daemon's echo backs up, and its idle
 * timeout (and close grace) must still end the session. Reading resumes after a while, for the
 * close to be seen at all: a socket that doesn't read sees neither FIN nor reset.
 */
async function noRead(c: CaseContext): Promise<void> {
  const secure = await realSession(c);
  if (secure === undefined) return;
  // Not the raw socket: the TLS client would resume it to read. Paused, it stops asking, its
  // stream fills and the raw socket is paused in turn (passThrough).
  secure.pause();
  secure.write(c.rng.bytes(c.rng.int(NO_READ_MIN_BYTES, NO_READ_MAX_BYTES)));
  await c.probe.pause(c.rng.below(c.target.lifetimeBoundMs / 2));
  c.probe.dropTls();
}

/** A valid header and part of a ClientHello, then a half-close: the daemon must close its side too. */
async function halfClose(c: CaseContext): Promise<void> {
  if (!(await connectTrusted(c))) return;
  const hello = mainHello(c);
  c.probe.write(Buffer.concat([validProxyHeader(c.rng, c.client(), server(c)), hello.subarray(0, c.rng.below(hello.length))]));
  await c.probe.pause(c.rng.below(MAX_PAUSE_MS));
  await c.probe.halfClose();
}

/**
 * A valid header, then a real handshake over the same socket and one echo checked byte-exact.
 * Resolves with the TLS socket if all that went well; a valid session failing counts as an anomaly, unless the
 * fuzzer cut it short itself. The TLS client stays attached: cases drop it (probe.dropTls())
 * before they write around it.
 */
async function realSession(c: CaseContext): Promise<tls.TLSSocket | undefined> {
  if (!(await connectTrusted(c))) return undefined;
  c.probe.write(validProxyHeader(c.rng, c.client(), server(c)));
  const failed = (what: string): undefined => {
    if (!c.probe.outcome.overdue && !c.probe.outcome.selfClosed) c.anomaly(what);
    return undefined;
  };
  const secure = await handshake(c, {
    ca: c.target.ca,
    servername: c.target.servername ?? 'localhost',
    ...(c.rng.chance(0.5) ? { maxVersion: 'TLSv1.2' } : { minVersion: 'TLSv1.3' }),
    ...(c.target.clientCert ?? {}),
  });
  if (secure === undefined) return failed('a valid session failed its handshake');
  const payload = c.rng.bytes(c.rng.int(1, 2048));
  const echo = readExactly(secure, payload.length);
  secure.write(payload);
  if (!(await c.probe.expect(echo))) return failed('a valid session closed before echoing');
  if (!(await echo).equals(payload)) return failed('a valid session echoed different bytes');
  c.probe.outcome.echoed = true;
  return secure;
}

/**
 * A TLS handshake over the probe's connection (whatever was written on it so far goes first),
 * within lifetimeBoundMs. Resolves with the TLS socket, reading and dropping whatever it
 * receives from then on (so the daemon's end always gets through), or undefined if it failed.
 */
async function handshake(c: CaseContext, options: tls.ConnectionOptions): Promise<tls.TLSSocket | undefined> {
  const secure = tls.connect({ ...options, socket: passThrough(c.probe) });
  secure.on('error', (err: Error) => c.probe.noteTlsError(err));
  void c.probe.closed.then(() => secure.destroy());
  const done = once(secure, 'secureConnect');
  done.catch(() => {});
  if (!(await c.probe.expect(done))) return undefined;
  secure.resume();
  return secure;
}

/** Resolves with the first `length` bytes `socket` reads (never more are kept); rejects if it closes first. */
function readExactly(socket: tls.TLSSocket, length: number): Promise<Buffer> {
  const got = Buffer.alloc(length);
  let at = 0;
  const result = new Promise<Buffer>((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      at += chunk.copy(got, at);
      if (at < length) return;
      cleanup();
      resolve(got);
    };
    const onClose = (): void => {
      cleanup();
      reject(new Error(`closed after ${at} of ${length} bytes`));
    };
    const cleanup = (): void => {
      socket.off('data', onData);
      socket.off('close', onClose);
    };
    socket.on('data', onData);
    socket.once('close', onClose);
  });
  result.catch(() => {});
  return result;
}

/**
 * The probe's connection as a stream for tls.connect to run over, so the raw socket stays the
 * probe's (a net.Socket given to tls.connect has its handle taken over): TLS's writes go through
 * probe.write(), and raw records can still be written underneath. Until the probe drops it
 * (dropTls), a TLS failure ends the connection; after, the TLS client is gone and the connection
 * is left as it is.
 */
function passThrough(probe: Probe): Duplex {
  const raw = probe.socket;
  let attached = true;
  const duplex = new Duplex({
    write(chunk: Buffer, _encoding, callback) {
      if (attached) probe.write(chunk);
      callback();
    },
    read() {
      raw.resume();
    },
    final(callback) {
      if (attached && raw.writable) raw.end();
      callback();
    },
    destroy(err, callback) {
      if (attached) probe.destroy();
      callback(err);
    },
  });
  const rawOnData = (chunk: Buffer): void => {
    if (!duplex.push(chunk)) raw.pause();
  };
  const rawOnEnd = (): void => void duplex.push(null);
  const rawOnClose = (): void => void duplex.destroy();
  raw.on('data', rawOnData);
  raw.on('end', rawOnEnd);
  raw.on('close', rawOnClose);
  duplex.on('error', () => {});
  probe.runsTls(() => {
    attached = false;
    raw.off('data', rawOnData);
    raw.off('end', rawOnEnd);
    raw.off('close', rawOnClose);
    // The probe's own listener keeps the socket flowing, so the daemon's close is seen.
    raw.resume();
    duplex.destroy();
  });
  return duplex;
}

/** Captures the ClientHellos to mutate: real ones, from Node's TLS client, read by a plain TCP server. */
async function captureHellos(target: NetFuzzTarget): Promise<Hellos> {
  const capture = new HelloCapture();
  await capture.listen();
  try {
    const variants: tls.ConnectionOptions[] = [
      { servername: target.servername ?? 'localhost' },
      { servername: 'localhost', maxVersion: 'TLSv1.2' },
      { servername: 'localhost', minVersion: 'TLSv1.3' },
      { servername: 'a-much-longer-server-name.example.test', ALPNProtocols: ['h2', 'http/1.1'] },
      { servername: 'x.invalid', maxVersion: 'TLSv1.2', ALPNProtocols: ['http/1.1'] },
      { servername: 'localhost', ALPNProtocols: ['h2'], ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256' },
    ];
    const session = await resumableSession(target).catch(() => undefined);
    if (session !== undefined) variants.push({ servername: target.servername ?? 'localhost', session });
    const main = await Promise.all(variants.map((v) => capture.hello(v)));
    const scenario = await Promise.all(
      SCENARIOS.map(async (s) => {
        const name = `${s.name}.${target.scenarioDomain}`;
        return { name, record: await capture.hello({ servername: name }) };
      }),
    );
    return { main, scenario };
  } finally {
    capture.close();
  }
}

/** Bound on capturing one ClientHello or getting one session ticket from the daemon (ms). */
const CAPTURE_TIMEOUT_MS = 10_000;

/** A plain TCP server on 127.0.0.1 that reads the first TLS record of each connection. */
class HelloCapture {
  private readonly server = net.createServer();
  /** Keyed by the client's local port; a record that arrives first waits in `arrived`. */
  private readonly waiting = new Map<number, (record: Buffer) => void>();
  private readonly arrived = new Map<number, Buffer>();

  async listen(): Promise<void> {
    this.server.on('connection', (socket) => this.serverOnConnection(socket));
    this.server.listen({ host: '127.0.0.1', port: 0 });
    await once(this.server, 'listening');
  }

  /** The first record of a client started with `options`; the client is destroyed afterwards. */
  async hello(options: tls.ConnectionOptions): Promise<Buffer> {
    const { port } = this.server.address() as net.AddressInfo;
    const client = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...options });
    client.on('error', () => {});
    let timer: NodeJS.Timeout | undefined;
    try {
      await once(client, 'connect');
      const localPort = client.localPort!;
      const early = this.arrived.get(localPort);
      this.arrived.delete(localPort);
      const record = early !== undefined ? Promise.resolve(early) : new Promise<Buffer>((resolve) => this.waiting.set(localPort, resolve));
      const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('no ClientHello within 10 s')), CAPTURE_TIMEOUT_MS)));
      return await Promise.race([record, timeout]);
    } finally {
      clearTimeout(timer);
      client.destroy();
    }
  }

  close(): void {
    this.server.close();
  }

  private serverOnConnection(socket: net.Socket): void {
    let data = Buffer.alloc(0);
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      if (data.length < 5 || data.length < 5 + data.readUInt16BE(3)) return;
      // Read before destroy(), which forgets the peer.
      const port = socket.remotePort!;
      socket.destroy();
      const record = data.subarray(0, 5 + data.readUInt16BE(3));
      const resolve = this.waiting.get(port);
      this.waiting.delete(port);
      if (resolve !== undefined) resolve(record);
      else this.arrived.set(port, record);
    });
  }
}

/** A TLS 1.2 session from the daemon (through a valid v1 header), so one captured hello carries a ticket. */
async function resumableSession(target: NetFuzzTarget): Promise<Buffer> {
  const raw = net.connect({ host: target.host, port: target.port, localAddress: target.trustedSource });
  raw.on('error', () => {});
  raw.write(Buffer.from(`PROXY TCP4 192.0.2.99 127.0.0.1 40000 ${target.port}\r\n`, 'latin1'));
  const secure = tls.connect({ socket: raw, ca: target.ca, servername: target.servername ?? 'localhost', maxVersion: 'TLSv1.2', ...(target.clientCert ?? {}) });
  secure.on('error', () => {});
  let timer: NodeJS.Timeout | undefined;
  try {
    const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('no session')), CAPTURE_TIMEOUT_MS)));
    const [session] = (await Promise.race([once(secure, 'session'), timeout])) as [Buffer];
    return session;
  } finally {
    clearTimeout(timer);
    secure.destroy();
    raw.destroy();
  }
}
