// Logging, injected: whoever opens a backend or a repository may pass a Logger, and what they
// pass is all that is used; there is no global logger and nothing is logged by default. Log
// calls carry a short message and plain fields (IDs, counts, durations, summarized errors),
// never passwords, keys, credentials or file contents.

/** Fields of a log record: plain data (strings, numbers, booleans, arrays and objects of them). */
export type LogFields = Record<string, unknown>;

/** The severity of a log record, lowest first: `debug`, `info`, `warn`, `error`. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/**
 * Where Stowage reports what it does. Compatible with most logging libraries' method shape
 * (pino, winston and bunyan take the fields first; wrap them in a few lines).
 *
 * - debug: every backend request, each key tried, lock refreshes;
 * - info: the repository opened, the index loaded, locks taken and removed;
 * - warn: a backend call failed and is retried, a lock could not be refreshed;
 * - error: reserved for failures the caller does not otherwise see.
 */
export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
}

const noop = (): void => {};

/** A logger that drops everything (the default wherever a logger may be passed). */
export const silentLogger: Logger = Object.freeze({ debug: noop, info: noop, warn: noop, error: noop });

/** The log levels, lowest first (for validating a level read from a flag or the environment). */
export const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];

/** Where consoleLogger writes its lines: process.stderr, process.stdout, a file stream, … */
export interface LogStream {
  write(chunk: string): unknown;
}

/** Options of {@link consoleLogger}. */
export interface ConsoleLoggerOptions {
  /**
   * Receives each formatted line (without a newline); takes precedence over `stream`.
   */
  write?: (line: string, level: LogLevel) => void;
  /**
   * Where lines go, each followed by a newline, whatever their level (default process.stderr:
   * standard output belongs to the program's own output, such as JSON).
   */
  stream?: LogStream;
  /** Starts each line with the time in ISO 8601 (default false). */
  timestamps?: boolean;
}

/**
 * A logger that prints records at `level` and above as one line each, to standard error unless
 * `options.stream` or `options.write` says otherwise:
 * `warn: backend call failed, retrying op=load file=data/ab/ab12… attempt=1 delayMs=412`.
 * `'silent'` prints nothing.
 */
export function consoleLogger(level: LogLevel | 'silent' = 'info', options: ConsoleLoggerOptions = {}): Logger {
  if (level !== 'silent' && !LOG_LEVELS.includes(level)) throw new TypeError(`unknown log level ${JSON.stringify(level)}`);
  const min = level === 'silent' ? LOG_LEVELS.length : LOG_LEVELS.indexOf(level);
  const stream = options.stream ?? process.stderr;
  const write = options.write ?? ((line: string) => void stream.write(`${line}\n`));
  const at = (l: LogLevel) => {
    if (LOG_LEVELS.indexOf(l) < min) return noop;
    return (message: string, fields?: LogFields): void => {
      const head = options.timestamps ? `${new Date().toISOString()} ${l}` : l;
      const tail = fields ? formatFields(fields) : '';
      write(`${head}: ${message}${tail ? ` ${tail}` : ''}`, l);
    };
  };
  return Object.freeze({ debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') });
}

/**
 * Fields as `key=value` pairs: strings bare when they hold no space, quote or "=", else
 * JSON-quoted; objects and arrays as JSON; Error objects as their name and message.
 */
export function formatFields(fields: LogFields): string {
  const parts: string[] = [];
  for (const [key, value] of Object.entries(fields)) {
    if (value === undefined) continue;
    parts.push(`${key}=${formatValue(value)}`);
  }
  return parts.join(' ');
}

function formatValue(value: unknown): string {
  if (typeof value === 'string') return value !== '' && !/[\s"=\\]/.test(value) ? value : JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint' || value === null) return String(value);
  if (value instanceof Error) return JSON.stringify(`${value.name}: ${value.message}`);
  try {
    return JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v)) ?? String(value);
  } catch {
    return JSON.stringify(String(value));
  }
}
