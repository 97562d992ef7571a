// A child process for the memory budget test: backs up `src` into a new local repository at
// `repo` with the given memoryLimit ("none" for none) and prints its peak RSS (bytes) as JSON.
import { LocalBackend } from '../../src/backend/local.ts';
import { Repository } from '../../src/repository/repository.ts';
import { backup } from '../../src/snapshot/operations/backup/index.ts';

const [src, repoPath, limit] = process.argv.slice(2) as [string, string, string];
const repo = await (await Repository.init(new LocalBackend(repoPath), { password: 'pw', kdf: { N: 1024, r: 8, p: 1 } })).loadIndex();
const res = await backup(repo, { paths: [src], memoryLimit: limit === 'none' ? undefined : Number(limit), scan: false });
process.stdout.write(JSON.stringify({ filesNew: res.summary.filesNew, maxRSS: process.resourceUsage().maxRSS * 1024 }) + '\n');
await repo.close();
