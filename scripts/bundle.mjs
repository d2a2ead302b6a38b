// Bundle each CLI entry (tsc's output in dist/) into one ES module file, so start-up reads and
// links one file instead of ~80 (dist/ plus commander, pino, ipaddr.js): ESM loading was most of
// slipway's launch → ready time. Run by `npm run build` / `prepare` after tsc.
//
// The bundles sit one level below the package root (dist/*.bundle.js) like dist/native.js, so
// paths computed from import.meta.url (build/Release, package.json) stay right. bin/slipway and
// bin/slipway-slirp4netns use a bundle only when it is at least as new as tsc's output, and fall
// back to dist/cli/*.js otherwise (e.g. after a bare `tsc`), so a stale bundle never runs.
// pino-pretty is required at run time only on a terminal (src/log.ts) and is not bundled.
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const entries = { 'slipway.bundle': 'dist/cli/main.js', 'slirp4netns.bundle': 'dist/cli/slirp4netns.js' };

await build({
  absWorkingDir: root,
  entryPoints: Object.fromEntries(Object.entries(entries)),
  outdir: 'dist',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  sourcemap: 'linked',
  legalComments: 'none',
  logLevel: 'warning',
  // The bundled CommonJS packages (pino, commander, ipaddr.js) call require() for Node built-ins.
  banner: { js: "import { createRequire as __slipwayCreateRequire } from 'node:module'; const require = __slipwayCreateRequire(import.meta.url);" },
});
