// What a serving daemon keeps in its heap. V8 starts marking the old generation by itself once
// the objects there pass 8 MB; a daemon sitting at that line ran a full mark-compact every few
// hundred milliseconds under bulk echo, freeing nothing (docs/architecture.md, "What serving
// loads"). So serving must not load what it never uses: the certificate builder (issued in a
// child), prom-client (loaded at the first scrape), ioredis (only with --redis), the check and
// bench clients.
//
// Measured, not timed: a probe preloaded into each process runs a full GC on SIGUSR2 and
// reports the old generation's size and the modules loaded. The budget is relative to a bare
// tls.createServer echo in the same Node, so it holds whatever a Node release adds of its own.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { connect, echoAll, spawnDaemon, tempDir } from '../helpers/daemon';

/** How much more old generation the daemon may retain than the bare echo server (MiB; measured 2.5 on Node 20). */
const BUDGET_MIB = 3;

const BASELINE = path.join(__dirname, '..', '..', 'scripts', 'baseline-server.js');

const PROBE = `
const v8 = require('node:v8');
v8.setFlagsFromString('--expose-gc');
const gc = require('node:vm').runInNewContext('gc');
process.on('SIGUSR2', () => {
  gc();
  gc();
  const old = ['old_space', 'code_space', 'large_object_space', 'code_large_object_space', 'map_space'];
  const bytes = v8.getHeapSpaceStatistics().filter((s) => old.includes(s.space_name)).reduce((sum, s) => sum + s.space_used_size, 0);
  process.stderr.write('heap-probe ' + JSON.stringify({ oldGenerationBytes: bytes, modules: Object.keys(require.cache) }) + '\\n');
});
`;

interface ProbeReport {
  readonly oldGenerationBytes: number;
  readonly modules: readonly string[];
}

/** Sends SIGUSR2 and resolves with the probe's report from the process's stderr. */
async function probe(child: ChildProcess): Promise<ProbeReport> {
  let text = '';
  const report = new Promise<ProbeReport>((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      text += chunk.toString();
      const line = /^heap-probe (.*)$/m.exec(text);
      if (line === null) return;
      child.stderr!.off('data', onData);
      resolve(JSON.parse(line[1]!) as ProbeReport);
    };
    child.stderr!.on('data', onData);
    child.once('exit', () => reject(new Error(`exited before reporting; stderr: ${text}`)));
  });
  child.kill('SIGUSR2');
  return report;
}

async function echoOnce(t: TestContext, port: number, ca: Buffer): Promise<void> {
  const socket = await connect(t, port, ca);
  const data = Buffer.alloc(64 * 1024, 7);
  assert.deepEqual(await echoAll(socket, data), data);
}

async function bareEcho(t: TestContext, probeFile: string, certDir: string): Promise<ProbeReport> {
  const child = spawn(process.execPath, ['--require', probeFile, BASELINE, '--cert', path.join(certDir, 'server.pem'), '--key', path.join(certDir, 'server-key.pem')]);
  t.after(() => child.kill('SIGKILL'));
  const [first] = (await once(child.stdout, 'data')) as [Buffer];
  const port = Number(/listening (\d+)/.exec(first.toString())?.[1]);
  await echoOnce(t, port, readFileSync(path.join(certDir, 'ca.pem')));
  return probe(child);
}

test('retained-heap: a serving daemon keeps at most 3 MiB more old generation than a bare tls echo, and loads nothing serving never uses', async (t) => {
  const dir = tempDir(t);
  const probeFile = path.join(dir, 'heap-probe.js');
  writeFileSync(probeFile, PROBE);
  const certDir = path.join(dir, 'certs');
  // A first start: the daemon issues its CA and leaf (in a child process), then serves.
  const daemon = await spawnDaemon(t, ['--workers', '0', '--cert-dir', certDir, '--admin', '127.0.0.1:0'], { NODE_OPTIONS: `--require ${probeFile}` });
  await echoOnce(t, daemon.port, readFileSync(path.join(certDir, 'ca.pem')));
  const served = await probe(daemon.child);
  const bare = await bareEcho(t, probeFile, certDir);

  // The client's option tables (*-options.js) are the command line's own: it describes every
  // command's flags. The clients themselves are loaded when they run.
  const unneeded = served.modules.filter((m) =>
    /[\\/]node_modules[\\/](node-forge|prom-client|ioredis)[\\/]|[\\/]dist[\\/]src[\\/](client[\\/](?![\w-]+-options\.js$)|certs[\\/](issue|x509)\.js)/.test(m),
  );
  assert.deepEqual(unneeded, [], 'modules a serving daemon never uses');
  const extraMiB = (served.oldGenerationBytes - bare.oldGenerationBytes) / 2 ** 20;
  const mib = (bytes: number): string => (bytes / 2 ** 20).toFixed(2);
  assert.ok(
    extraMiB <= BUDGET_MIB,
    `the daemon retains ${mib(served.oldGenerationBytes)} MiB of old generation, the bare echo ${mib(bare.oldGenerationBytes)} MiB: ${extraMiB.toFixed(2)} MiB more, over the ${BUDGET_MIB} MiB budget`,
  );
});
