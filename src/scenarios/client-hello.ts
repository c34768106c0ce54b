// A strict, bounded, incremental reader of a TLS ClientHello from the raw bytes of a TCP
// connection, for choosing a scenario by its server name before any TLS server sees it.
//
// These bytes come from anyone on the network before any authentication. The parser reads
// only what it was given, checks every length against the bytes there are, never throws,
// and gives up at CLIENT_HELLO_MAX_BYTES. It is as strict as OpenSSL, which parses the same
// bytes again once they are handed over: whatever it reads a server name from, OpenSSL reads
// the same name from (one host_name, no duplicate extensions, nothing after the hello in
// its record), so a connection can't be routed by one name and served under another.
//
// The caller passes everything read so far on each call. Before the hello is complete the
// work per call is one walk over the record headers (the payload is not copied), so a client
// dribbling bytes costs little; the message is only copied out once, when it is complete.

/**
 * The most bytes read from a connection for its ClientHello: one full TLS record (2^14 bytes
 * of payload and its 5-byte header). A hello may span several records, but everything that
 * exists sends one well under this (about 2 KiB, post-quantum key shares included), and a
 * peeking proxy's buffer is conventionally this size too (nginx's ssl_preread buffer is 16k,
 * HAProxy's tune.bufsize 16k). Record headers of a fragmented hello count against it.
 */
export const CLIENT_HELLO_MAX_BYTES = 16 * 1024 + 5;

export type HelloResult =
  /** No verdict yet: the bytes so far are a valid start of a ClientHello. */
  | { readonly kind: 'more' }
  /**
   * A complete ClientHello. `serverName` is its server_name (host_name), lower-cased, or
   * undefined when it sent none; `bytes` is where the record holding its end ends.
   */
  | { readonly kind: 'hello'; readonly serverName: string | undefined; readonly bytes: number }
  /** Not a ClientHello we accept: not TLS, SSLv2, malformed, over the bound, or a bad server name. */
  | { readonly kind: 'invalid'; readonly why: string };

const CONTENT_TYPE_HANDSHAKE = 22;
const HANDSHAKE_CLIENT_HELLO = 1;
const RECORD_HEADER_BYTES = 5;
const HANDSHAKE_HEADER_BYTES = 4;
/** RFC 8446 5.1: a plaintext record carries at most 2^14 bytes. */
const MAX_RECORD_PAYLOAD_BYTES = 2 ** 14;
const RANDOM_BYTES = 32;
const MAX_SESSION_ID_BYTES = 32;
const EXTENSION_SERVER_NAME = 0;
const NAME_TYPE_HOST_NAME = 0;
/** RFC 6066 3: HostName is opaque <1..2^16-1>, but a DNS name is at most 255 bytes (OpenSSL's limit too). */
const MAX_HOST_NAME_BYTES = 255;

const MORE: HelloResult = Object.freeze({ kind: 'more' });

function invalid(why: string): HelloResult {
  return { kind: 'invalid', why };
}

/**
 * Reads the ClientHello at the start of `data` (everything read from the connection so far).
 * `maxBytes` (default CLIENT_HELLO_MAX_BYTES) bounds how far it may reach: a hello not complete
 * within that many bytes is invalid. Never throws and never reads past `data.length`.
 */
