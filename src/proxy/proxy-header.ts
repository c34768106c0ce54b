// A strict, bounded reader of HAProxy's PROXY protocol header (v1 text and v2 binary), which a
// load balancer sends at the start of a connection to say whose it is
// (https://www.haproxy.org/download/2.8/doc/proxy-protocol.txt).
//
// The bytes come from the network before any TLS work. The parser reads only what it is given,
// checks every length against the bytes there are, never throws, and gives up at the spec's
// bounds: 107 bytes for v1, 2 KiB for v2 with its TLVs (a bound of ours: the spec allows 64 KiB,
// but what balancers send, TLVs included, is well under it). It is pure: the caller passes
// everything read so far on each call, and puts back whatever follows the header.

import { isIP } from 'node:net';
import { addressBytes } from '../config/cidr';

export interface ProxyClient {
  /** The client's address, as Node writes it: dotted IPv4, or compressed lower-case IPv6. */
  readonly address: string;
  readonly port: number;
}

export type ProxyHeaderResult =
  /** No verdict yet: the bytes so far are a valid start of a header. */
  | { readonly kind: 'need-more' }
  /**
   * A complete header of `headerLength` bytes. `client` is the address it carries, absent when
   * the connection is the proxy's own (v2 LOCAL) or the proxy gave no usable address (v1
   * UNKNOWN, v2 AF_UNSPEC or AF_UNIX): then the connection's own peer is the client.
   */
  | {
      readonly kind: 'header';
      readonly version: 1 | 2;
      readonly command: 'proxy' | 'local';
      readonly client?: ProxyClient;
      readonly headerLength: number;
    }
  | { readonly kind: 'invalid'; readonly why: string };

/** v1: "PROXY UNKNOWN " + two full IPv6 addresses + two 5-digit ports + CRLF, the spec's worst case. */
export const PROXY_V1_MAX_BYTES = 107;
/** v2: the 16-byte fixed part and up to 2032 bytes of addresses and TLVs. */
export const PROXY_V2_MAX_BYTES = 2048;
/** Bytes enough to decide a header's verdict, whichever the version: a reader's bound. */
export const PROXY_HEADER_MAX_BYTES = PROXY_V2_MAX_BYTES;

const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V2_FIXED_BYTES = 16;
const V2_VERSION = 0x2;
const V2_COMMAND_LOCAL = 0x0;
const V2_COMMAND_PROXY = 0x1;
const V2_FAMILY_UNSPEC = 0x0;
const V2_FAMILY_INET = 0x1;
const V2_FAMILY_INET6 = 0x2;
const V2_FAMILY_UNIX = 0x3;
const V2_TRANSPORT_STREAM = 0x1;
/** Bytes of the address block per family: two addresses and, for INET/INET6, two ports. */
const V2_INET_BYTES = 12;
const V2_INET6_BYTES = 36;
const V2_UNIX_BYTES = 216;
const V2_TLV_HEADER_BYTES = 3;
const CR = 0x0d;
const LF = 0x0a;

const NEED_MORE: ProxyHeaderResult = Object.freeze({ kind: 'need-more' });

function invalid(why: string): ProxyHeaderResult {
  return { kind: 'invalid', why };
}

/**
 * Reads the PROXY header at the start of `data` (everything read from the connection so far),
 * v1 or v2 as its first bytes say. Never throws and never reads past `data.length`.
 */
export function parseProxyHeader(data: Buffer): ProxyHeaderResult {
  if (data.length === 0) return NEED_MORE;
  if (data[0] === V1_PREFIX[0]) {
    if (!startsLike(data, V1_PREFIX)) return invalid('not a PROXY protocol header');
    return data.length < V1_PREFIX.length ? NEED_MORE : parseV1(data);
  }
  if (data[0] === V2_SIGNATURE[0]) {
    if (!startsLike(data, V2_SIGNATURE)) return invalid('not a PROXY protocol header');
    return data.length < V2_FIXED_BYTES ? NEED_MORE : parseV2(data);
  }
  return invalid('not a PROXY protocol header');
}

/** Whether data and prefix agree on the bytes both have. */
function startsLike(data: Buffer, prefix: Buffer): boolean {
  const n = Math.min(data.length, prefix.length);
  return data.compare(prefix, 0, n, 0, n) === 0;
}

function parseV1(data: Buffer): ProxyHeaderResult {
  const limit = Math.min(data.length, PROXY_V1_MAX_BYTES);
  let end = -1;
  for (let i = V1_PREFIX.length; i < limit; i++) {
    const c = data[i]!;
    if (c === CR) {
      // The bound counts the CRLF: a CR in the last byte it allows leaves no room for the LF.
      if (i + 2 > PROXY_V1_MAX_BYTES) break;
      if (i + 1 >= data.length) return NEED_MORE;
      if (data[i + 1] !== LF) return invalid('v1: CR not followed by LF');
      end = i;
      break;
    }
    if (c < 0x20 || c > 0x7e) return invalid('v1: a byte that is not printable ASCII');
  }
  if (end === -1) return data.length >= PROXY_V1_MAX_BYTES ? invalid(`v1: no CRLF within ${PROXY_V1_MAX_BYTES} bytes`) : NEED_MORE;
  const headerLength = end + 2;
  const fields = data.toString('latin1', V1_PREFIX.length, end).split(' ');
  const protocol = fields[0];
  // "the receiver must ignore anything presented before the CRLF is found": the real endpoints count.
  if (protocol === 'UNKNOWN') return { kind: 'header', version: 1, command: 'proxy', headerLength };
  if (protocol !== 'TCP4' && protocol !== 'TCP6') return invalid(`v1: unknown protocol ${JSON.stringify(protocol)}`);
  if (fields.length !== 5) return invalid('v1: expected "TCP4|TCP6 <src> <dst> <sport> <dport>", one space apart');
  const family = protocol === 'TCP4' ? 4 : 6;
  const source = v1Address(fields[1]!, family);
  const destination = v1Address(fields[2]!, family);
  if (source === undefined || destination === undefined) return invalid(`v1: ${protocol} needs two IPv${family} addresses`);
  const sourcePort = v1Port(fields[3]!);
  const destinationPort = v1Port(fields[4]!);
  if (sourcePort === undefined || destinationPort === undefined) return invalid('v1: ports must be decimal 0-65535 without leading zeros');
  return { kind: 'header', version: 1, command: 'proxy', client: { address: source, port: sourcePort }, headerLength };
}

