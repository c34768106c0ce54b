// A minimal DER reader (X.690) for what the serving daemon must read without node-forge: CRLs
// and a certificate's subject Name. It reads one tag-length-value at a time and checks every
// length against the bytes there are, so a hostile or truncated file is a CertError, never a
// read past the end. DER only: indefinite lengths (BER) and high tag numbers are refused, as no
// X.509 structure uses them.

import { CertError } from '../errors';

/** Universal tags used by X.509, as full identifier bytes (class and constructed bit included). */
export const TAG = {
  boolean: 0x01,
  integer: 0x02,
  bitString: 0x03,
  octetString: 0x04,
  null: 0x05,
  oid: 0x06,
  utcTime: 0x17,
  generalizedTime: 0x18,
  sequence: 0x30,
  set: 0x31,
} as const;

/** Identifier byte of a constructed context-specific tag [n] (EXPLICIT tagging), e.g. 0xa0 for [0]. */
export function contextTag(n: number): number {
  return 0xa0 | n;
}

/** One tag-length-value. `value` and `raw` are views into the buffer that was read, not copies. */
export interface DerNode {
  /** The identifier byte: class, constructed bit and tag number together (0x30 for SEQUENCE). */
  readonly tag: number;
  /** The content octets. */
  readonly value: Buffer;
  /** The whole encoding, identifier and length included: what a signature covers. */
  readonly raw: Buffer;
}

/** Lengths past 2^32 can't fit any buffer we read; more length bytes than this is an attack or garbage. */
const MAX_LENGTH_BYTES = 4;
const HIGH_TAG_NUMBER = 0x1f;
const CONSTRUCTED = 0x20;

/** The one node that `der` holds; CertError if it holds less, more, or not DER. */
export function readDer(der: Buffer): DerNode {
  const { node, end } = readNode(der, 0);
  if (end !== der.length) throw new CertError(`${der.length - end} bytes of trailing data after the DER structure`);
  return node;
}

/** The nodes inside a constructed node (a SEQUENCE's fields), in order. */
export function childrenOf(node: DerNode): DerNode[] {
  if ((node.tag & CONSTRUCTED) === 0) throw new CertError(`expected a constructed DER value, found tag 0x${hex(node.tag)}`);
  const children: DerNode[] = [];
  let offset = 0;
  while (offset < node.value.length) {
    const { node: child, end } = readNode(node.value, offset);
    children.push(child);
    offset = end;
  }
  return children;
}

/** `node` if it has tag `tag`; else a CertError naming `what` was expected. */
export function expectTag(node: DerNode | undefined, tag: number, what: string): DerNode {
  if (node === undefined) throw new CertError(`${what} is missing`);
  if (node.tag !== tag) throw new CertError(`${what}: expected tag 0x${hex(tag)}, found 0x${hex(node.tag)}`);
  return node;
}

/** An INTEGER's content octets as a bigint (two's complement, as X.690 encodes it). */
export function integerValue(node: DerNode): bigint {
  const bytes = expectTag(node, TAG.integer, 'INTEGER').value;
  if (bytes.length === 0) throw new CertError('INTEGER with no content');
  const unsigned = BigInt(`0x${bytes.toString('hex')}`);
  return (bytes[0]! & 0x80) === 0 ? unsigned : unsigned - (1n << BigInt(bytes.length * 8));
}

/** An OBJECT IDENTIFIER in dotted form ("2.5.29.20"). */
export function oidText(node: DerNode): string {
  const bytes = expectTag(node, TAG.oid, 'OBJECT IDENTIFIER').value;
  if (bytes.length === 0 || (bytes[bytes.length - 1]! & 0x80) !== 0) throw new CertError('malformed OBJECT IDENTIFIER');
  // Base-128 with a continuation bit; bigint because arcs (UUID OIDs) may pass 2^53.
  const arcs: bigint[] = [];
  let arc = 0n;
  for (const byte of bytes) {
    arc = (arc << 7n) | BigInt(byte & 0x7f);
    if ((byte & 0x80) === 0) {
      arcs.push(arc);
      arc = 0n;
    }
  }
  // The first subidentifier packs two arcs: 40 * X + Y, with X at most 2.
  const first = arcs[0]!;
  const head = first < 40n ? [0n, first] : first < 80n ? [1n, first - 40n] : [2n, first - 80n];
  return [...head, ...arcs.slice(1)].join('.');
}

/** A UTCTime or GeneralizedTime in the forms RFC 5280 4.1.2.5 allows: UTC ("Z"), whole seconds. */
export function timeValue(node: DerNode): Date {
  const text = node.value.toString('latin1');
  let match: RegExpExecArray | null;
  let year: number;
  if (node.tag === TAG.utcTime && (match = /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text)) !== null) {
    const yy = Number(match[1]);
    year = yy >= 50 ? 1900 + yy : 2000 + yy; // RFC 5280: YY >= 50 is 19YY, else 20YY
  } else if (node.tag === TAG.generalizedTime && (match = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text)) !== null) {
    year = Number(match[1]);
  } else {
    throw new CertError(`not a UTC time in DER form: ${JSON.stringify(text.slice(0, 32))}`);
  }
  const [month, day, hour, minute, second] = match.slice(2).map(Number) as [number, number, number, number, number];
  const date = new Date(Date.UTC(year, month - 1, day, hour, minute, second));
  // Date.UTC rolls 31 February over into March: a date that doesn't come back as given is invalid.
  if (date.getUTCFullYear() !== year || date.getUTCMonth() !== month - 1 || date.getUTCDate() !== day || hour > 23 || minute > 59 || second > 59) {
    throw new CertError(`not a valid date: ${JSON.stringify(text)}`);
  }
  return date;
}

function readNode(buf: Buffer, start: number): { node: DerNode; end: number } {
  if (start >= buf.length) throw new CertError(`DER truncated at byte ${start}`);
  const tag = buf[start]!;
  if ((tag & HIGH_TAG_NUMBER) === HIGH_TAG_NUMBER) throw new CertError(`unsupported DER tag 0x${hex(tag)} at byte ${start} (high tag number)`);
  if (start + 1 >= buf.length) throw new CertError(`DER truncated at byte ${start + 1} (no length)`);
  const first = buf[start + 1]!;
  let length: number;
  let contentStart: number;
  if (first < 0x80) {
    length = first;
    contentStart = start + 2;
  } else {
    const count = first & 0x7f;
    if (count === 0) throw new CertError(`indefinite length at byte ${start + 1} (BER, not DER)`);
    if (count > MAX_LENGTH_BYTES) throw new CertError(`length of ${count} bytes at byte ${start + 1}`);
    if (start + 2 + count > buf.length) throw new CertError(`DER truncated at byte ${start + 2} (in a length)`);
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + buf[start + 2 + i]!;
    contentStart = start + 2 + count;
  }
  const end = contentStart + length;
  if (end > buf.length) throw new CertError(`DER length ${length} at byte ${start + 1} runs past the end (${buf.length - contentStart} bytes left)`);
  return { node: { tag, value: buf.subarray(contentStart, end), raw: buf.subarray(start, end) }, end };
}

function hex(byte: number): string {
  return byte.toString(16).padStart(2, '0');
}
