// Adds the option table of src/config/config.ts to a commander command, so flags, env vars and JSON
// keys can't drift apart. Values stay raw strings here: loadConfig validates them all at once.

import type { Command } from 'commander';
import { envName, OPTIONS, type ConfigSources } from '../config/config';

/** Commander's argument parser for a repeatable flag: every value, in order. */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** Adds `--config` and the named options (all when `only` is omitted). */
export function addConfigOptions(command: Command, only?: readonly string[]): Command {
  command.option('--config <file>', `JSON file of options (env ${envName('config')})`);
  for (const opt of OPTIONS) {
    if (only && !only.includes(opt.flag)) continue;
    const help = `${opt.description} [default: ${opt.defaultText}; env ${envName(opt.flag)}]`;
    if (opt.arg === '') {
      command.option(`--${opt.flag}`, help);
    } else if (opt.repeatable) {
      command.option(`--${opt.flag} ${opt.arg}`, help, collect);
    } else {
      command.option(`--${opt.flag} ${opt.arg}`, help);
    }
  }
  return command;
}

/** The sources loadConfig reads, from a command's parsed options and the process env. */
export function configSources(opts: Record<string, unknown>): ConfigSources {
  const { config, ...flags } = opts;
  return { flags: flags as ConfigSources['flags'], env: process.env, configFile: config as string | undefined };
}
