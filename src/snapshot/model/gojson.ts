// Go-compatible JSON and string quoting, so that trees and snapshots encode to exactly the bytes
// restic writes (a tree's ID is the SHA-256 of its JSON, so dedup against restic needs the same
// bytes).
//
// Go strings are byte strings. File names, symlink targets, user names and paths on Linux are
// bytes too and need not be valid UTF-8. In Stowage such a value is a JS string in the
// "Go-string form": valid UTF-8 decodes to the usual characters, and every byte that is not part
// of a valid UTF-8 sequence becomes the lone surrogate U+DC00+byte (U+DC80..U+DCFF; Python calls
// this "surrogateescape"). Valid UTF-8 never decodes to a lone surrogate, so the mapping is exact
// both ways: goStringFromBytes / goStringToBytes. Plain names are therefore plain strings.
import { isUtf8 } from 'node:buffer';
import { InvalidInputError } from '../../errors.ts';

// ---------------------------------------------------------------------------------------------
// Byte strings <-> Go-string form

const ESCAPE_BASE = 0xdc00; // lone surrogate U+DC80..U+DCFF carries raw byte 0x80..0xFF

/**
 * Length of the valid UTF-8 sequence at bytes[i], or 0 when bytes[i] does not start one, with
 * Go's rules (utf8.DecodeRune): no overlong forms, no surrogates, nothing above U+10FFFF.
 */
function utf8SequenceLength(bytes: Uint8Array, i: number): number {
  const b0 = bytes[i]!;
  if (b0 < 0x80) return 1;
  const cont = (k: number, lo = 0x80, hi = 0xbf) => i + k < bytes.length && bytes[i + k]! >= lo && bytes[i + k]! <= hi;
  if (b0 >= 0xc2 && b0 <= 0xdf) return cont(1) ? 2 : 0;
  if (b0 >= 0xe0 && b0 <= 0xef) {
    const lo = b0 === 0xe0 ? 0xa0 : 0x80;
    const hi = b0 === 0xed ? 0x9f : 0xbf;
    return cont(1, lo, hi) && cont(2) ? 3 : 0;
  }
  if (b0 >= 0xf0 && b0 <= 0xf4) {
    const lo = b0 === 0xf0 ? 0x90 : 0x80;
    const hi = b0 === 0xf4 ? 0x8f : 0xbf;
    return cont(1, lo, hi) && cont(2) && cont(3) ? 4 : 0;
  }
  return 0;
}

/** Bytes (e.g. a file name from the file system) as a Go-string-form JS string. Exact. */
export function goStringFromBytes(bytes: Uint8Array): string {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (isUtf8(buf)) return buf.toString('utf8');
  let out = '';
  let runStart = 0;
  for (let i = 0; i < buf.length; ) {
    const n = utf8SequenceLength(buf, i);
    if (n > 0) {
      i += n;
      continue;
    }
    out += buf.toString('utf8', runStart, i) + String.fromCharCode(ESCAPE_BASE + buf[i]!);
    i += 1;
    runStart = i;
  }
  return out + buf.toString('utf8', runStart);
}

const ANY_SURROGATE = /[\ud800-\udfff]/;

/**
 * The bytes a Go-string-form string stands for (the inverse of goStringFromBytes). Throws
 * InvalidInputError for a lone surrogate outside U+DC80..U+DCFF, which names no byte string.
 */
export function goStringToBytes(s: string): Buffer {
  if (!ANY_SURROGATE.test(s)) return Buffer.from(s, 'utf8');
  const parts: Buffer[] = [];
  let runStart = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0xd800 || c > 0xdfff) continue;
    if (c <= 0xdbff && i + 1 < s.length && isLowSurrogate(s.charCodeAt(i + 1))) {
      i++; // a proper pair
      continue;
    }
    if (c < 0xdc80 || c > 0xdcff) {
      throw new InvalidInputError(`string ${JSON.stringify(s).slice(0, 80)} holds a lone surrogate U+${hex(c, 4)} that stands for no byte`);
    }
    parts.push(Buffer.from(s.slice(runStart, i), 'utf8'), Buffer.of(c - ESCAPE_BASE));
    runStart = i + 1;
  }
  parts.push(Buffer.from(s.slice(runStart), 'utf8'));
  return Buffer.concat(parts);
}

/** True when the Go-string-form string is valid UTF-8 (carries no raw bytes). */
export function isGoStringUtf8(s: string): boolean {
  if (!ANY_SURROGATE.test(s)) return true;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0xd800 || c > 0xdfff) continue;
    if (c <= 0xdbff && i + 1 < s.length && isLowSurrogate(s.charCodeAt(i + 1))) i++;
    else return false;
  }
  return true;
}

