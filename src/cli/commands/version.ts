import { VERSION } from '../../version.ts';
import type { Command } from '../context.ts';

/** The version line (as restic's "restic 0.19.1 compiled with go1.25.1 on linux/amd64"). */
export function versionLine(): string {
  return `stowage ${VERSION} on Node.js ${process.version} ${process.platform}/${process.arch}`;
}

export const versionCommand: Command = {
  summary: 'Print version information',
  usage: '',
  flags: [],
  async run(ctx) {
    if (ctx.json) {
      ctx.out(JSON.stringify({ message_type: 'version', version: VERSION, node_version: process.version, os: process.platform, arch: process.arch }) + '\n');
    } else {
      ctx.out(versionLine() + '\n');
    }
    return 0;
  },
};
