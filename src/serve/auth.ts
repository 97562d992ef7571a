// Who may read: HTTP basic auth against htpasswd entries and/or bearer tokens. Every request is
// checked before its path is looked at, and every failure gets the same 401, so a client without
// valid credentials learns nothing about what exists.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { InvalidInputError, UnsupportedError } from '../errors.ts';

/** Credentials the server accepts; with neither, every request is let in. */
export interface ServeAuth {
  /**
   * The text of an htpasswd file: `user:{SHA}base64(sha1(password))` lines (`htpasswd -s`).
   * bcrypt (`$2y$`), Apache MD5 (`$apr1$`) and crypt entries are refused when parsed
   * (UnsupportedError naming the line): Stowage has no bcrypt implementation.
   */
  htpasswd?: string;
  /** Tokens accepted as `Authorization: Bearer <token>`. */
  tokens?: readonly string[];
  /** The realm in the WWW-Authenticate challenge (default "stowage"). */
  realm?: string;
}

/** A checker for one request's Authorization header. */
export interface Authenticator {
  readonly enabled: boolean;
  readonly challenge: string;
  check(req: IncomingMessage): boolean;
}

const sha256 = (s: string | Buffer) => createHash('sha256').update(s).digest();

/** Parses the htpasswd text and tokens once; throws on entries it cannot check. */
export function createAuthenticator(auth: ServeAuth | undefined): Authenticator {
  const users = new Map<string, Buffer>();
  for (const [i, raw] of (auth?.htpasswd ?? '').split(/\r?\n/).entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const colon = line.indexOf(':');
    if (colon <= 0) throw new InvalidInputError(`htpasswd line ${i + 1} is not "user:hash"`);
    const user = line.slice(0, colon);
    const hash = line.slice(colon + 1);
    if (!hash.startsWith('{SHA}')) {
      const kind = hash.startsWith('$2') ? 'bcrypt' : hash.startsWith('$apr1$') ? 'Apache MD5' : 'crypt or plain text';
      throw new UnsupportedError(`htpasswd line ${i + 1} (user ${JSON.stringify(user)}) is ${kind}; only {SHA} entries are supported (htpasswd -s)`);
    }
    const digest = Buffer.from(hash.slice(5), 'base64');
    if (digest.length !== 20) throw new InvalidInputError(`htpasswd line ${i + 1}: {SHA} value is not a base64 SHA-1`);
    users.set(user, digest);
  }
  const tokens = (auth?.tokens ?? []).filter((t) => t !== '').map((t) => sha256(t));
  const realm = (auth?.realm ?? 'stowage').replace(/["\\]/g, '');
  const enabled = users.size > 0 || tokens.length > 0;
  const dummy = Buffer.alloc(20);
  return {
    enabled,
    challenge: users.size > 0 ? `Basic realm="${realm}", charset="UTF-8"` : `Bearer realm="${realm}"`,
    check(req) {
      if (!enabled) return true;
      const header = req.headers.authorization ?? '';
      const sp = header.indexOf(' ');
      const scheme = header.slice(0, sp).toLowerCase();
      const value = header.slice(sp + 1).trim();
      if (scheme === 'bearer' && tokens.length > 0) {
        const got = sha256(value);
        let ok = false;
        for (const t of tokens) ok = timingSafeEqual(got, t) || ok;
        return ok;
      }
      if (scheme === 'basic' && users.size > 0) {
        const decoded = Buffer.from(value, 'base64').toString('utf8');
        const colon = decoded.indexOf(':');
        if (colon < 0) return false;
        const want = users.get(decoded.slice(0, colon));
        const got = createHash('sha1').update(decoded.slice(colon + 1), 'utf8').digest();
        return timingSafeEqual(got, want ?? dummy) && want !== undefined;
      }
      return false;
    },
  };
}