/**
 * Byte-order comparison of two Go-string-form strings, as Go compares strings (restic sorts tree
 * nodes this way). JS's default order (UTF-16 code units) differs for characters above U+FFFF and
 * for raw bytes, so those cases compare the bytes.
 */
export function compareGoStrings(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    // For characters of the BMP, UTF-8 preserves code-point order, and the equal prefix is whole
    // characters, so the first differing code unit decides. Surrogates (characters above U+FFFF,
    // raw bytes) need the bytes.
    if ((x < 0xd800 || x > 0xdfff) && (y < 0xd800 || y > 0xdfff)) return x < y ? -1 : 1;
    return Buffer.compare(goStringToBytes(a), goStringToBytes(b));
  }
  return a.length === b.length ? 0 : a.length < b.length ? -1 : 1;
}

function isLowSurrogate(c: number): boolean {
  return c >= 0xdc00 && c <= 0xdfff;
}

function hex(n: number, width: number): string {
  return n.toString(16).padStart(width, '0');
}

// ---------------------------------------------------------------------------------------------
// encoding/json string encoding

const JSON_NEEDS_ESCAPE = /[\u0000-\u001f"\\<>&\u2028\u2029\ud800-\udfff]/;

export interface GoJsonStringOptions {
  /**
   * Go before 1.22 (restic 0.14 is built with 1.19) wrote \b and \f as \u0008 and \u000c; Go 1.22+
   * writes \b and \f. Default: the current form.
   */
  goBefore122?: boolean;
}

/**
 * A Go-string-form string as Go's json.Marshal writes it, quotes included: `"` and `\` are
 * backslash-escaped; \n \r \t (and \b \f) get short escapes, other controls \u00XX; `<` `>` `&`
 * and U+2028/U+2029 are \u-escaped (HTML-safe mode, which json.Marshal always uses); raw bytes
 * (invalid UTF-8) become \ufffd, one per byte. Everything else, DEL included, is written as is.
 */
export function goJsonString(s: string, options?: GoJsonStringOptions): string {
  if (!JSON_NEEDS_ESCAPE.test(s)) return '"' + s + '"';
  let out = '"';
  let runStart = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    let esc: string;
    if (c < 0x20) esc = controlEscape(c, options?.goBefore122 === true);
    else if (c === 0x22) esc = '\\"';
    else if (c === 0x5c) esc = '\\\\';
    else if (c === 0x3c || c === 0x3e || c === 0x26 || c === 0x2028 || c === 0x2029) esc = '\\u' + hex(c, 4);
    else if (c >= 0xd800 && c <= 0xdfff) {
      if (c <= 0xdbff && i + 1 < s.length && isLowSurrogate(s.charCodeAt(i + 1))) {
        i++; // a proper pair: a character above U+FFFF, written as is
        continue;
      }
      esc = '\\ufffd';
    } else continue;
    out += s.slice(runStart, i) + esc;
    runStart = i + 1;
  }
  return out + s.slice(runStart) + '"';
}

function controlEscape(c: number, goBefore122: boolean): string {
  switch (c) {
    case 0x0a: return '\\n';
    case 0x0d: return '\\r';
    case 0x09: return '\\t';
    case 0x08: return goBefore122 ? '\\u0008' : '\\b';
    case 0x0c: return goBefore122 ? '\\u000c' : '\\f';
    default: return '\\u00' + hex(c, 2);
  }
}

/**
 * A parsed JSON value written as Go's json.Marshal writes the same value: compact, strings by
 * goJsonString, keys in the object's own order (restic keeps generic attributes as raw JSON, so
 * their order is what was written), integers as digits (bigint for those beyond 2^53).
 */
export function goMarshalValue(value: unknown): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'boolean': return value ? 'true' : 'false';
    case 'bigint': return value.toString();
    // JS and Go (strconv 'g'-like shortest form, exponent from 1e21 and below 1e-6) agree.
    case 'number':
      if (!Number.isFinite(value)) throw new InvalidInputError(`JSON cannot hold the number ${value}`);
      return String(value);
    case 'string': return goJsonString(value);
    case 'object': {
      if (Array.isArray(value)) return '[' + value.map(goMarshalValue).join(',') + ']';
      const parts: string[] = [];
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        parts.push(goJsonString(k) + ':' + goMarshalValue(v));
      }
      return '{' + parts.join(',') + '}';
    }
    default: throw new InvalidInputError(`a ${typeof value} cannot be written as JSON`);
  }
}

// ---------------------------------------------------------------------------------------------
// Reading JSON the way Go does

