// The command line shared by the benchmark's plain servers (baseline-server, floor-server):
//
//   <name> --cert <pem> --key <pem> [--listen host:port] [--client-ca <pem>]
//
// --client-ca: require a client certificate that chains to it (mutual TLS), as the daemon's
// --client-auth require does.
//
// A bad or missing argument prints one line naming it, then the usage, and exits 2.

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { parseHostPort } from '../src/config/config';

export interface ServerArgs {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly listen: { readonly host: string; readonly port: number };
  /** PEM CA certificates a client certificate must chain to; undefined = no client certificate asked for. */
  readonly clientCa: Buffer | undefined;
}

export function parseServerArgs(name: string): ServerArgs {
  function usage(problem: string): never {
    process.stderr.write(`${name}: ${problem}\nusage: ${name} --cert <pem> --key <pem> [--listen host:port] [--client-ca <pem>]\n`);
    process.exit(2);
  }
  let values: { cert?: string; key?: string; listen?: string; 'client-ca'?: string };
  try {
    ({ values } = parseArgs({ options: { cert: { type: 'string' }, key: { type: 'string' }, listen: { type: 'string' }, 'client-ca': { type: 'string' } } }));
  } catch (err) {
    usage((err as Error).message);
  }
  if (values.cert === undefined || values.key === undefined) usage('--cert and --key are required');
  let listen: ServerArgs['listen'];
  try {
    listen = parseHostPort(values.listen ?? '127.0.0.1:0');
  } catch (err) {
    usage(`--listen: ${(err as Error).message}`);
  }
  try {
    const clientCa = values['client-ca'] === undefined ? undefined : readFileSync(values['client-ca']);
    return { cert: readFileSync(values.cert), key: readFileSync(values.key), listen, clientCa };
  } catch (err) {
    usage((err as Error).message);
  }
}
