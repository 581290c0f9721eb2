/**
 * GET /dashboard: one self-contained HTML page (src/metrics/dashboard/dashboard.html, plain JS
 * and SVG) read once when the shard starts and served from memory. The page itself holds no
 * figures, so it answers without the token; the figures it draws come from /stats and /alerts,
 * which the page asks for with the monitoring token as a bearer header. Its Content-Security-
 * Policy allows exactly its own inline script and style (by hash) and requests to this origin.
 */
import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { getRoute, sendError, type HttpRoutes } from '../shard/http.js';
import { answer } from '../util/http-answer.js';

/** The page in the source tree: dist/src/metrics/ -> src/metrics/dashboard/ (tsc copies no HTML). */
export const DASHBOARD_PATH = fileURLToPath(new URL('../../../src/metrics/dashboard/dashboard.html', import.meta.url));

export interface DashboardPage {
  body: Buffer;
  csp: string;
}

/** The page and its CSP, or an Error saying why it cannot be served. */
export function loadDashboard(path = DASHBOARD_PATH): DashboardPage | Error {
  let html: string;
  try {
    html = readFileSync(path, 'utf8');
  } catch (err) {
    return new Error(`cannot read ${path}: ${(err as Error).message}`);
  }
  const hashes = (tag: string): string =>
    [...html.matchAll(new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`, 'g'))].map((m) => `'sha256-${createHash('sha256').update(m[1]!).digest('base64')}'`).join(' ');
  const csp = [
    "default-src 'none'",
    `script-src ${hashes('script')}`,
    `style-src ${hashes('style')}`,
    "connect-src 'self'",
    "img-src 'self' data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
  return { body: Buffer.from(html), csp };
}

export function attachDashboardRoute(app: HttpRoutes, page: DashboardPage | Error = loadDashboard()): void {
  getRoute(app, '/dashboard', (res) => {
    // Not page.message: an absolute path is none of a visitor's business.
    if (page instanceof Error) return sendError(res, 'internal_error', 'the dashboard page cannot be read on this server (src/metrics/dashboard/dashboard.html, beside dist/, is missing)');
    answer(
      res,
      '200 OK',
      [
        ['content-type', 'text/html; charset=utf-8'],
        ['cache-control', 'no-store'],
        ['content-security-policy', page.csp],
        ['x-content-type-options', 'nosniff'],
        ['referrer-policy', 'no-referrer'],
      ],
      page.body,
    );
  });
}