/** A number literal of 16+ digits may not fit a double; only then is the slower reviver used. */
const MAYBE_BIG_NUMBER = /[:[,]\s*-?\d{16}/;
const MAYBE_BIG_TOP_LEVEL = /^\s*-?\d{16}/;

/**
 * Parses JSON bytes as Go's decoder sees them: invalid UTF-8 counts as U+FFFD (one per bad byte,
 * as Go does), and integer literals beyond 2^53 come back as bigint so that 64-bit inode and
 * device numbers keep every digit. Throws SyntaxError on malformed JSON. Strings may still hold
 * lone surrogates from \uD800-style escapes: pass them through goWellFormed (readers do).
 */
export function parseGoJson(input: Uint8Array | string): unknown {
  let text: string;
  if (typeof input === 'string') text = input;
  else {
    const buf = Buffer.from(input.buffer, input.byteOffset, input.byteLength);
    text = isUtf8(buf) ? buf.toString('utf8') : goStringFromBytes(buf).replace(/[\udc80-\udcff]/g, '\ufffd');
  }
  if (!MAYBE_BIG_NUMBER.test(text) && !MAYBE_BIG_TOP_LEVEL.test(text)) return JSON.parse(text);
  // The reviver's third argument carries the literal's source text (Node 21+).
  const reviver = (_key: string, value: unknown, context?: { source?: string }): unknown =>
    typeof value === 'number' && !Number.isSafeInteger(value) && context?.source !== undefined && /^-?\d+$/.test(context.source)
      ? BigInt(context.source)
      : value;
  return JSON.parse(text, reviver as (this: unknown, key: string, value: unknown) => unknown);
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/**
 * A decoded JSON string as Go would hold it: a \uD800-style escape without its partner decodes to
 * U+FFFD in Go. Without this, a hostile "\udcff" would read as the raw byte 0xFF.
 */
export function goWellFormed(s: string): string {
  return ANY_SURROGATE.test(s) ? s.replace(LONE_SURROGATE, '\ufffd') : s;
}

/**
 * Compacts raw JSON text as Go's json.Marshal does for a json.RawMessage (generic attributes),
 * with Go's string escaping. Throws InvalidInputError when the text is not JSON.
 */
export function goCompactJson(text: string): string {
  let value: unknown;
  try {
    value = parseGoJson(text);
  } catch (err) {
    throw new InvalidInputError(`invalid raw JSON ${JSON.stringify(text.slice(0, 60))}`, { cause: err });
  }
  return goMarshalValue(goWellFormedDeep(value));
}

/** Sets an own enumerable property, also for the key "__proto__" (which `o[k] = v` would not). */
export function setOwn<T>(o: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(o, key, { value, enumerable: true, writable: true, configurable: true });
}

/** goWellFormed applied to every string (and key) of a parsed JSON value. */
export function goWellFormedDeep(v: unknown): unknown {
  if (typeof v === 'string') return goWellFormed(v);
  if (Array.isArray(v)) return v.map(goWellFormedDeep);
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) setOwn(out, goWellFormed(k), goWellFormedDeep(x));
    return out;
  }
  return v;
}

// ---------------------------------------------------------------------------------------------
// strconv.Quote / strconv.Unquote (node names)

// Go's unicode.IsPrint: letters, marks, numbers, punctuation, symbols, and the ASCII space.
// (V8's Unicode tables may be a version newer than Go's; characters assigned in between are
// printable here and escaped by Go.)
const PRINTABLE = /[\p{L}\p{M}\p{N}\p{P}\p{S} ]/u;
const ALL_PRINTABLE = /^[\p{L}\p{M}\p{N}\p{P}\p{S} ]*$/u;

/**
 * restic's ui.Quote of a line it prints (a path): the line as it is when every rune is printable
 * and none is U+FFFD, else strconv.Quote(line), quotes included.
 */
export function goQuoteIfNeeded(s: string): string {
  return ALL_PRINTABLE.test(s) && !s.includes('\uFFFD') ? s : `"${goQuoteInner(s)}"`;
}

/**
 * strconv.Quote(name) without the surrounding quotes: how restic writes a node name before JSON
 * encoding it. `raw` is the name's bytes, or a Go-string-form string. `"` and `\` are escaped;
 * \a \b \f \n \r \t \v get short escapes; other non-printable runes become \xHH (below 0x80),
 * \uHHHH or \UHHHHHHHH; each byte of invalid UTF-8 becomes \xHH. Hex is lowercase.
 */
