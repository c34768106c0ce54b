// `tls-echod serve`: runs the daemon until SIGINT/SIGTERM; SIGHUP reloads.

import type { Command } from 'commander';
import path from 'node:path';
import { formatHostPort, loadConfig, reachableHost, type Config } from '../config/config';
import { createLogger, type Logger } from '../ops/logger';
import { Supervisor } from '../daemon/supervisor';
import { takeListenFds } from '../ops/systemd';
import { VERSION } from '../version';
import { addConfigOptions, configSources } from './options';

export function register(program: Command): void {
  addConfigOptions(program.command('serve').description('run the echo daemon')).action(runServe);
}

async function runServe(opts: Record<string, unknown>): Promise<void> {
  // Taken (and removed from the env) before anything can fork, so workers never see them.
  const activation = takeListenFds(process.env);
  const sources = configSources(opts);
  const config = loadConfig(sources);
  const logger = createLogger({ level: config.logLevel, format: config.logFormat });
  const supervisor = new Supervisor(config, logger, {
    reloadConfig: () => loadConfig(sources),
    listenFds: activation?.fds,
    version: VERSION,
  });

  let signals = 0;
  const onStop = (signal: NodeJS.Signals): void => {
    if (++signals > 1) {
      logger.warn('second signal: exiting without waiting for sessions', { signal });
      process.exit(128 + (signal === 'SIGINT' ? 2 : 15));
    }
    void supervisor.shutdown(signal);
  };
  const onHup = (): void => void supervisor.reload();
  process.on('SIGINT', onStop);
  process.on('SIGTERM', onStop);
  process.on('SIGHUP', onHup);

  try {
    try {
      await supervisor.start();
    } catch (err) {
      await supervisor.shutdown('startup failed');
      throw err;
    }
    announce(config, supervisor, logger, activation !== undefined);
    await supervisor.done;
  } finally {
    process.off('SIGINT', onStop);
    process.off('SIGTERM', onStop);
    process.off('SIGHUP', onHup);
  }
}

/** Tells a person how to reach the daemon: address, fingerprints, and the command to try. */
function announce(config: Config, supervisor: Supervisor, logger: Logger, socketActivated: boolean): void {
  const material = supervisor.tls;
  const address = supervisor.addresses[0];
  const target = address ? formatHostPort(reachableHost(address.host), address.port) : '';
  const scenarios = supervisor.scenarioAddress;
  const caFile = material.source === 'generated' ? path.join(config.certDir, 'ca.pem') : config.chainFile ?? config.certFile;
  logger.info('listening', {
    addresses: supervisor.addresses.map((a) => formatHostPort(a.host, a.port)),
    socketActivated,
    workers: config.workers,
    admin: supervisor.adminAddress ? formatHostPort(supervisor.adminAddress.host, supervisor.adminAddress.port) : undefined,
    certificate: material.source,
    leafFingerprint256: material.leaf.fingerprint256,
    caFingerprint256: material.caInfo?.fingerprint256,
    notAfter: material.leaf.notAfter.toISOString(),
    clientAuth: config.clientAuth,
    scenarios: scenarios === undefined ? undefined : formatHostPort(scenarios.host, scenarios.port),
    scenarioDomain: scenarios === undefined ? undefined : config.scenarioDomain,
    try: `openssl s_client -connect ${target} -CAfile ${caFile} -verify_return_error -quiet${clientCertArgs(config)}`,
  });
}

/** The s_client arguments that present a client certificate, when the daemon asks for one. */
function clientCertArgs(config: Config): string {
  if (config.clientAuth === 'off') return '';
  // `cert client <name>` writes here by default; with another client CA the operator knows where theirs are.
  const prefix = config.clientCaFile === undefined ? path.join(config.certDir, 'clients', '<name>') : '<client>';
  return ` -cert ${prefix}.pem -key ${prefix}-key.pem`;
}