/** The address as Node writes it, or undefined unless it is a valid address of `family` in the spec's form. */
function v1Address(text: string, family: 4 | 6): string | undefined {
  if (family === 4) {
    const parts = text.split('.');
    if (parts.length !== 4 || !parts.every((p) => /^(0|[1-9]\d{0,2})$/.test(p) && Number(p) <= 255)) return undefined;
    return text;
  }
  // No zone (%eth0): a client address from elsewhere has none.
  if (text.includes('%') || isIP(text) !== 6) return undefined;
  return formatIpv6(addressBytes(text));
}

function v1Port(text: string): number | undefined {
  if (!/^(0|[1-9]\d{0,4})$/.test(text)) return undefined;
  const port = Number(text);
  return port <= 65535 ? port : undefined;
}

function parseV2(data: Buffer): ProxyHeaderResult {
  const versionCommand = data[12]!;
  if (versionCommand >> 4 !== V2_VERSION) return invalid(`v2: version ${versionCommand >> 4}, not 2`);
  const command = versionCommand & 0x0f;
  if (command !== V2_COMMAND_LOCAL && command !== V2_COMMAND_PROXY) return invalid(`v2: unknown command ${command}`);
  const family = data[13]! >> 4;
  const transport = data[13]! & 0x0f;
  const length = data.readUInt16BE(14);
  const headerLength = V2_FIXED_BYTES + length;
  if (headerLength > PROXY_V2_MAX_BYTES) return invalid(`v2: ${headerLength} bytes, over the ${PROXY_V2_MAX_BYTES}-byte bound`);
  if (family > V2_FAMILY_UNIX) return invalid(`v2: unknown address family ${family}`);
  if (transport > 2) return invalid(`v2: unknown transport ${transport}`);
  const addressBytes = family === V2_FAMILY_INET ? V2_INET_BYTES : family === V2_FAMILY_INET6 ? V2_INET6_BYTES : family === V2_FAMILY_UNIX ? V2_UNIX_BYTES : 0;
  // Checked on the fixed part alone, so a short block is refused before its bytes arrive.
  if (command === V2_COMMAND_PROXY && length < addressBytes) return invalid(`v2: ${length} bytes of addresses, family ${family} needs ${addressBytes}`);
  if (data.length < headerLength) return NEED_MORE;
  // LOCAL: the proxy's own connection (a health check); whatever follows is skipped.
  if (command === V2_COMMAND_LOCAL) return { kind: 'header', version: 2, command: 'local', headerLength };
  const tlvProblem = checkTlvs(data, V2_FIXED_BYTES + addressBytes, headerLength);
  if (tlvProblem !== undefined) return invalid(`v2: ${tlvProblem}`);
  // UNSPEC and UNIX carry no client address to use: the real endpoints count (the spec's rule for UNSPEC).
  if (family === V2_FAMILY_UNSPEC || family === V2_FAMILY_UNIX) return { kind: 'header', version: 2, command: 'proxy', headerLength };
  if (transport !== V2_TRANSPORT_STREAM) return invalid('v2: a TCP connection must be declared STREAM');
  const at = V2_FIXED_BYTES;
  const client: ProxyClient =
    family === V2_FAMILY_INET
      ? { address: `${data[at]}.${data[at + 1]}.${data[at + 2]}.${data[at + 3]}`, port: data.readUInt16BE(at + 8) }
      : { address: formatIpv6(data.subarray(at, at + 16)), port: data.readUInt16BE(at + 32) };
  return { kind: 'header', version: 2, command: 'proxy', client, headerLength };
}

/** Why the TLVs in data[from, to) don't each fit (type, 2-byte length, value), or undefined when they do. */
function checkTlvs(data: Buffer, from: number, to: number): string | undefined {
  let at = from;
  while (at < to) {
    if (to - at < V2_TLV_HEADER_BYTES) return 'a truncated TLV';
    const valueLength = data.readUInt16BE(at + 1);
    at += V2_TLV_HEADER_BYTES + valueLength;
    if (at > to) return 'a TLV longer than the header';
  }
  return undefined;
}

/**
 * IPv6 in Node's form (libuv's inet_ntop: lower case, the longest run of two or more zero
 * groups as "::"); an IPv4-mapped address as ::ffff:a.b.c.d, which normalizeAddress turns into
 * IPv4, and an IPv4-compatible one (six zero groups, then anything but 0.0.0.0 and 0.0.0.1) as
 * ::a.b.c.d, so that a client has the same text whether it came direct or through a proxy.
 */
export function formatIpv6(bytes: Buffer): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i));
  const dotted = `${bytes[12]}.${bytes[13]}.${bytes[14]}.${bytes[15]}`;
  if (groups.slice(0, 5).every((g) => g === 0)) {
    if (groups[5] === 0xffff) return `::ffff:${dotted}`;
    // libuv's rule: exactly six leading zero groups (a seventh would make the run longer).
    if (groups[5] === 0 && groups[6] !== 0) return `::${dotted}`;
  }
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart === -1) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`;
}
