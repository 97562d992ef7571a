// node:http and node:https, loaded when a network backend first needs them. Importing node:http
// costs about 15 MiB of resident memory, which every process paid even when it only used a
// local folder (the backends are re-exported from the package's entry point).
import { createRequire } from 'node:module';
import type * as Http from 'node:http';
import type * as Https from 'node:https';

const require = createRequire(import.meta.url);

export function nodeHttp(): typeof Http {
  return require('node:http') as typeof Http;
}

export function nodeHttps(): typeof Https {
  return require('node:https') as typeof Https;
}
