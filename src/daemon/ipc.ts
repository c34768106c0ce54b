// Messages between the supervisor and its worker processes (Node's IPC channel, JSON).
// Sockets travel as the handle of a `conn` message.

import type { LogFormat, LogLevel } from '../config/config';
import type { ClientAuthPolicy } from '../mtls/client-auth';
import type { CloseReason } from './session';
import type { ConnectionClosed, ServerIdentity, TlsSettings } from './tls-server';

/** ServerIdentity with the ticket keys as base64, since IPC messages are JSON. */
export interface WireIdentity {
  readonly key: string;
  readonly cert: string;
  readonly ticketKeys: string;
  readonly clientAuth: ClientAuthPolicy;
}

export function identityToWire(identity: ServerIdentity): WireIdentity {
  return { key: identity.key, cert: identity.cert, ticketKeys: ticketKeysToWire(identity.ticketKeys), clientAuth: identity.clientAuth };
}

export function identityFromWire(identity: WireIdentity): ServerIdentity {
  return { key: identity.key, cert: identity.cert, ticketKeys: ticketKeysFromWire(identity.ticketKeys), clientAuth: identity.clientAuth };
}

export function ticketKeysToWire(keys: Buffer): string {
  return keys.toString('base64');
}

export function ticketKeysFromWire(keys: string): Buffer {
  return Buffer.from(keys, 'base64');
}

export type ToWorker =
  | { t: 'init'; index: number; settings: TlsSettings; identity: WireIdentity; logLevel: LogLevel; logFormat: LogFormat }
  /**
   * A connection, its socket as the handle. With --proxy-protocol, `proxyAddress` and `rest`: the
   * bytes the supervisor read past the PROXY header (base64), which the socket must yield first.
   */
  | { t: 'conn'; id: number; ip: string; port: number; proxyAddress?: string; rest?: string }
  | { t: 'identity'; identity: WireIdentity }
  | { t: 'tickets'; ticketKeys: string }
  | { t: 'settings'; settings: TlsSettings; logLevel: LogLevel }
  | { t: 'close-all'; reason: CloseReason }
  /** The supervisor is stopping this worker on purpose; the channel closes next. */
  | { t: 'stop' };

export type FromWorker =
  | { t: 'ready' }
  | { t: 'open'; id: number; handshakeMs: number }
  | { t: 'closed'; report: ConnectionClosed };
