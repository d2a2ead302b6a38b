/**
 * Start-up of the one-file bundles (dist/NAME.bundle.cjs, scripts/bundle.mjs) with a V8 code cache.
 *
 * Compiling the 590 KB bundle, and then compiling lazily each function start-up runs, was a third
 * of slipway's launch → ready time. Node 20 has no compile cache for modules (Node 22's
 * `module.enableCompileCache` is not there), so the bundle is CommonJS and compiled here through
 * `vm.Script` with `cachedData`: bytecode V8 serialized at build time (`writeCodeCache`, run by
 * scripts/bundle.mjs after a `--version` run, so it also holds the functions that run compiled).
 *
 * The cache is only an accelerator. Its file starts with the SHA-256 of the bundle it was made
 * from and that file's size and mtime, and is used only for that bundle: V8's own check compares
 * the source's length, not its content, and bytecode of another bundle of the same length would
 * run as if it were this one's. While the bundle's size and mtime are the ones recorded, boot
 * trusts the hash without computing it: loading node:crypto and hashing the bundle cost ~10 ms of
 * CPU at every start. A bundle with another mtime (copied, touched) is hashed, and its cache used
 * if the content is the same. V8 rejects the rest by itself when it was
 * made by another V8 version or with other V8 flags; then the bundle compiles as it would without
 * one. Missing, stale or rejected, slipway starts the same, only slower.
 */
import { readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join } from 'node:path';
import { Script } from 'node:vm';

/** What happened to the code cache: used, rejected by V8, made for another bundle (stale), missing. */
export type CodeCacheStatus = 'used' | 'rejected' | 'stale' | 'missing';

/** Where boot leaves the status for the bundle's code to report (src/cli/serve.ts logs it). */
export const CODE_CACHE_STATUS = Symbol.for('slipway.codeCache');

/** The bundle and cache paths of a bundle name ('slipway', 'slirp4netns') in a dist directory. */
export function bundlePaths(dist: string, name: string): { bundle: string; cache: string } {
  return { bundle: join(dist, `${name}.bundle.cjs`), cache: join(dist, `${name}.bundle.cache`) };
}

// The CommonJS wrapper, as Node's loader writes it. It is part of the cached source, so boot and
// writeCodeCache must wrap alike.
const wrap = (source: string): string => `(function (exports, require, module, __filename, __dirname) { ${source}\n});`;

const HASH_BYTES = 32;
/** The cache file's header: the bundle's SHA-256, then its size and mtime (ms) as float64 LE. */
const HEADER_BYTES = HASH_BYTES + 16;
// node:crypto is required only when a hash is computed (see the comment at the top).
const sourceHash = (source: string): Buffer => (require('node:crypto') as typeof import('node:crypto')).createHash('sha256').update(source).digest();

function header(bundle: string, source: string): Buffer {
  const st = statSync(bundle);
  const h = Buffer.alloc(HEADER_BYTES);
  sourceHash(source).copy(h, 0);
  h.writeDoubleLE(st.size, HASH_BYTES);
  h.writeDoubleLE(st.mtimeMs, HASH_BYTES + 8);
  return h;
}

/** Whether a cache file's header says it was made from this bundle (`source`, read from `bundle`). */
function madeFrom(file: Buffer, bundle: string, source: string): boolean {
  const st = statSync(bundle);
  if (file.readDoubleLE(HASH_BYTES) === st.size && file.readDoubleLE(HASH_BYTES + 8) === st.mtimeMs) return true;
  return file.subarray(0, HASH_BYTES).equals(sourceHash(source));
}

function compile(bundle: string, cache: string | undefined): { script: Script; source: string; status: CodeCacheStatus } {
  const source = readFileSync(bundle, 'utf8');
  let cachedData: Buffer | undefined;
  let status: CodeCacheStatus = 'missing';
  if (cache !== undefined) {
    let file: Buffer | undefined;
    try {
      file = readFileSync(cache);
    } catch {
      /* missing or unreadable */
    }
    if (file) {
      if (file.length > HEADER_BYTES && madeFrom(file, bundle, source)) cachedData = file.subarray(HEADER_BYTES);
      else status = 'stale';
    }
  }
  const script = new Script(wrap(source), { filename: bundle, ...(cachedData ? { cachedData } : {}) });
  if (cachedData) status = script.cachedDataRejected ? 'rejected' : 'used';
  return { script, source, status };
}

function run(script: Script, bundle: string): void {
  const fn = script.runInThisContext() as (e: object, r: NodeJS.Require, m: object, f: string, d: string) => void;
  const mod = { exports: {}, id: bundle, filename: bundle, loaded: false };
  fn.call(mod.exports, mod.exports, createRequire(bundle), mod, bundle, dirname(bundle));
}

/**
 * Compile and run a bundle, with its code cache when one fits. The bundle's own top level starts
 * the program (it reads process.argv as usual). Returns what happened to the cache, which is also
 * left in `globalThis[Symbol.for('slipway.codeCache')]` for the bundle.
 */
export function boot(bundle: string, cache: string): CodeCacheStatus {
  const { script, status } = compile(bundle, cache);
  (globalThis as Record<symbol, unknown>)[CODE_CACHE_STATUS] = status;
  run(script, bundle);
  return status;
}

/**
 * Build step: run `BUNDLE --version` in this process and, when it exits, write the bundle's hash
 * and the code cache of everything compiled by then (the module top levels and the command-line
 * parser) to `cache`, through a temporary file and a rename. Only scripts/bundle.mjs calls this,
 * in a process of its own, because the bundle's `--version` ends the process.
 */
export function writeCodeCache(bundle: string, cache: string): void {
  const { script, source } = compile(bundle, undefined);
  process.on('exit', () => {
    const tmp = join(dirname(cache), `.${basename(cache)}.${process.pid}`);
    writeFileSync(tmp, Buffer.concat([header(bundle, source), script.createCachedData()]));
    renameSync(tmp, cache);
  });
  process.argv = [process.argv[0] ?? process.execPath, bundle, '--version'];
  run(script, bundle);
}