export function goQuoteInner(raw: Uint8Array | string): string {
  const s = typeof raw === 'string' ? raw : goStringFromBytes(raw);
  if (ALL_PRINTABLE.test(s) && !/["\\]/.test(s)) return s;
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    let cp = c;
    if (c >= 0xd800 && c <= 0xdfff) {
      if (c <= 0xdbff && i + 1 < s.length && isLowSurrogate(s.charCodeAt(i + 1))) {
        cp = s.codePointAt(i)!;
      } else if (c >= 0xdc80 && c <= 0xdcff) {
        out += '\\x' + hex(c - ESCAPE_BASE, 2); // a raw byte of invalid UTF-8
        continue;
      } else {
        throw new InvalidInputError(`name ${JSON.stringify(s).slice(0, 80)} holds a lone surrogate U+${hex(c, 4)} that stands for no byte`);
      }
    }
    const ch = String.fromCodePoint(cp);
    i += ch.length - 1;
    if (cp === 0x22 || cp === 0x5c) out += '\\' + ch;
    else if (PRINTABLE.test(ch)) out += ch;
    else out += quoteEscape(cp);
  }
  return out;
}

function quoteEscape(cp: number): string {
  switch (cp) {
    case 0x07: return '\\a';
    case 0x08: return '\\b';
    case 0x0c: return '\\f';
    case 0x0a: return '\\n';
    case 0x0d: return '\\r';
    case 0x09: return '\\t';
    case 0x0b: return '\\v';
  }
  if (cp < 0x20 || cp === 0x7f) return '\\x' + hex(cp, 2);
  if (cp < 0x10000) return '\\u' + hex(cp, 4);
  return '\\U' + hex(cp, 8);
}

/**
 * The bytes of strconv.Unquote('"' + s + '"'): how restic reads a node name back. Throws
 * InvalidInputError on what Go rejects: a raw `"` or newline, a trailing `\`, an unknown escape,
 * short or non-hex digits, octal above \377, a \u/\U value that is a surrogate or above U+10FFFF.
 * \xHH and octal escapes give single bytes, \u and \U give UTF-8.
 */
export function goUnquoteInner(s: string): Buffer {
  if (!/["\\\n]/.test(s)) return Buffer.from(s, 'utf8'); // lone surrogates become U+FFFD, as in Go
  const bad = (why: string) => new InvalidInputError(`invalid quoted name ${JSON.stringify(s).slice(0, 80)}: ${why}`);
  const parts: Buffer[] = [];
  const bytes: number[] = [];
  const flush = () => {
    if (bytes.length > 0) {
      parts.push(Buffer.from(bytes));
      bytes.length = 0;
    }
  };
  let runStart = 0;
  let i = 0;
  while (i < s.length) {
    const c = s.charCodeAt(i);
    if (c === 0x22) throw bad('unescaped "');
    if (c === 0x0a) throw bad('unescaped newline');
    if (c !== 0x5c) {
      i++;
      continue;
    }
    parts.push(Buffer.from(s.slice(runStart, i), 'utf8'));
    if (i + 1 >= s.length) throw bad('ends with a lone backslash');
    const e = s[i + 1]!;
    i += 2;
    switch (e) {
      case 'a': bytes.push(0x07); break;
      case 'b': bytes.push(0x08); break;
      case 'f': bytes.push(0x0c); break;
      case 'n': bytes.push(0x0a); break;
      case 'r': bytes.push(0x0d); break;
      case 't': bytes.push(0x09); break;
      case 'v': bytes.push(0x0b); break;
      case '\\': bytes.push(0x5c); break;
      case '"': bytes.push(0x22); break;
      case 'x':
      case 'u':
      case 'U': {
        const n = e === 'x' ? 2 : e === 'u' ? 4 : 8;
        const digits = s.slice(i, i + n);
        if (digits.length < n || !/^[0-9a-fA-F]+$/.test(digits)) throw bad(`\\${e} needs ${n} hex digits`);
        i += n;
        const v = parseInt(digits, 16);
        if (e === 'x') bytes.push(v);
        else {
          if (v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) throw bad(`\\${e}${digits} is not a valid rune`);
          flush();
          parts.push(Buffer.from(String.fromCodePoint(v), 'utf8'));
        }
        break;
      }
      case '0': case '1': case '2': case '3': case '4': case '5': case '6': case '7': {
        const digits = e + s.slice(i, i + 2);
        if (!/^[0-7]{3}$/.test(digits)) throw bad('octal escape needs three digits');
        i += 2;
        const v = parseInt(digits, 8);
        if (v > 255) throw bad(`octal escape \\${digits} is above \\377`);
        bytes.push(v);
        break;
      }
      default:
        throw bad(`unknown escape \\${e}`);
    }
    flush();
    runStart = i;
  }
  parts.push(Buffer.from(s.slice(runStart), 'utf8'));
  return Buffer.concat(parts);
}
