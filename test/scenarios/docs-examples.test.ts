// docs/testing-clients.md promises examples a client test suite can use as they are. This runs
// each one exactly as the page prints it (openssl in bash, pytest, node:test, Go), with
// TLS_ECHOD pointing at this checkout's CLI: each starts its own daemon on free ports, reads
// the listening line, and asserts that `expired` is refused and `valid` echoes.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { CLI, cleanEnv, tempDir } from '../helpers/daemon';

const PAGE = readFileSync(path.join(__dirname, '..', '..', '..', 'docs', 'testing-clients.md'), 'utf8');

/** The fenced block of `language` under the heading `### <heading>`. */
function example(heading: string, language: string): string {
  const section = PAGE.split(/^### /m).find((s) => s.startsWith(`${heading}\n`));
  assert.ok(section !== undefined, `docs/testing-clients.md has a "### ${heading}" section`);
  const block = new RegExp('^```' + language + '\\n([\\s\\S]*?)^```$', 'm').exec(section);
  assert.ok(block !== null, `"### ${heading}" has a \`\`\`${language} block`);
  return block[1]!;
}

/** Runs a command to its end; resolves with its exit code and output. */
async function run(command: string, args: readonly string[], cwd: string, env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; output: string }> {
  const childEnv: NodeJS.ProcessEnv = { ...cleanEnv(), TLS_ECHOD: CLI, ...env };
  // Set by the runner of this file: a `node --test` that sees it runs no files of its own.
  delete childEnv.NODE_TEST_CONTEXT;
  const child = spawn(command, args, { cwd, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr.on('data', (c: Buffer) => (output += c.toString()));
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, output };
}

test('docs/testing-clients.md: the openssl example passes as printed', async (t) => {
  const dir = tempDir(t);
  writeFileSync(path.join(dir, 'scenarios.sh'), example('openssl (bash)', 'bash'));
  const r = await run('bash', ['scenarios.sh'], dir);
  assert.equal(r.code, 0, r.output);
  assert.match(r.output, /ok expired: certificate has expired\nok valid: echoed/);
});

/** The first python3 that has pytest: the one on PATH, else Debian's (.ci/run installs python3-pytest there). */
function pythonWithPytest(): string {
  for (const python of ['python3', '/usr/bin/python3']) {
    if (spawnSync(python, ['-c', 'import pytest']).status === 0) return python;
  }
  assert.fail('no python3 with pytest: install python3-pytest (.ci/run does)');
}

test('docs/testing-clients.md: the pytest example passes as printed', async (t) => {
  const dir = tempDir(t);
  writeFileSync(path.join(dir, 'test_tls_echod.py'), example('pytest', 'python'));
  const r = await run(pythonWithPytest(), ['-m', 'pytest', '-q', '-p', 'no:cacheprovider', 'test_tls_echod.py'], dir);
  assert.equal(r.code, 0, r.output);
  assert.match(r.output, /2 passed/);
});

test('docs/testing-clients.md: the node:test example passes as printed', async (t) => {
  const dir = tempDir(t);
  writeFileSync(path.join(dir, 'tls-echod.test.mjs'), example('node:test', 'js'));
  // TAP whatever the Node version: Node 24's default reporter is spec even into a pipe.
  const r = await run(process.execPath, ['--test', '--test-reporter=tap', 'tls-echod.test.mjs'], dir);
  assert.equal(r.code, 0, r.output);
  assert.match(r.output, /# pass 2\n# fail 0/);
});

test('docs/testing-clients.md: the Go example passes as printed', async (t) => {
  const dir = tempDir(t);
  writeFileSync(path.join(dir, 'echod_test.go'), example('Go', 'go'));
  writeFileSync(path.join(dir, 'go.mod'), 'module echod\n\ngo 1.19\n');
  // The standard library only: nothing to fetch. HOME stays the real one so Go's build cache is reused.
  const r = await run('go', ['test', '-count=1', './...'], dir, { HOME: process.env.HOME, GOFLAGS: '-mod=mod', GOTOOLCHAIN: 'local' });
  assert.equal(r.code, 0, r.output);
  assert.match(r.output, /^ok\s+echod/m);
});
