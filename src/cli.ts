#!/usr/bin/env node
// The tls-echod command line: parses, then calls. Each subcommand lives in src/commands/.
//
// No node flags, here or in any launcher: the daemon runs the same however it is started.
// Its speed depends on keeping what a serving process retains small (V8 starts marking the old
// generation on its own once that passes 8 MB; see docs/architecture.md, "What serving
// loads"), so a subcommand's implementation is loaded when it runs, not here.

import { Command, CommanderError } from 'commander';
import { EchodError } from './errors';
import { VERSION } from './version';
import * as serve from './commands/serve';
import * as cert from './commands/cert';
import * as check from './commands/check';
import * as bench from './commands/bench';
import * as scenarios from './commands/scenarios';

/** Exit code for bad usage: an unknown flag, a bad value, a missing argument. */
const EXIT_USAGE = 2;

export function buildProgram(): Command {
  const program = new Command('tls-echod')
    .description('A TLS-first echo daemon: every byte a client sends inside its TLS session comes back, unchanged.')
    .version(VERSION)
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  // Subcommands created after exitOverride() inherit it, so their usage errors come back here too.
  for (const command of [serve, cert, check, bench, scenarios]) command.register(program);
  return program;
}

export async function main(argv: readonly string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv as string[]);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version are not errors; commander has already printed the message.
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return 0;
      return EXIT_USAGE;
    }
    if (err instanceof EchodError) {
      process.stderr.write(`tls-echod: ${err.message}\n`);
      return err.exitCode;
    }
    process.stderr.write(`tls-echod: unexpected error: ${(err as Error).stack ?? String(err)}\n`);
    return 1;
  }
}

if (require.main === module) {
  // Exit explicitly: a finished command leaves nothing worth waiting for (stdout is synchronous
  // for files, pipes and terminals on Linux, so no output is lost).
  void main(process.argv).then((code) => process.exit(code));
}
