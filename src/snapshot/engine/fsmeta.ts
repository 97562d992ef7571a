// Names of users and groups, read once from /etc/passwd and /etc/group (as restic's
// user.LookupId does on a system without other NSS sources).
import { readFileSync } from 'node:fs';

export class IdNames {
  readonly #users = new Map<number, string>();
  readonly #groups = new Map<number, string>();

  constructor(passwd = '/etc/passwd', group = '/etc/group') {
    load(passwd, this.#users);
    load(group, this.#groups);
  }
  user(uid: number): string | undefined {
    return this.#users.get(uid);
  }
  group(gid: number): string | undefined {
    return this.#groups.get(gid);
  }
}

function load(file: string, into: Map<number, string>): void {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return;
  }
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f.length < 3) continue;
    const id = Number(f[2]);
    if (Number.isInteger(id) && !into.has(id)) into.set(id, f[0]!);
  }
}
