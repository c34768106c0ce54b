// Chaos every CHAOS_PERIOD_S, in turn: kill -9 a worker (the restart counter must rise and the
// worker come back; always one other than the survivor, which lives all run to show leaks), SIGHUP with a rotated certificate (the ok-reload counter must rise and a
// new connection see the new leaf), SIGHUP with a broken certificate file (the failed-reload
// counter must rise and the old leaf keep serving; then the good files go back). Each event
// is judged within CHAOS_CHECK_TIMEOUT_MS and recorded with its time, for the checks and the plot.

import { SERVER_NAME, type DaemonUnderTest } from './daemon';
import { valueOf } from './metrics-text';
import type { Prng } from './prng';
import { connectProxiedTls } from './proxy-client';
import { CHAOS_PERIOD_S } from './settings';
import { runSession } from './tls-session';

export type ChaosKind = 'kill-worker' | 'rotate-cert' | 'broken-cert';
const ORDER: readonly ChaosKind[] = ['kill-worker', 'rotate-cert', 'broken-cert'];
/** How long an event has to show its effect: a worker restart has a backoff, a reload signs nothing. */
const CHAOS_CHECK_TIMEOUT_MS = 10_000;

export interface ChaosEvent {
  readonly kind: ChaosKind;
  /** Seconds since the run started. */
  readonly atS: number;
  readonly ok: boolean;
  readonly detail: string;
}

export class Chaos {
  readonly events: ChaosEvent[] = [];
  private running = true;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;

  constructor(
    private readonly daemon: DaemonUnderTest,
    private readonly prng: Prng,
    private readonly startedAt: number,
    /** The worker never killed (see Sample.survivorRss). */
    private readonly survivor: number,
  ) {}

  start(): void {
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.wake?.();
    await this.loop;
  }

  private async run(): Promise<void> {
    for (let i = 0; ; i++) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, CHAOS_PERIOD_S * 1000);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      if (!this.running) return;
      const kind = ORDER[i % ORDER.length]!;
      const atS = (performance.now() - this.startedAt) / 1000;
      const { ok, detail } = await this.apply(kind).catch((err: Error) => ({ ok: false, detail: err.message }));
      this.events.push({ kind, atS, ok, detail });
    }
  }

  private apply(kind: ChaosKind): Promise<{ ok: boolean; detail: string }> {
    switch (kind) {
      case 'kill-worker':
        return this.killWorker();
      case 'rotate-cert':
        return this.rotate();
      case 'broken-cert':
        return this.broken();
    }
  }

  private async killWorker(): Promise<{ ok: boolean; detail: string }> {
    const before = await this.daemon.scrape();
    const pid = this.daemon.killWorker((pids) => {
      const others = pids.filter((p) => p !== this.survivor);
      return others.length === 0 ? undefined : this.prng.pick(others);
    });
    if (pid === undefined) return { ok: false, detail: 'no worker process but the survivor found' };
    const restarts = valueOf(before, 'tls_echod_worker_restarts_total');
    const back = await this.until(async () => {
      const m = await this.daemon.scrape();
      return valueOf(m, 'tls_echod_worker_restarts_total') > restarts && valueOf(m, 'tls_echod_workers_ready') === 2 && !this.daemon.workerPids().includes(pid);
    });
    return { ok: back, detail: back ? `killed ${pid}; restarted, 2 workers ready` : `killed ${pid}; no restart within ${CHAOS_CHECK_TIMEOUT_MS} ms` };
  }

  private async rotate(): Promise<{ ok: boolean; detail: string }> {
    const before = valueOf(await this.daemon.scrape(), 'tls_echod_reloads_total{result="ok"}');
    const fingerprint = await this.daemon.rotateCertificate();
    const reloaded = await this.until(async () => valueOf(await this.daemon.scrape(), 'tls_echod_reloads_total{result="ok"}') > before);
    if (!reloaded) return { ok: false, detail: `no ok reload within ${CHAOS_CHECK_TIMEOUT_MS} ms` };
    const seen = await this.servedFingerprint();
    return { ok: seen === fingerprint, detail: seen === fingerprint ? 'reloaded; new connections see the new leaf' : `reloaded, but a new connection saw ${seen ?? 'no certificate'}` };
  }

  private async broken(): Promise<{ ok: boolean; detail: string }> {
    const serving = await this.servedFingerprint();
    const before = valueOf(await this.daemon.scrape(), 'tls_echod_reloads_total{result="failed"}');
    this.daemon.breakCertificate();
    try {
      const failed = await this.until(async () => valueOf(await this.daemon.scrape(), 'tls_echod_reloads_total{result="failed"}') > before);
      if (!failed) return { ok: false, detail: `no failed reload within ${CHAOS_CHECK_TIMEOUT_MS} ms` };
      const seen = await this.servedFingerprint();
      return { ok: seen === serving, detail: seen === serving ? 'reload failed; the old leaf keeps serving' : `reload failed, but a new connection saw ${seen ?? 'no certificate'}` };
    } finally {
      this.daemon.restoreCertificate();
    }
  }

  /** The leaf a new connection sees now (up to 3 tries: a try can meet a worker mid-restart). */
  private async servedFingerprint(): Promise<string | undefined> {
    for (let i = 0; i < 3; i++) {
      const r = await runSession(() => connectProxiedTls({ port: this.daemon.ports.main, client: '127.100.0.2' }, { ca: this.daemon.files.ca, servername: SERVER_NAME }), { payload: Buffer.from('x'), timeoutMs: 5000 });
      if (r.fingerprint256 !== undefined) return r.fingerprint256;
    }
    return undefined;
  }

  private async until(test: () => Promise<boolean>): Promise<boolean> {
    const deadline = performance.now() + CHAOS_CHECK_TIMEOUT_MS;
    while (performance.now() < deadline) {
      if (await test().catch(() => false)) return true;
      await new Promise((r) => setTimeout(r, 200));
    }
    return false;
  }
}
