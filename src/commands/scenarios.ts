// `tls-echod scenarios [--json] [--scenario-domain <domain>]`: the test-peer catalogue (issue
// 15), the same list GET /scenarios serves and docs/testing-clients.md tables. Needs no
// certificates and no daemon, so it loads neither.

import type { Command } from 'commander';
import { loadConfig } from '../config/config';
import { scenarioCatalogue, type ScenarioCategory, type ScenarioEntry } from '../scenarios/catalogue';
import { addConfigOptions, configSources } from './options';

export function register(program: Command): void {
  const command = program
    .command('scenarios')
    .description('list the test-peer scenarios of `serve --scenarios`: name, server name (SNI), what the server does, what a correct client sees');
  // serve's own option (flag, env var, config key), so the names printed are the ones a daemon
  // started from the same flags, env and config file serves.
  addConfigOptions(command, ['scenario-domain'])
    .option('--json', 'print a JSON array of {name, serverName, category, serverDoes, clientSees}')
    .action(({ json, ...rest }: Record<string, unknown>) => {
      const { scenarioDomain } = loadConfig(configSources(rest));
      const entries = scenarioCatalogue(scenarioDomain);
      const text = json === true ? JSON.stringify(entries, null, 2) : formatScenarios(entries, process.stdout.isTTY ? process.stdout.columns : undefined);
      process.stdout.write(text + '\n');
    });
}

const CATEGORY_TITLES: Record<ScenarioCategory, string> = {
  certificate: 'Certificates (otherwise a correct server: echoes when the client accepts)',
  protocol: 'Protocol versions and key exchange',
  'client-certificate': 'Client certificates (mutual TLS)',
  behaviour: 'Behaviour after a correct handshake',
};

const HEADINGS = ['scenario', 'server name', 'server does', 'a correct client sees'] as const;

/**
 * The catalogue as a table grouped by category, one row per scenario. With `width` (a
 * terminal's columns) the two text columns wrap to fit; without, each row is one line, for grep.
 */
export function formatScenarios(entries: readonly ScenarioEntry[], width?: number): string {
  const nameWidth = Math.max(HEADINGS[0].length, ...entries.map((e) => e.name.length));
  const serverNameWidth = Math.max(HEADINGS[1].length, ...entries.map((e) => e.serverName.length));
  const gap = '  ';
  const indent = '  ';
  const fixed = indent.length + nameWidth + serverNameWidth + 3 * gap.length;
  // Below about 30 columns each, wrapping helps less than it hurts: let the terminal wrap instead.
  const room = width === undefined ? undefined : width - 1 - fixed;
  const wrapDoes = room === undefined || room < 60 ? undefined : Math.floor(room * 0.4);
  const wrapSees = wrapDoes === undefined ? undefined : room! - wrapDoes;
  const doesWidth = wrapDoes ?? Math.max(HEADINGS[2].length, ...entries.map((e) => e.serverDoes.length));

  const line = (name: string, serverName: string, does: string, sees: string): string =>
    (indent + name.padEnd(nameWidth) + gap + serverName.padEnd(serverNameWidth) + gap + does.padEnd(doesWidth) + gap + sees).trimEnd();
  const out = [
    'Connect to the --scenarios listener and send the server name as SNI; "a correct client" trusts',
    "<cert-dir>/ca.pem and verifies the name. Unknown names get a fatal unrecognized_name alert.",
  ];
  let category: ScenarioCategory | undefined;
  for (const e of entries) {
    if (e.category !== category) {
      category = e.category;
      out.push('', CATEGORY_TITLES[category], line(...HEADINGS));
    }
    const doesLines = wrap(e.serverDoes, wrapDoes);
    const seesLines = wrap(e.clientSees, wrapSees);
    for (let i = 0; i < Math.max(doesLines.length, seesLines.length); i++) {
      out.push(line(i === 0 ? e.name : '', i === 0 ? e.serverName : '', doesLines[i] ?? '', seesLines[i] ?? ''));
    }
  }
  return out.join('\n');
}

/** Splits `text` at spaces into lines of at most `width` characters (a longer word keeps its own line). */
function wrap(text: string, width: number | undefined): string[] {
  if (width === undefined) return [text];
  const lines: string[] = [];
  let current = '';
  for (const word of text.split(' ')) {
    if (current !== '' && current.length + 1 + word.length > width) {
      lines.push(current);
      current = word;
    } else {
      current = current === '' ? word : `${current} ${word}`;
    }
  }
  lines.push(current);
  return lines;
}
