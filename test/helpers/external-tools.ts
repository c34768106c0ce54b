// Test helpers for external tools (systemd-socket-activate, systemd-analyze, python3, ...): find
// one on PATH, run it as a child the test owns (killed when the test ends), wait for its output.

import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import path from 'node:path';
import type { TestContext } from 'node:test';

/** The executable `name` on PATH, or undefined when there is none. */
export function which(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir === '') continue;
    const file = path.join(dir, name);
    try {
      accessSync(file, constants.X_OK);
      if (statSync(file).isFile()) return file;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/** Spawns a child that is SIGKILLed when the test ends, unless it has exited by then. */
export function spawnOwned(t: TestContext, command: string, args: readonly string[], env: NodeJS.ProcessEnv): ChildProcess {
  const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return child;
}

/** Resolves once `predicate(text so far)` holds for what `stream` printed; rejects after `ms`. */
export function waitForOutput(stream: NodeJS.ReadableStream, predicate: (text: string) => boolean, ms: number, what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const onData = (chunk: Buffer): void => {
      text += chunk.toString();
      if (predicate(text)) finish();
    };
    const finish = (err?: Error): void => {
      clearTimeout(timer);
      stream.off('data', onData);
      if (err) reject(err);
      else resolve(text);
    };
    const timer = setTimeout(() => finish(new Error(`no ${what} within ${ms} ms; got ${JSON.stringify(text)}`)), ms);
    stream.on('data', onData);
  });
}
