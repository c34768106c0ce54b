// IPv4 and IPv6 CIDR blocks and the address normalisation admission relies on: an
// IPv4-mapped IPv6 address (::ffff:1.2.3.4) is the IPv4 address it carries.

import { isIP } from 'node:net';

export interface Cidr {
  readonly family: 4 | 6;
  /** Network address as an integer, already masked. */
  readonly network: bigint;
  readonly prefix: number;
  /** The text it was parsed from, for logs and --help. */
  readonly text: string;
}

const MAPPED_PREFIX = '::ffff:';
const COLON = 0x3a;

/**
 * The IPv4 address an IPv4-mapped IPv6 address (::ffff:1.2.3.4, in any of its textual forms)
 * carries, so one client has one key whatever socket family it came in on; any other text
 * as it is. An address with a zone (%eth0) is left alone: a mapped address has none.
 */
export function normalizeAddress(address: string): string {
  // Called once per connection. Node writes a mapped address as ::ffff:a.b.c.d, which the first
  // test takes; IPv4 has no ':', and an IPv6 address without "ffff" in its text can't be mapped.
  if (address.charCodeAt(0) === COLON && address.length > MAPPED_PREFIX.length && address.slice(0, MAPPED_PREFIX.length).toLowerCase() === MAPPED_PREFIX) {
    const rest = address.slice(MAPPED_PREFIX.length);
    if (isIP(rest) === 4) return rest;
  }
  if (address.indexOf(':') === -1 || !/ffff/i.test(address) || address.includes('%') || isIP(address) !== 6) return address;
  const bytes = addressBytes(address);
  const mapped = bytes.readUInt32BE(0) === 0 && bytes.readUInt32BE(4) === 0 && bytes.readUInt32BE(8) === 0xffff;
  return mapped ? `${bytes[12]}.${bytes[13]}.${bytes[14]}.${bytes[15]}` : address;
}

/** IPv6 bits that make an address IPv4-mapped (::ffff:0:0/96). */
const MAPPED_PREFIX_BITS = 96;

/**
 * Parses `10.0.0.0/8`, `::1/128` or a bare address (a /32 or /128); undefined when invalid.
 * A block inside ::ffff:0:0/96 (::ffff:10.0.0.0/104, in any textual form) is the IPv4 block it
 * covers, since addresses are normalised to IPv4; a wider IPv6 block stays IPv6 and so matches
 * no IPv4 client (::/0 means every IPv6 client, as in nginx, not every client).
 */
export function parseCidr(text: string): Cidr | undefined {
  const slash = text.indexOf('/');
  const addrText = slash === -1 ? text : text.slice(0, slash);
  const family = isIP(addrText);
  if (family === 0) return undefined;
  const bits = family === 4 ? 32 : 128;
  let prefix = bits;
  if (slash !== -1) {
    const p = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p)) return undefined;
    prefix = Number(p);
    if (prefix > bits) return undefined;
  }
  if (family === 6 && prefix >= MAPPED_PREFIX_BITS) {
    const ipv4 = normalizeAddress(addrText);
    if (ipv4 !== addrText) return { family: 4, network: addressToBigInt(ipv4) & mask(32, prefix - MAPPED_PREFIX_BITS), prefix: prefix - MAPPED_PREFIX_BITS, text };
  }
  const value = addressToBigInt(addrText);
  return { family: family as 4 | 6, network: value & mask(bits, prefix), prefix, text };
}

function mask(bits: number, prefix: number): bigint {
  if (prefix === 0) return 0n;
  return ((1n << BigInt(prefix)) - 1n) << BigInt(bits - prefix);
}

function addressToBigInt(address: string): bigint {
  return BigInt(`0x${addressBytes(address).toString('hex')}`);
}

/**
 * A valid IPv4 or IPv6 address (as isIP accepts it) in network byte order: 4 bytes or 16.
 * An IPv6 zone (`%eth0`) is dropped; an embedded dotted IPv4 tail (::ffff:1.2.3.4,
 * 64:ff9b::1.2.3.4) stands for the last two groups.
 */
export function addressBytes(address: string): Buffer {
  if (isIP(address) === 4) return Buffer.from(address.split('.').map(Number));
  let text = address;
  const zone = text.indexOf('%');
  if (zone !== -1) text = text.slice(0, zone);
  const lastColon = text.lastIndexOf(':');
  const tail = text.slice(lastColon + 1);
  if (tail.includes('.')) {
    const [a, b, c, d] = tail.split('.').map(Number) as [number, number, number, number];
    text = `${text.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, rest] = text.split('::') as [string, string | undefined];
  const headGroups = head === '' ? [] : head.split(':');
  const restGroups = rest === undefined || rest === '' ? [] : rest.split(':');
  const zeros = rest === undefined ? [] : Array<string>(8 - headGroups.length - restGroups.length).fill('0');
  const bytes = Buffer.alloc(16);
  [...headGroups, ...zeros, ...restGroups].forEach((group, i) => bytes.writeUInt16BE(parseInt(group, 16), i * 2));
  return bytes;
}

/**
 * The IPv6 network of `address` (normalised IPv6, as isIP accepts it) at `prefix` bits, as text:
 * `2001:db8:0:1:0:0:0:0/64`. Every address of that network gives the same text, whatever its
 * textual form; an IPv4 address is its own key.
 */
export function ipv6NetworkKey(address: string, prefix: number): string {
  const bytes = addressBytes(address);
  // IPv4 is keyed per address (a caller that checks the family first never gets here).
  if (bytes.length === 4) return address;
  for (let bit = prefix; bit < 128; bit++) bytes[bit >> 3]! &= ~(0x80 >> (bit & 7));
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16));
  return `${groups.join(':')}/${prefix}`;
}

/** A set of CIDR blocks, matched against normalised addresses. */
export class CidrList {
  private readonly blocks: readonly Cidr[];
  private readonly cache = new Map<string, boolean>();
  private static readonly CACHE_MAX = 4096;

  constructor(blocks: readonly Cidr[]) {
    this.blocks = blocks;
  }

  get size(): number {
    return this.blocks.length;
  }

  /** True when `address` (already normalised) falls in any block. */
  contains(address: string): boolean {
    if (this.blocks.length === 0) return false;
    const hit = this.cache.get(address);
    if (hit !== undefined) return hit;
    const family = isIP(address);
    let result = false;
    if (family !== 0) {
      const bits = family === 4 ? 32 : 128;
      const value = addressToBigInt(address);
      result = this.blocks.some((b) => b.family === family && (value & mask(bits, b.prefix)) === b.network);
    }
    // Bounded memo: a flood from many addresses must not grow it without limit.
    if (this.cache.size >= CidrList.CACHE_MAX) this.cache.clear();
    this.cache.set(address, result);
    return result;
  }
}
