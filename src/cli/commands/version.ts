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
      // restic's keys; go_version carries Node's version ("v24.…"), go_os and go_arch Go's names.
      ctx.out(JSON.stringify({ message_type: 'version', version: VERSION, go_version: process.version, go_os: goOs(process.platform), go_arch: goArch(process.arch) }) + '\n');
    } else {
      ctx.out(versionLine() + '\n');
    }
    return 0;
  },
};

/** Go's GOOS for Node's platform name (they differ for Windows and SunOS). */
function goOs(platform: string): string {
  return ({ win32: 'windows', sunos: 'solaris' } as Record<string, string>)[platform] ?? platform;
}

/** Go's GOARCH for Node's architecture name. */
function goArch(arch: string): string {
  return ({ x64: 'amd64', ia32: '386', ppc64: 'ppc64le', mipsel: 'mipsle' } as Record<string, string>)[arch] ?? arch;
}
