// Start-up of the one-file bundles with a V8 code cache (boot.cts), on the built dist/cli/boot.cjs:
// the cache is used when it fits, ignored when it was made for another bundle or another V8, and
// the bundle runs the same in every case.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const dist = fileURLToPath(new URL('../../dist/', import.meta.url));
const bootFile = join(dist, 'cli', 'boot.cjs');
type Status = 'used' | 'rejected' | 'stale' | 'missing';
const { boot, bundlePaths } = createRequire(import.meta.url)(bootFile) as {
  boot(bundle: string, cache: string): Status;
  bundlePaths(dist: string, name: string): { bundle: string; cache: string };
};

const dir = mkdtempSync(join(tmpdir(), 'slipway-boot-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// A stand-in bundle: records what it saw, in this process or (for writeCodeCache) on stdout.
const SOURCE = `
const seen = { file: __filename, dir: __dirname, path: typeof require('node:path').join, args: process.argv.slice(2), exportsIsThis: this === module.exports, status: globalThis[Symbol.for('slipway.codeCache')] };
function lazilyCompiled(n) { return n * 2; }
seen.lazy = lazilyCompiled(21);
if (globalThis.__bootTest) globalThis.__bootTest.push(seen);
else { process.stdout.write(JSON.stringify(seen)); process.exit(0); }
`;

function writeCache(bundle: string, cache: string): ReturnType<typeof spawnSync> {
  const code = `require(${JSON.stringify(bootFile)}).writeCodeCache(${JSON.stringify(bundle)}, ${JSON.stringify(cache)})`;
  return spawnSync(process.execPath, ['-e', code], { encoding: 'utf8', timeout: 30_000 });
}

// In a process of its own each time: V8 keeps scripts it compiled in a per-isolate cache, and a
// second compile of the same source in one process never looks at cachedData.
// A script file, not `node -e`: Node's -e loads node:crypto itself.
let scripts = 0;
function runScript(code: string): ReturnType<typeof spawnSync> {
  const file = join(dir, `run-${scripts++}.cjs`);
  writeFileSync(file, code);
  return spawnSync(process.execPath, [file], { encoding: 'utf8', timeout: 30_000 });
}

// `crypto`: whether node:crypto got loaded on the way (boot needs it only to hash a bundle whose
// size or mtime differ from the ones the cache recorded).
const CRYPTO_LOADED = `process.moduleLoadList.includes('NativeModule crypto')`;
function runBoot(bundle: string, cache: string): { status: Status; seen: Record<string, unknown>; crypto: boolean } {
  const code = `globalThis.__bootTest = []; const status = require(${JSON.stringify(bootFile)}).boot(${JSON.stringify(bundle)}, ${JSON.stringify(cache)}); process.stdout.write(JSON.stringify({ status, runs: globalThis.__bootTest, crypto: ${CRYPTO_LOADED} }));`;
  const r = runScript(code);
  expect(r.status, String(r.stderr)).toBe(0);
  const out = JSON.parse(String(r.stdout)) as { status: Status; runs: Record<string, unknown>[]; crypto: boolean };
  expect(out.runs).toHaveLength(1);
  return { status: out.status, seen: out.runs[0]!, crypto: out.crypto };
}

describe('boot', () => {
  const { bundle, cache } = bundlePaths(dir, 'test');
  writeFileSync(bundle, SOURCE);

  it('runs a bundle without a cache as Node would run a CommonJS file', () => {
    const { status, seen } = runBoot(bundle, cache);
    expect(status).toBe('missing');
    expect(seen).toMatchObject({ file: bundle, dir, path: 'function', exportsIsThis: true, lazy: 42, status: 'missing' });
    expect(seen['args']).toEqual([]);
  });

  it('writeCodeCache runs the bundle with --version and leaves a cache that boot then uses', () => {
    const r = writeCache(bundle, cache);
    expect(r.status, String(r.stderr)).toBe(0);
    expect(JSON.parse(String(r.stdout))).toMatchObject({ args: ['--version'], lazy: 42 });
    expect(existsSync(cache)).toBe(true);
    const { status, seen, crypto } = runBoot(bundle, cache);
    expect(status).toBe('used');
    expect(seen).toMatchObject({ file: bundle, lazy: 42, status: 'used' });
    expect(crypto).toBe(false); // the recorded size and mtime vouched for the bundle: nothing hashed
  });

  it('uses the cache of a bundle that was touched or copied (another mtime) once its hash matches', () => {
    const later = new Date(Date.now() + 60_000);
    utimesSync(bundle, later, later);
    const { status, crypto } = runBoot(bundle, cache);
    expect(status).toBe('used');
    expect(crypto).toBe(true);
  });

  it('ignores a cache made for another bundle of the same length (V8 itself would take it)', () => {
    writeFileSync(bundle, SOURCE.replace('n * 2', 'n + n'));
    const { status, seen } = runBoot(bundle, cache);
    expect(status).toBe('stale');
    expect(seen['lazy']).toBe(42);
    writeFileSync(bundle, SOURCE);
    expect(runBoot(bundle, cache).status).toBe('used');
  });

  it('runs the bundle when V8 rejects the cache', () => {
    // The right hash in front of bytes that are not a V8 code cache.
    const hash = createHash('sha256').update(SOURCE).digest();
    writeFileSync(cache, Buffer.concat([hash, Buffer.alloc(4096, 0x5a)]));
    const { status, seen } = runBoot(bundle, cache);
    expect(status).toBe('rejected');
    expect(seen['lazy']).toBe(42);
  });
});

describe('the built bundles', () => {
  it.each(['slipway', 'slirp4netns'])('%s has a code cache that this Node accepts', (name) => {
    const paths = bundlePaths(dist, name);
    expect(existsSync(paths.cache), `${paths.cache} (npm run build writes it)`).toBe(true);
    // boot returns before the bundle's async main prints the version and exits.
    const code = `process.argv = [process.execPath, 'bundle', '--version']; process.on('exit', () => process.stderr.write('crypto:' + ${CRYPTO_LOADED} + '\\n')); const b = require(${JSON.stringify(bootFile)}); const p = b.bundlePaths(${JSON.stringify(dist)}, ${JSON.stringify(name)}); process.stderr.write('cache:' + b.boot(p.bundle, p.cache) + '\\n');`;
    const r = runScript(code);
    expect(r.status, String(r.stderr)).toBe(0);
    expect(r.stderr).toContain('cache:used');
    // Loading node:crypto cost ~7 ms of every start; the DNS forwarder loads it after ready.
    expect(r.stderr).toContain('crypto:false');
    expect(r.stdout).toMatch(/\d+\.\d+\.\d+/);
  });

  it.each(['slipway', 'slirp4netns'])('%s is all ASCII (V8 keeps it as a one-byte string)', (name) => {
    const source = readFileSync(bundlePaths(dist, name).bundle);
    const at = source.findIndex((b) => b > 0x7f);
    expect(at, at < 0 ? '' : `non-ASCII at byte ${at}: ${source.subarray(Math.max(0, at - 40), at + 40).toString('utf8')}`).toBe(-1);
  });
});
