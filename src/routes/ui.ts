import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Hono, type Context } from "hono";
import { ApiError } from "../errors/api-error.js";
import { mayTrain } from "../serving/principal.js";

/**
 * The browser playground: the files vite built into dist/ui, served by the server itself (no CDN, nothing
 * fetched at run time). Static files are open (the page must load before the user types a key); every API
 * call the page makes carries the key and goes through auth like any other client's.
 */

/** src/routes/ui.ts and dist/routes/ui.js both sit two folders below the package root. */
export const UI_BUILD_DIR = fileURLToPath(new URL("../../dist/ui/", import.meta.url));

/**
 * Only our own origin, and no inline script or style: a reply the model wrote can never run as code in the
 * page. Styles set through the DOM (element.style) are not inline markup and stay allowed.
 */
export const UI_CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "manifest-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".json": "application/json",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".woff2": "font/woff2",
  ".txt": "text/plain; charset=utf-8",
};

interface UiFile {
  readonly body: Uint8Array<ArrayBuffer>;
  readonly contentType: string;
  readonly etag: string;
  /** Vite puts a content hash in every file name under assets/, so those never change. */
  readonly immutable: boolean;
}

/** Every file of the build, read once: the set of servable paths is fixed, so no request path reaches the disk. */
function loadBuild(dir: string): Map<string, UiFile> | null {
  const files = new Map<string, UiFile>();
  const walk = (relative: string) => {
    for (const entry of readdirSync(path.join(dir, relative), { withFileTypes: true })) {
      const child = relative ? `${relative}/${entry.name}` : entry.name;
      if (entry.isDirectory()) walk(child);
      else if (entry.isFile()) {
        const contentType = CONTENT_TYPES[path.extname(entry.name)];
        if (!contentType) continue;
        const body = new Uint8Array(readFileSync(path.join(dir, child)));
        const etag = `"${createHash("sha256").update(body).digest("base64url").slice(0, 27)}"`;
        files.set(child, { body, contentType, etag, immutable: child.startsWith("assets/") });
      }
    }
  };
  try {
    if (!statSync(path.join(dir, "index.html")).isFile()) return null;
    walk("");
  } catch {
    return null;
  }
  return files;
}

function send(c: Context, file: UiFile): Response {
  const headers: Record<string, string> = {
    "Content-Type": file.contentType,
    "Cache-Control": file.immutable ? "public, max-age=31536000, immutable" : "no-cache",
    ETag: file.etag,
    "Content-Security-Policy": UI_CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
  };
  if (c.req.header("if-none-match") === file.etag) return new Response(null, { status: 304, headers });
  return new Response(c.req.method === "HEAD" ? null : file.body, { status: 200, headers });
}

/** Static files of the playground; registered before auth. Paths that are no file fall through to the API. */
export function uiStaticRoutes(buildDir: string = UI_BUILD_DIR): Hono {
  const app = new Hono();
  let build: Map<string, UiFile> | null | undefined;
  const files = () => (build ??= loadBuild(buildDir));
  const index = (c: Context) => {
    const file = files()?.get("index.html");
    if (!file) {
      const error = new ApiError("not_found", "The playground is not built: run `npm run build` (or start with --no-ui).", "ui_not_built");
      return c.json(error.toJSON(), error.status);
    }
    return send(c, file);
  };
  app.get("/", index);
  app.get("/ui", (c) => c.redirect("/ui/", 301));
  // Browsers ask for /favicon.ico on pages that name no icon (a JSON reply opened in a tab, say).
  app.get("/favicon.ico", async (c, next) => {
    const file = files()?.get("favicon.svg");
    return file ? send(c, file) : next();
  });
  app.get("/ui/", index);
  app.get("/ui/*", async (c, next) => {
    const relative = c.req.path.slice("/ui/".length);
    const file = relative === "index.html" ? undefined : files()?.get(relative);
    if (!file) return next();
    return send(c, file);
  });
  return app;
}

/** Behind auth: tells the page what the key it holds may do, so admin actions can be hidden for others. */
export function uiSessionRoutes(): Hono {
  const app = new Hono();
  app.get("/ui/session", (c) => {
    const principal = c.get("principal");
    return c.json({
      role: principal.role,
      train: mayTrain(principal),
      adapters: principal.adapters ? [...principal.adapters].sort() : null,
    });
  });
  return app;
}
