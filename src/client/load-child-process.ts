// A share of the load run in a forked generator process: the parent's handle on it (ChildHandle),
// the messages between the two, and the child's entry point. A single Node process can't drive a
// server to saturation with handshakes, so runLoad forks this module once per process asked for.

import { fork, type ChildProcess } from 'node:child_process';
import type { ResolvedLoadOptions } from './load-options';
import { failedResult, LocalRun, type Counters, type LocalResult, type RunHandle } from './load-share';

/** A generator process that has reported its result gets this long to exit before it is killed (ms). */
const CHILD_EXIT_GRACE_MS = 5000;

type ParentMessage = { type: 'run'; options: ResolvedLoadOptions } | { type: 'go' } | { type: 'stop' };
type ChildMessage =
  | { type: 'ready' }
  | { type: 'counters'; counters: Counters }
  | { type: 'idle-ready'; established: number }
  | { type: 'result'; result: LocalResult };

/** A forked copy of this module running one share; it reports counters each second and its result at the end. */
export class ChildHandle implements RunHandle {
  readonly ready: Promise<void>;
  readonly result: Promise<LocalResult>;
  private readonly child: ChildProcess;
  private latest: Counters = { opsTotal: 0, bytesTotal: 0, errors: 0, established: 0, phase: 'connecting' };

  constructor(options: ResolvedLoadOptions, index: number, onIdleReady: (established: number) => void) {
    // execArgv is cleared so flags of the parent (--test, --inspect) don't follow the child.
    this.child = fork(__filename, [], { execArgv: [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let readyResolve!: () => void;
    this.ready = new Promise((resolve) => {
      readyResolve = resolve;
    });
    this.result = new Promise((resolve) => {
      let report: LocalResult | undefined;
      let killTimer: NodeJS.Timeout | undefined;
      const childOnExit = (why: string): void => {
        if (killTimer !== undefined) clearTimeout(killTimer);
        readyResolve();
        resolve(report ?? failedResult(`generator process ${index + 1} ${why} before reporting a result`));
      };
      this.child.on('message', (m: ChildMessage) => {
        switch (m.type) {
          case 'ready':
            readyResolve();
            break;
          case 'counters':
            this.latest = m.counters;
            break;
          case 'idle-ready':
            onIdleReady(m.established);
            break;
          case 'result':
            report = m.result;
            this.latest = { ...this.latest, phase: 'draining' };
            // It has nothing left to do; don't let a stuck child hold up the run.
            killTimer = setTimeout(() => this.child.kill('SIGKILL'), CHILD_EXIT_GRACE_MS);
            break;
        }
      });
      this.child.once('exit', (code, signal) => childOnExit(`exited (${signal ?? `code ${String(code)}`})`));
      this.child.once('error', (err) => childOnExit(`failed (${err.message})`));
    });
    this.send({ type: 'run', options });
  }

  go(): void {
    this.send({ type: 'go' });
  }

  stop(): void {
    this.send({ type: 'stop' });
  }

  counters(): Counters {
    return this.latest;
  }

  private send(m: ParentMessage): void {
    // A closed channel means the child is gone; its exit handler reports that.
    if (this.child.connected) this.child.send(m, () => undefined);
  }
}

/** The entry point of a forked generator process: runs what the parent sends, reports back, exits. */
function childMain(): void {
  // Ctrl-C reaches the whole process group; the parent decides when its children stop.
  process.on('SIGINT', () => undefined);
  let run: LocalRun | undefined;
  let reporter: NodeJS.Timeout | undefined;
  const send = (m: ChildMessage, then?: () => void): void => {
    if (process.connected) process.send!(m, undefined, {}, () => then?.());
    else then?.();
  };
  process.on('message', (m: ParentMessage) => {
    if (m.type === 'run' && run === undefined) {
      const r = new LocalRun(m.options, { onIdleReady: (established) => send({ type: 'idle-ready', established }) });
      run = r;
      reporter = setInterval(() => send({ type: 'counters', counters: r.counters() }), 1000);
      void r.prepare().then(() => send({ type: 'ready' }));
      void r.result.then((result) => {
        clearInterval(reporter);
        send({ type: 'result', result }, () => {
          if (process.connected) process.disconnect();
        });
      });
    } else if (m.type === 'go') {
      run?.go();
    } else if (m.type === 'stop') {
      run?.stop();
    }
  });
  // The parent went away: stop, and let the process exit once everything is closed.
  process.once('disconnect', () => {
    run?.stop();
    if (run === undefined) clearInterval(reporter);
  });
}

if (require.main === module && typeof process.send === 'function') childMain();
