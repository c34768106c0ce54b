// Entry point of a worker process, forked by the supervisor. It runs a TlsEchoServer on the
// sockets the supervisor passes it and reports every session's open and close back.
// Signals are the supervisor's business: a worker ignores SIGINT/SIGTERM (a Ctrl-C reaches
// the whole process group) and ends when the supervisor tells it to or its channel closes.

import type { Socket } from 'node:net';
import { createLogger, type Logger } from '../ops/logger';
import { identityFromWire, ticketKeysFromWire, type FromWorker, type ToWorker } from './ipc';
import { TlsEchoServer } from './tls-server';

function send(message: FromWorker): void {
  // The channel may be gone if the supervisor died; nothing useful is left to do then.
  if (process.connected) process.send?.(message);
}

let server: TlsEchoServer | undefined;
let logger: Logger | undefined;
let stopping = false;

function onMessage(message: ToWorker, handle: unknown): void {
  switch (message.t) {
    case 'init':
      logger = createLogger({ level: message.logLevel, format: message.logFormat, base: { worker: message.index } });
      server = new TlsEchoServer(message.settings, identityFromWire(message.identity), {
        onOpen: (id, handshakeMs) => send({ t: 'open', id, handshakeMs }),
        onClosed: (report) => send({ t: 'closed', report }),
      }, logger);
      send({ t: 'ready' });
      return;
    case 'conn': {
      const socket = handle as Socket | undefined;
      if (server === undefined || socket === undefined) {
        socket?.destroy();
        send({ t: 'closed', report: { id: message.id, reason: 'error', handshakeMs: undefined, durationMs: 0, bytesIn: 0, bytesOut: 0 } });
        return;
      }
      if (message.proxyAddress === undefined) {
        server.accept(socket, { id: message.id, ip: message.ip, port: message.port });
        return;
      }
      // Read by the supervisor with the PROXY header: they come before anything still in the kernel.
      if (message.rest !== undefined) socket.unshift(Buffer.from(message.rest, 'base64'));
      server.accept(socket, { id: message.id, ip: message.ip, port: message.port, proxyAddress: message.proxyAddress });
      return;
    }
    case 'identity':
      server?.setIdentity(identityFromWire(message.identity));
      return;
    case 'tickets':
      server?.setTicketKeys(ticketKeysFromWire(message.ticketKeys));
      return;
    case 'settings':
      server?.setSettings(message.settings);
      if (logger) logger.level = message.logLevel;
      return;
    case 'close-all':
      server?.closeAll(message.reason);
      return;
    case 'stop':
      stopping = true;
      return;
  }
}

process.on('message', onMessage);
process.on('SIGINT', () => {});
process.on('SIGTERM', () => {});
// The channel closed: on purpose (stop) or because the supervisor died. Either way nobody can
// account for our sessions any more, so end them.
process.on('disconnect', () => {
  server?.closeAll('shutdown');
  server?.stop();
  if (!stopping) logger?.warn('supervisor channel closed unexpectedly, worker exiting');
  setImmediate(() => process.exit(0));
});
