/**
 * Serves the built dashboard (packages/dashboard/dist) at `/`, under a strict
 * Content-Security-Policy: scripts, styles and connections only from this origin, no inline
 * script or style, no plugins, no framing, and Trusted Types, so even a bug that reached for
 * `innerHTML` would throw instead of running agent-supplied markup.
 *
 * Only files inside the dist directory are served (no dotfiles, no traversal). Hashed files
 * under `/assets/` are cached for a year; `index.html` is revalidated every time.
 */
import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { extname, join, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Context, Hono } from 'hono';

/** The dashboard shipped inside the built server package (dist/dashboard/), else the clone's build. */
const SHIPPED_DASHBOARD_DIR = fileURLToPath(new URL('../dashboard/', import.meta.url));
export const DEFAULT_DASHBOARD_DIR = existsSync(SHIPPED_DASHBOARD_DIR) ? SHIPPED_DASHBOARD_DIR : fileURLToPath(new URL('../../../dashboard/dist/', import.meta.url));

export const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "require-trusted-types-for 'script'",
  'trusted-types none',
].join('; ');

export const SECURITY_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'content-security-policy': CONTENT_SECURITY_POLICY,
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  'permissions-policy': 'camera=(), microphone=(), geolocation=(), payment=(), usb=()',
});

const TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.json': 'application/json',
  '.txt': 'text/plain; charset=utf-8',
};

const NOT_BUILT = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Countersign</title></head>
<body><main><h1>Countersign</h1>
<p>The dashboard has not been built. Run <code>npm run build -w @countersign/dashboard</code>
(or <code>npm start</code>, which builds it) and reload.</p>
<p>The API is up: <a href="/healthz">/healthz</a>, <a href="/openapi.json">/openapi.json</a>.</p>
</main></body></html>
`;

function withHeaders(c: Context, body: string | Uint8Array | null, status: 200 | 404 | 503, type: string, cache: string): Response {
  return c.body(body as never, status, { ...SECURITY_HEADERS, 'content-type': type, 'cache-control': cache });
}

/** Resolves a URL path to a file inside `root`, or null (traversal, dotfiles, unknown types). */
export function resolveAsset(root: string, urlPath: string): string | null {
  let decoded: string;
  try {
    decoded = decodeURIComponent(urlPath);
  } catch {
    return null;
  }
  if (decoded.includes('\0') || decoded.includes('\\')) return null;
  const segments = decoded.split('/').filter((s) => s !== '');
  if (segments.some((s) => s.startsWith('.'))) return null;
  const file = normalize(join(root, ...segments));
  const base = root.endsWith(sep) ? root : root + sep;
  if (!file.startsWith(base)) return null;
  if (!(extname(file) in TYPES)) return null;
  return file;
}

export function mountDashboard(app: Hono<any>, options: { dir?: string | undefined } = {}): void {
  const root = normalize(options.dir ?? DEFAULT_DASHBOARD_DIR);

  const serveIndex = async (c: Context) => {
    try {
      const html = await readFile(join(root, 'index.html'));
      return withHeaders(c, html, 200, TYPES['.html']!, 'no-cache');
    } catch {
      return withHeaders(c, NOT_BUILT, 503, TYPES['.html']!, 'no-store');
    }
  };
  app.get('/', serveIndex);
  app.get('/index.html', serveIndex);

  const serveFile = async (c: Context) => {
    const file = resolveAsset(root, c.req.path);
    if (file) {
      try {
        if ((await stat(file)).isFile()) {
          const immutable = c.req.path.startsWith('/assets/');
          return withHeaders(c, await readFile(file), 200, TYPES[extname(file)]!, immutable ? 'public, max-age=31536000, immutable' : 'no-cache');
        }
      } catch {
        // fall through to 404
      }
    }
    return withHeaders(c, 'not found', 404, TYPES['.txt']!, 'no-store');
  };
  app.get('/assets/*', serveFile);
  app.get('/favicon.svg', serveFile);
}
