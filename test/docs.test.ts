// The README and docs/ are the user's manual. These tests hold each page to the code it
// describes: every serve option with its env var, config key and default
// (docs/configuration.md, and the README's short table), every refusal, handshake-failure and
// close reason (docs/limits.md, docs/metrics.md), every exported metric (docs/metrics.md), every
// error code (docs/errors.md), the commands the README promises, and every relative link.

import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { envName, jsonKey, OPTIONS } from '../src/config/config';
import { CLOSE_REASONS, HANDSHAKE_FAILURE_REASONS, OTHER_REASON, REFUSE_REASONS } from '../src/ops/metric-counts';
import { Metrics } from '../src/ops/metrics';

const ROOT = path.join(__dirname, '..', '..');
const read = (rel: string): string => readFileSync(path.join(ROOT, rel), 'utf8');

const README = read('README.md');
const DOC_PAGES = readdirSync(path.join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).sort();
const doc = (page: string): string => read(path.join('docs', page));

/** Table rows that document an option, keyed by the flag: lines starting with "| `--flag". */
function optionRows(text: string): Map<string, string> {
  const rows = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^\| `--([a-z0-9-]+)[ `]/.exec(line);
    if (m) rows.set(m[1]!, line);
  }
  return rows;
}

test('docs: the pages the README promises exist, each opening with a title and a one-line summary', () => {
  for (const page of ['configuration.md', 'certificates.md', 'limits.md', 'logs.md', 'systemd.md', 'metrics.md', 'errors.md', 'benchmark.md']) {
    assert.ok(DOC_PAGES.includes(page), `docs/${page} is missing`);
  }
  for (const page of DOC_PAGES) {
    const [title, blank, summary] = doc(page).split('\n');
    assert.match(title!, /^# \S/, `docs/${page}: starts with a # title`);
    assert.equal(blank, '', `docs/${page}: a blank line after the title`);
    assert.match(summary!, /^[A-Za-z`]/, `docs/${page}: a summary sentence after the title`);
  }
});

test('docs/configuration.md: every serve option appears with its env var, config key and default', () => {
  const rows = optionRows(doc('configuration.md'));
  for (const opt of OPTIONS) {
    const row = rows.get(opt.flag);
    assert.ok(row, `no table row for --${opt.flag}`);
    assert.ok(row.includes(`\`${envName(opt.flag)}\``), `--${opt.flag}: env name`);
    assert.ok(row.includes(`\`${jsonKey(opt.flag)}\``), `--${opt.flag}: config key`);
    assert.ok(row.includes(`| ${opt.defaultText} |`), `--${opt.flag}: default ${opt.defaultText}`);
  }
  const known = new Set(OPTIONS.map((o) => o.flag));
  for (const flag of rows.keys()) assert.ok(known.has(flag), `docs/configuration.md documents --${flag}, which serve doesn't have`);
});

test('README: the options it lists exist, with their env var and default', () => {
  const rows = optionRows(README);
  assert.ok(rows.size >= 8, `the README lists ${rows.size} options`);
  for (const [flag, row] of rows) {
    const opt = OPTIONS.find((o) => o.flag === flag);
    assert.ok(opt, `the README lists --${flag}, which serve doesn't have`);
    assert.ok(row.includes(`\`${envName(flag)}\``), `--${flag}: env name`);
    assert.ok(row.includes(`| ${opt.defaultText} |`), `--${flag}: default ${opt.defaultText}`);
  }
});

test('README: the two commands, the openssl line, and a link to every docs page', () => {
  for (const text of ['npm install && npm start', 'npm install && npm test', 'openssl s_client -connect 127.0.0.1:4433 -CAfile certs/ca.pem -verify_return_error -quiet']) {
    assert.ok(README.includes(text), text);
  }
  for (const page of DOC_PAGES) assert.ok(README.includes(`](docs/${page})`), `README.md doesn't link docs/${page}`);
});

test('docs/limits.md and docs/metrics.md: every refusal, handshake-failure and close reason', () => {
  const reasons = new Set<string>([...REFUSE_REASONS, ...HANDSHAKE_FAILURE_REASONS, ...CLOSE_REASONS]);
  assert.ok(reasons.size >= 13, `found ${reasons.size} reasons`);
  const limits = doc('limits.md');
  const metrics = doc('metrics.md');
  for (const reason of reasons) {
    assert.ok(limits.includes(`| \`${reason}\` |`), `${reason}: no table row in docs/limits.md`);
    assert.ok(metrics.includes(`\`${reason}\``), `${reason}: not among the label values in docs/metrics.md`);
  }
  assert.ok(metrics.includes(`\`${OTHER_REASON}\``), `${OTHER_REASON}: not in docs/metrics.md`);
});

test('docs/metrics.md: every metric the daemon exports is listed (metric names are public API)', async () => {
  const metrics = new Metrics({ sessionsActive: () => 0, connectionsPending: () => 0, workersReady: () => 0, clientEntries: () => ({ size: 0, holding: 0 }), version: 'test' });
  metrics.setCertificateNotAfter('leaf', new Date());
  const { body } = await metrics.render();
  const names = new Set([...body.matchAll(/^# TYPE (\w+)/gm)].map((m) => m[1]!));
  const ours = [...names].filter((n) => n.startsWith('tls_echod_'));
  assert.ok(ours.length >= 10, `found ${ours.length} tls_echod_ metrics`);
  const page = doc('metrics.md');
  for (const name of names) assert.ok(page.includes(`\`${name}\``), `${name} missing from docs/metrics.md`);

  // And no page names a tls_echod_ metric that doesn't exist (a rename would leave one behind).
  for (const [file, text] of [['README.md', README], ...DOC_PAGES.map((p) => [`docs/${p}`, doc(p)])] as const) {
    for (const m of text.matchAll(/\btls_echod_\w+/g)) {
      const name = m[0].replace(/_(bucket|sum|count)$/, '');
      assert.ok(names.has(name), `${file} names ${m[0]}, which the daemon doesn't export`);
    }
  }
});

/** Every .ts file under dir, recursively. */
function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) return sourceFiles(full);
    return name.endsWith('.ts') ? [full] : [];
  });
}