export function parseClientHello(data: Buffer, maxBytes: number = CLIENT_HELLO_MAX_BYTES): HelloResult {
  const limit = Math.min(data.length, maxBytes);
  const needMore = (): HelloResult => (data.length >= maxBytes ? invalid(`no complete ClientHello within ${maxBytes} bytes`) : MORE);
  // Payload fragments of the records read so far: views into `data`, not copies.
  const fragments: Buffer[] = [];
  let payloadBytes = 0;
  // The handshake message's whole length (header included), once its header has been read.
  let messageBytes: number | undefined;
  let offset = 0;
  for (;;) {
    const header = readRecordHeader(data, offset, limit, offset === 0);
    if (header === 'more') return needMore();
    if (typeof header === 'string') return invalid(header);
    const payloadStart = offset + RECORD_HEADER_BYTES;
    const recordEnd = payloadStart + header;
    // Refused as soon as the lengths show it can't fit: no waiting for bytes that won't be read.
    if (recordEnd > maxBytes) return invalid(`record ending at byte ${recordEnd}, past the ${maxBytes}-byte bound`);
    const available = Math.min(recordEnd, limit) - payloadStart;
    fragments.push(data.subarray(payloadStart, payloadStart + available));
    const payloadBefore = payloadBytes;
    payloadBytes += available;
    if (messageBytes === undefined && payloadBytes >= HANDSHAKE_HEADER_BYTES) {
      const head = firstBytes(fragments, HANDSHAKE_HEADER_BYTES);
      if (head[0] !== HANDSHAKE_CLIENT_HELLO) return invalid(`handshake message of type ${head[0]}, not a ClientHello (1)`);
      messageBytes = HANDSHAKE_HEADER_BYTES + head.readUIntBE(1, 3);
    }
    // The earliest the message can end: all the rest of it in this record.
    if (messageBytes !== undefined && payloadStart + (messageBytes - payloadBefore) > maxBytes) {
      return invalid(`ClientHello of ${messageBytes} bytes can't end within ${maxBytes} bytes`);
    }
    if (messageBytes !== undefined && payloadBefore + header >= messageBytes) {
      // The hello ends in this record. RFC 8446 5.1: a message before a key change (as the
      // ClientHello is) must end at a record boundary; TLS 1.2 clients send nothing after it either.
      if (payloadBefore + header > messageBytes) return invalid('data after the ClientHello in its record');
      if (recordEnd > limit) return needMore();
      return parseMessage(Buffer.concat(fragments, payloadBytes).subarray(HANDSHAKE_HEADER_BYTES), recordEnd);
    }
    if (recordEnd > limit) return needMore();
    offset = recordEnd;
  }
}

/**
 * Checks the record header at `offset` as far as the bytes go: its payload length when all
 * five are there, 'more' when they aren't (and what there is is valid), or why it is invalid.
 */
function readRecordHeader(data: Buffer, offset: number, limit: number, first: boolean): number | 'more' | string {
  if (offset >= limit) return 'more';
  const type = data[offset]!;
  if (type !== CONTENT_TYPE_HANDSHAKE) {
    // An SSLv2-format hello starts with a 2-byte length with its top bit set (0x80 ...).
    if (first && (type & 0x80) !== 0) return 'SSLv2-format ClientHello';
    return first ? `record of content type ${type}, not a handshake (22)` : `record of content type ${type} inside the ClientHello`;
  }
  if (offset + 1 >= limit) return 'more';
  if (data[offset + 1] !== 3) return `record version major ${data[offset + 1]}, not 3`;
  if (offset + 2 >= limit) return 'more';
  // RFC 8446 5.1 / RFC 5246 E.1: 0x0301..0x0303 in a ClientHello's records; SSL 3.0 is not served.
  const minor = data[offset + 2]!;
  if (minor < 1 || minor > 3) return `record version 3.${minor}, not TLS 1.0 to 1.2`;
  if (offset + RECORD_HEADER_BYTES > limit) return 'more';
  const length = data.readUInt16BE(offset + 3);
  if (length === 0) return 'empty handshake record';
  if (length > MAX_RECORD_PAYLOAD_BYTES) return `record length ${length} over 2^14`;
  return length;
}

/** The first `n` bytes of the concatenated fragments (which hold at least that many). */
function firstBytes(fragments: readonly Buffer[], n: number): Buffer {
  const out = Buffer.alloc(n);
  let filled = 0;
  for (const fragment of fragments) {
    if (filled === n) break;
    filled += fragment.copy(out, filled, 0, Math.min(fragment.length, n - filled));
  }
  return out;
}

/** Bounds-checked reads over one buffer; every read returns undefined past the end. */
class Reader {
  private offset = 0;

  constructor(private readonly buf: Buffer) {}

  get remaining(): number {
    return this.buf.length - this.offset;
  }

  u8(): number | undefined {
    if (this.remaining < 1) return undefined;
    return this.buf[this.offset++];
  }

  u16(): number | undefined {
    if (this.remaining < 2) return undefined;
    const value = this.buf.readUInt16BE(this.offset);
    this.offset += 2;
    return value;
  }

  bytes(n: number): Buffer | undefined {
    if (this.remaining < n) return undefined;
    const out = this.buf.subarray(this.offset, this.offset + n);
    this.offset += n;
    return out;
  }

