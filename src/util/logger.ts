/** One structured logger on stderr, so stdout stays free for command output. */
export interface Logger {
  info(event: string, fields?: Record<string, unknown>): void;
  warn(event: string, fields?: Record<string, unknown>): void;
  error(event: string, fields?: Record<string, unknown>): void;
}

export type LogLevel = "info" | "warn" | "error";
/** `json`: one JSON object a line (for log collectors); `text`: one readable line (for people); `auto`: text on a TTY. */
export type LogFormat = "json" | "text";
export const LOG_FORMATS = ["auto", "json", "text"] as const;
export type LogFormatChoice = (typeof LOG_FORMATS)[number];

const LEVEL_RANK: Record<LogLevel, number> = { info: 0, warn: 1, error: 2 };

export interface LoggerOptions {
  readonly format?: LogFormat;
  /** Events below this level are dropped (default info: everything). */
  readonly minLevel?: LogLevel;
  readonly write?: (line: string) => void;
  readonly now?: () => Date;
}

/** `auto` resolves to text when the log goes to a terminal (a person reads it) and to JSON otherwise. */
export function resolveLogFormat(choice: LogFormatChoice, isTty: boolean): LogFormat {
  return choice === "auto" ? (isTty ? "text" : "json") : choice;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const { format = "json", minLevel = "info", write = (line: string) => void process.stderr.write(line), now = () => new Date() } = options;
  const log =
    (level: LogLevel) =>
    (event: string, fields: Record<string, unknown> = {}) => {
      if (LEVEL_RANK[level] < LEVEL_RANK[minLevel]) return;
      const time = now();
      write(
        format === "json"
          ? `${JSON.stringify({ time: time.toISOString(), level, event, ...fields })}\n`
          : textLine(time, level, event, fields),
      );
    };
  return { info: log("info"), warn: log("warn"), error: log("error") };
}

export function createJsonLogger(write: (line: string) => void = (l) => process.stderr.write(l)): Logger {
  return createLogger({ format: "json", write });
}

/**
 * `HH:MM:SS.mmm LEVEL event key=value ...: message`. Values print bare when they are a plain word or number and
 * as JSON otherwise (so quotes, spaces and lists stay unambiguous); undefined fields are left out, a `message`
 * field ends the line as prose, and a multi-line value (a stack trace) follows on its own indented lines.
 */
function textLine(time: Date, level: LogLevel, event: string, fields: Record<string, unknown>): string {
  const clock = time.toISOString().slice(11, 23);
  const parts: string[] = [];
  let message = "";
  let detail = "";
  for (const [key, value] of Object.entries(fields)) {
    if (value === undefined) continue;
    if (key === "message" && typeof value === "string") message = `: ${value}`;
    else if (typeof value === "string" && value.includes("\n")) detail += `\n  ${value.split("\n").join("\n  ")}`;
    else parts.push(`${key}=${textValue(value)}`);
  }
  return `${clock} ${level.toUpperCase().padEnd(5)} ${[event, ...parts].join(" ")}${message}${detail}\n`;
}

function textValue(value: unknown): string {
  if (typeof value === "string") return /^[\w./:@+-]+$/.test(value) ? value : JSON.stringify(value);
  if (typeof value === "number" || typeof value === "boolean" || value === null) return String(value);
  return JSON.stringify(value) ?? String(value);
}

export const silentLogger: Logger = { info() {}, warn() {}, error() {} };
