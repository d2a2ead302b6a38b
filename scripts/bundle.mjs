// Bundle each CLI entry (tsc's output in dist/) into one CommonJS file, so start-up reads and
// compiles one file instead of ~80 (dist/ plus commander, pino, ipaddr.js), and write each
// bundle's V8 code cache. Run by `npm run build` / `prepare` after tsc.
//
//   dist/slipway.bundle.cjs      ← dist/cli/main.js              (bin/slipway)
//   dist/slirp4netns.bundle.cjs  ← dist/cli/slirp4netnsMain.js   (bin/slipway-slirp4netns)
//   dist/NAME.bundle.cache       the bundle's SHA-256, then V8 bytecode after a `--version` run
//                                (src/cli/boot.cts)
//
// CommonJS, not ESM, because only a script compiled through vm.Script can take a code cache on
// Node 20; import.meta.url becomes the bundle's own file URL. The bundles sit one level below the
// package root like dist/native.js, so paths computed from it (build/Release, package.json) stay
// right. bin/slipway and bin/slipway-slirp4netns use a bundle only when it is at least as new as
// tsc's output, and fall back to dist/cli/*.js otherwise (e.g. after a bare `tsc`), so a stale
// bundle never runs. pino-pretty is required at run time only on a terminal (src/log.ts) and is
// not bundled.
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const dist = join(root, 'dist');
const entries = { slipway: 'dist/cli/main.js', slirp4netns: 'dist/cli/slirp4netnsMain.js' };

// A failed cache write must not leave the previous build's cache (boot.cts would ignore it, as it
// carries the hash of another bundle, but it is dead weight). The ESM bundles of earlier builds
// are removed too: nothing starts them any more.
for (const name of Object.keys(entries)) {
  for (const f of [`${name}.bundle.cache`, `${name}.bundle.js`, `${name}.bundle.js.map`]) rmSync(join(dist, f), { force: true });
}

await build({
  absWorkingDir: root,
  entryPoints: Object.fromEntries(Object.entries(entries).map(([name, entry]) => [`${name}.bundle`, entry])),
  outdir: 'dist',
  outExtension: { '.js': '.cjs' },
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  sourcemap: 'linked',
  legalComments: 'none',
  logLevel: 'warning',
  define: { 'import.meta.url': '__slipwayBundleUrl' },
  banner: { js: "var __slipwayBundleUrl = require('node:url').pathToFileURL(__filename).href;" },
});

// An all-ASCII bundle: V8 keeps an ASCII source as a one-byte string, but one non-ASCII character
// makes the whole 600 KB a two-byte string (1.2 MB) that start-up decodes, compiles against and
// checks the code cache against. esbuild escapes non-ASCII characters in code (strings,
// identifiers, regular expressions) but keeps comments as written, and our comments have arrows
// and ≤. On comment lines they become \u escapes (a comment's text has no meaning); anything left
// elsewhere is reported, and that bundle only starts slower. `perf stat` of `--version`, 40
// interleaved runs (2026-12-06): 104.4 → 97.5 ms of CPU (median).
for (const name of Object.keys(entries)) {
  const bundle = join(dist, `${name}.bundle.cjs`);
  const escape = (c) => [...c].map((u) => `\\u${u.charCodeAt(0).toString(16).padStart(4, '0')}`).join('');
  let left = 0;
  const lines = readFileSync(bundle, 'utf8').split('\n').map((line) => {
    if (!/[^\x00-\x7f]/.test(line)) return line;
    if (/^\s*(\/\/|\/\*|\*)/.test(line)) return line.replace(/[^\x00-\x7f]/gu, escape);
    left++;
    return line;
  });
  writeFileSync(bundle, lines.join('\n'));
  if (left > 0) process.stderr.write(`bundle: ${name}: ${left} line(s) outside comments have non-ASCII characters; the bundle starts slower (a two-byte source)\n`);
}

// The cache is made by this Node (the one `npm install` runs), in a process of its own: the
// bundle's --version ends the process it runs in. A failure here costs start-up time, not function.
const boot = join(dist, 'cli', 'boot.cjs');
for (const name of Object.keys(entries)) {
  const bundle = join(dist, `${name}.bundle.cjs`);
  const cache = join(dist, `${name}.bundle.cache`);
  const code = `require(${JSON.stringify(boot)}).writeCodeCache(${JSON.stringify(bundle)}, ${JSON.stringify(cache)})`;
  const r = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0 || !existsSync(cache)) {
    process.stderr.write(`bundle: no code cache for ${name} (exit ${r.status}): ${(r.stderr || r.error?.message || '').trim().slice(0, 500)}\n`);
  }
}