test('docs/errors.md: every error code in the source has a row, and every row a code', () => {
  const codes = new Set<string>();
  for (const file of sourceFiles(path.join(ROOT, 'src'))) {
    for (const m of readFileSync(file, 'utf8').matchAll(/'(ECHOD_[A-Z_]+)'/g)) codes.add(m[1]!);
  }
  assert.ok(codes.size >= 7, `found ${codes.size} codes`);
  const page = doc('errors.md');
  for (const code of codes) assert.ok(page.includes(`| \`${code}\` |`), `${code}: no row in docs/errors.md`);
  for (const m of page.matchAll(/^\| `(ECHOD_[A-Z_]+)` \|/gm)) assert.ok(codes.has(m[1]!), `docs/errors.md documents ${m[1]}, which no source raises`);
});

// ---- relative links ----

/** The text without fenced code blocks (which may hold "# comment" lines and [x](y) by chance). */
function withoutCode(text: string): string {
  return text.replace(/^```[^\n]*\n[\s\S]*?^```$/gm, '');
}

/** GitHub's anchor for a heading: text as rendered, lower case, punctuation dropped, spaces to dashes. */
function slug(heading: string): string {
  return heading
    .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
    .replace(/`/g, '')
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '')
    .replace(/ /g, '-');
}

function anchors(text: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const m of withoutCode(text).matchAll(/^#{1,6} +(.+?) *#* *$/gm)) {
    const base = slug(m[1]!);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

test('README.md and docs/*.md: every relative link points at a file that exists, and at a heading it has', () => {
  let checked = 0;
  for (const file of ['README.md', ...DOC_PAGES.map((p) => `docs/${p}`)]) {
    const text = withoutCode(read(file)).replace(/`[^`\n]*`/g, '');
    for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = m[1]!;
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto:
      const [rel, anchor] = target.split('#') as [string, string | undefined];
      const resolved = rel === '' ? path.join(ROOT, file) : path.join(ROOT, path.dirname(file), rel);
      assert.ok(existsSync(resolved), `${file}: link ${target} points at a missing file`);
      if (anchor !== undefined && resolved.endsWith('.md')) {
        assert.ok(anchors(readFileSync(resolved, 'utf8')).has(anchor), `${file}: link ${target} points at a missing heading`);
      }
      checked++;
    }
  }
  assert.ok(checked >= 30, `only ${checked} links found`);
});