  /** A vector with a 1- or 2-byte length prefix (RFC 8446 3.4). */
  vector(lengthBytes: 1 | 2): Buffer | undefined {
    const length = lengthBytes === 1 ? this.u8() : this.u16();
    return length === undefined ? undefined : this.bytes(length);
  }
}

/** Reads the ClientHello body (RFC 8446 4.1.2, RFC 5246 7.4.1.2); `bytes` is reported as is. */
function parseMessage(body: Buffer, bytes: number): HelloResult {
  const r = new Reader(body);
  const version = r.u16();
  if (version === undefined) return invalid('ClientHello truncated in its version');
  if (version >> 8 !== 3) return invalid(`ClientHello version 0x${version.toString(16)}, not 3.x`);
  if (r.bytes(RANDOM_BYTES) === undefined) return invalid('ClientHello truncated in its random');
  const sessionId = r.vector(1);
  if (sessionId === undefined) return invalid('ClientHello truncated in its session id');
  if (sessionId.length > MAX_SESSION_ID_BYTES) return invalid(`session id of ${sessionId.length} bytes, over ${MAX_SESSION_ID_BYTES}`);
  const suites = r.vector(2);
  if (suites === undefined) return invalid('ClientHello truncated in its cipher suites');
  if (suites.length === 0 || suites.length % 2 !== 0) return invalid(`cipher suites of ${suites.length} bytes (must be even, at least 2)`);
  const compression = r.vector(1);
  if (compression === undefined) return invalid('ClientHello truncated in its compression methods');
  if (compression.length === 0) return invalid('no compression methods');
  // A TLS 1.2 hello may stop here: no extensions, so no server name.
  if (r.remaining === 0) return { kind: 'hello', serverName: undefined, bytes };
  const extensions = r.vector(2);
  if (extensions === undefined) return invalid('ClientHello truncated in its extensions');
  if (r.remaining !== 0) return invalid(`${r.remaining} bytes after the ClientHello's extensions`);
  const found = readExtensions(extensions);
  if (typeof found !== 'object') return invalid(found);
  return { kind: 'hello', serverName: found.serverName, bytes };
}

/** The server name from the extensions block, or why the block is invalid. */
function readExtensions(block: Buffer): { serverName: string | undefined } | string {
  const r = new Reader(block);
  // RFC 8446 4.2: at most one extension of each type. A block holds at most 2^16 / 4 of them.
  const seen = new Set<number>();
  let serverName: string | undefined;
  while (r.remaining > 0) {
    const type = r.u16();
    const data = r.vector(2);
    if (type === undefined || data === undefined) return 'extension runs past the extensions block';
    if (seen.has(type)) return `extension ${type} appears twice`;
    seen.add(type);
    if (type !== EXTENSION_SERVER_NAME) continue;
    const name = readServerName(data);
    if (typeof name !== 'object') return name;
    serverName = name.name;
  }
  return { serverName };
}

/**
 * The host name in a server_name extension (RFC 6066 3), lower-cased, or why it is refused.
 * As OpenSSL: the list holds exactly one entry and it is a host_name. Only printable ASCII
 * (0x21-0x7e) is accepted: a DNS name in its A-label form has nothing else.
 */
function readServerName(data: Buffer): { name: string } | string {
  const r = new Reader(data);
  const list = r.vector(2);
  if (list === undefined || r.remaining !== 0) return 'server_name list length does not match its extension';
  const entries = new Reader(list);
  const type = entries.u8();
  if (type === undefined) return 'empty server_name list';
  if (type !== NAME_TYPE_HOST_NAME) return `server_name of type ${type}, not host_name (0)`;
  const name = entries.vector(2);
  if (name === undefined) return 'server_name entry runs past its list';
  if (entries.remaining !== 0) return 'more than one server_name entry';
  if (name.length === 0) return 'empty server name';
  if (name.length > MAX_HOST_NAME_BYTES) return `server name of ${name.length} bytes, over ${MAX_HOST_NAME_BYTES}`;
  for (const byte of name) {
    if (byte < 0x21 || byte > 0x7e) return `server name with byte 0x${byte.toString(16).padStart(2, '0')} (only printable ASCII)`;
  }
  return { name: name.toString('latin1').toLowerCase() };
}
